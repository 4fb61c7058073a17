/** shared/turn-cork.ts: a socket corked from a turn's first write until the scheduler says the turn is over. */
import { describe, expect, it } from 'vitest';
import { TurnCork } from '../../shared/turn-cork.js';

function fakeSocket(): { corked: number; calls: string[]; cork(): void; uncork(): void } {
  return {
    corked: 0,
    calls: [],
    cork() {
      this.corked++;
      this.calls.push('cork');
    },
    uncork() {
      this.corked--;
      this.calls.push('uncork');
    },
  };
}

describe('TurnCork', () => {
  it('corks once per turn, at the first write, and uncorks when the turn ends', () => {
    const socket = fakeSocket();
    const scheduled: (() => void)[] = [];
    const turns = new TurnCork(socket, (release) => scheduled.push(release));
    turns.cork();
    turns.cork();
    turns.cork();
    expect([socket.corked, scheduled.length]).toEqual([1, 1]);
    scheduled.shift()!();
    expect(socket.corked).toBe(0);

    turns.cork(); // the next turn starts over
    expect([socket.corked, scheduled.length]).toEqual([1, 1]);
    scheduled.shift()!();
    expect(socket.calls).toEqual(['cork', 'uncork', 'cork', 'uncork']);
  });
});
