/**
 * shared/turn-cork.ts: a socket corked from a turn's first write until the scheduler says the turn is over; a turn
 * of deferrable writes only (WINDOWs) until the loop's pending I/O has run.
 */
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

  /** A TurnCork over a fake socket with both schedulers recorded, run by hand. */
  function twoSchedulers(): { socket: ReturnType<typeof fakeSocket>; turns: TurnCork; turnEnds: (() => void)[]; ioEnds: (() => void)[] } {
    const socket = fakeSocket();
    const turnEnds: (() => void)[] = [];
    const ioEnds: (() => void)[] = [];
    const turns = new TurnCork(
      socket,
      (release) => turnEnds.push(release),
      (release) => ioEnds.push(release),
    );
    return { socket, turns, turnEnds, ioEnds };
  }

  it('holds a turn of deferrable writes until the I/O end, across turns, with one release', () => {
    const { socket, turns, turnEnds, ioEnds } = twoSchedulers();
    turns.cork(true);
    turns.cork(true);
    expect([socket.corked, turnEnds.length, ioEnds.length]).toEqual([1, 0, 1]);
    turns.cork(true); // a later turn, before the I/O end: the pending release covers it
    expect([socket.corked, turnEnds.length, ioEnds.length]).toEqual([1, 0, 1]);
    ioEnds.shift()!();
    expect(socket.calls).toEqual(['cork', 'uncork']);
  });

  it('releases deferrable writes at the end of the first turn that makes any other write', () => {
    const { socket, turns, turnEnds, ioEnds } = twoSchedulers();
    turns.cork(true);
    turns.cork(); // e.g. DATA in a later turn: it must not wait for the I/O end
    expect([socket.corked, turnEnds.length, ioEnds.length]).toEqual([1, 1, 1]);
    turnEnds.shift()!();
    expect(socket.corked).toBe(0);
    ioEnds.shift()!(); // nothing corked any more: no second uncork
    expect(socket.calls).toEqual(['cork', 'uncork']);

    turns.cork(); // in one turn, a deferrable write after another waits for the turn's end only
    turns.cork(true);
    expect([turnEnds.length, ioEnds.length]).toEqual([1, 0]);
    turnEnds.shift()!();
    expect(socket.calls).toEqual(['cork', 'uncork', 'cork', 'uncork']);
  });

  it('a deferrable write after a released turn is held by the I/O end still pending', () => {
    const { socket, turns, turnEnds, ioEnds } = twoSchedulers();
    turns.cork(true);
    turns.cork();
    turnEnds.shift()!(); // released with the other write
    turns.cork(true); // a new deferrable turn while the first I/O end is pending
    expect([socket.corked, turnEnds.length, ioEnds.length]).toEqual([1, 0, 1]);
    ioEnds.shift()!();
    expect(socket.corked).toBe(0);
    expect(socket.calls).toEqual(['cork', 'uncork', 'cork', 'uncork']);
  });

  it('without an I/O scheduler, deferrable writes end with their turn', () => {
    const socket = fakeSocket();
    const scheduled: (() => void)[] = [];
    const turns = new TurnCork(socket, (release) => scheduled.push(release));
    turns.cork(true);
    expect([socket.corked, scheduled.length]).toEqual([1, 1]);
    scheduled.shift()!();
    expect(socket.corked).toBe(0);
  });
});
