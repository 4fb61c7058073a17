/** The Drainer's sequence, with plain in-memory sessions (the real thing is in test/integration/operations.test.ts). */
import { describe, expect, it } from 'vitest';
import { type DrainHandle, Drainer, type Drainable } from '../../server/drain.js';

/** A session that records what the drain did to it and closes (asynchronously, like a WebSocket) when told. */
class FakeSession implements Drainable {
  readonly events: string[] = [];
  busy: boolean;
  handle!: DrainHandle;
  constructor(
    readonly mode: 'raw' | 'mux',
    busy: boolean,
    private readonly answersClose = true,
  ) {
    this.busy = busy;
  }
  goAway(): void {
    this.events.push('goaway');
  }
  close(why: 'finished' | 'deadline'): void {
    this.events.push(`close:${why}`);
    if (this.answersClose) setTimeout(() => this.handle.closed(), 1);
  }
  terminate(): void {
    this.events.push('terminate');
    setTimeout(() => this.handle.closed(), 1);
  }
}

function track(drainer: Drainer, s: FakeSession): FakeSession {
  s.handle = drainer.add(s);
  return s;
}

describe('Drainer', () => {
  it('sends GOAWAY to all, closes idle sessions at once and busy ones when they settle', async () => {
    const drainer = new Drainer();
    const idle = track(drainer, new FakeSession('mux', false));
    const busy = track(drainer, new FakeSession('mux', true));
    expect(drainer.draining).toBe(false);
    const done = drainer.drain(10_000, 1000);
    expect(drainer.draining).toBe(true);
    expect(idle.events).toEqual(['goaway', 'close:finished']);
    expect(busy.events).toEqual(['goaway']);
    // Settling while still busy does nothing; the last stream finishing closes the session.
    busy.handle.settled();
    await Promise.resolve();
    expect(busy.events).toEqual(['goaway']);
    busy.busy = false;
    busy.handle.settled();
    await Promise.resolve();
    expect(busy.events).toEqual(['goaway', 'close:finished']);
    expect(await done).toEqual({ finished: 2, atDeadline: 0 });
    expect(drainer.size).toBe(0);
  });

  it('closes what is left at the deadline, and terminates peers that do not answer the close', async () => {
    const drainer = new Drainer();
    const raw = track(drainer, new FakeSession('raw', true));
    const deaf = track(drainer, new FakeSession('mux', true, false));
    const result = await drainer.drain(20, 20);
    expect(result).toEqual({ finished: 0, atDeadline: 2 });
    expect(raw.events).toEqual(['goaway', 'close:deadline']);
    expect(deaf.events).toEqual(['goaway', 'close:deadline', 'terminate']);
    expect(drainer.size).toBe(0);
  });

  it('tells a session that arrives during the drain at once, and drains only once', async () => {
    const drainer = new Drainer();
    const first = track(drainer, new FakeSession('mux', true));
    const done = drainer.drain(10_000, 1000);
    expect(drainer.drain(1, 1)).toBe(done);
    const late = track(drainer, new FakeSession('mux', false));
    expect(late.events).toEqual(['goaway', 'close:finished']);
    first.busy = false;
    first.handle.settled();
    await done;
    expect(drainer.size).toBe(0);
  });

  it('resolves at once with no sessions', async () => {
    expect(await new Drainer().drain(10_000, 1000)).toEqual({ finished: 0, atDeadline: 0 });
  });
});
