/** shared/flow.ts: the credit arithmetic of PROTOCOL 5, without any I/O. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { INITIAL_WINDOW, MAX_WINDOW } from '../../shared/constants.js';
import { ReceiveWindow, SendCredit } from '../../shared/flow.js';

describe('SendCredit', () => {
  it('starts with INITIAL_WINDOW of credit (5.1)', () => {
    const c = new SendCredit();
    expect(c.sent).toBe(0);
    expect(c.limit).toBe(INITIAL_WINDOW);
    expect(c.available).toBe(INITIAL_WINDOW);
    c.take(1000);
    expect(c.available).toBe(INITIAL_WINDOW - 1000);
  });

  it('a valid WINDOW raises the limit to consumed + window (5.2)', () => {
    const c = new SendCredit();
    c.take(200_000);
    expect(c.update(150_000, INITIAL_WINDOW)).toBeUndefined();
    expect(c.limit).toBe(150_000 + INITIAL_WINDOW);
    expect(c.available).toBe(150_000 + INITIAL_WINDOW - 200_000);
    // The same limit again is allowed: it does not decrease.
    expect(c.update(150_000, INITIAL_WINDOW)).toBeUndefined();
    expect(c.update(200_000, MAX_WINDOW)).toBeUndefined();
    expect(c.limit).toBe(200_000 + MAX_WINDOW);
  });

  it('refuses a window outside INITIAL_WINDOW..MAX_WINDOW and keeps the limit', () => {
    const c = new SendCredit();
    c.take(10);
    for (const w of [0, 1, INITIAL_WINDOW - 1, MAX_WINDOW + 1, 0xffff_ffff]) {
      expect(c.update(0, w), String(w)).toMatch(/window/);
      expect(c.limit).toBe(INITIAL_WINDOW);
    }
    expect(c.update(0, INITIAL_WINDOW)).toBeUndefined();
    expect(c.update(0, MAX_WINDOW)).toBeUndefined();
  });

  it('refuses consumed greater than what was sent', () => {
    const c = new SendCredit();
    c.take(100);
    expect(c.update(101, INITIAL_WINDOW)).toMatch(/consumed 101 > sent 100/);
    expect(c.limit).toBe(INITIAL_WINDOW);
    expect(c.update(100, INITIAL_WINDOW)).toBeUndefined();
  });

  it('refuses a WINDOW that would lower the limit', () => {
    const c = new SendCredit();
    c.take(100_000);
    expect(c.update(100_000, 2 * INITIAL_WINDOW)).toBeUndefined();
    expect(c.update(100_000, INITIAL_WINDOW)).toMatch(/lowered/);
    expect(c.limit).toBe(100_000 + 2 * INITIAL_WINDOW);
  });
});

describe('ReceiveWindow', () => {
  it('starts with INITIAL_WINDOW and checks maxWindow', () => {
    const w = new ReceiveWindow();
    expect(w.limit).toBe(INITIAL_WINDOW);
    expect(w.window).toBe(INITIAL_WINDOW);
    expect(w.maxWindow).toBe(INITIAL_WINDOW);
    expect(new ReceiveWindow(MAX_WINDOW).maxWindow).toBe(MAX_WINDOW);
    for (const bad of [0, INITIAL_WINDOW - 1, MAX_WINDOW + 1, NaN]) expect(() => new ReceiveWindow(bad)).toThrow(RangeError);
  });

  it('accepts DATA up to the limit and refuses past it without counting it (5.4)', () => {
    const w = new ReceiveWindow();
    expect(w.receive(INITIAL_WINDOW - 1)).toBe(true);
    expect(w.receive(2)).toBe(false);
    expect(w.received).toBe(INITIAL_WINDOW - 1);
    expect(w.receive(1)).toBe(true);
    expect(w.received).toBe(INITIAL_WINDOW);
    expect(w.receive(1)).toBe(false);
    expect(w.held).toBe(INITIAL_WINDOW);
  });

  it('sends WINDOW only once half the window is consumed since the last one (5.5)', () => {
    const w = new ReceiveWindow();
    w.receive(INITIAL_WINDOW);
    expect(w.consume(INITIAL_WINDOW / 2 - 1, 0, undefined)).toBeUndefined();
    expect(w.limit).toBe(INITIAL_WINDOW);
    expect(w.consume(1, 0, undefined)).toEqual({ consumed: INITIAL_WINDOW / 2, window: INITIAL_WINDOW });
    expect(w.limit).toBe(INITIAL_WINDOW / 2 + INITIAL_WINDOW);
    // The next one is due only after another half window.
    expect(w.consume(INITIAL_WINDOW / 2 - 1, 0, undefined)).toBeUndefined();
    expect(w.consume(1, 0, undefined)).toEqual({ consumed: INITIAL_WINDOW, window: INITIAL_WINDOW });
  });

  it('never counts more consumed than received', () => {
    const w = new ReceiveWindow();
    w.receive(10);
    expect(w.consume(1_000_000, 0, undefined)).toBeUndefined();
    expect(w.consumed).toBe(10);
    expect(w.held).toBe(0);
  });

  it('doubles the window when half of it is consumed within one RTT (a whole one within two), up to maxWindow', () => {
    const w = new ReceiveWindow(4 * INITIAL_WINDOW);
    const rtt = 10;
    let now = 0;
    const cycle = (): { consumed: number; window: number } | undefined => {
      const half = w.window / 2;
      w.receive(half);
      return w.consume(half, now, rtt);
    };
    // The first update has nothing to compare with: no growth.
    expect(cycle()?.window).toBe(INITIAL_WINDOW);
    now += 5;
    expect(cycle()?.window).toBe(2 * INITIAL_WINDOW);
    now += 5;
    expect(cycle()?.window).toBe(4 * INITIAL_WINDOW);
    now += 5;
    expect(cycle()?.window).toBe(4 * INITIAL_WINDOW); // capped by maxWindow
    expect(w.limit).toBe(w.consumed + 4 * INITIAL_WINDOW);
  });

  it('does not grow when consumption is slower than the RTT, or without an RTT', () => {
    const slow = new ReceiveWindow(MAX_WINDOW);
    let now = 0;
    for (let i = 0; i < 5; i++) {
      slow.receive(INITIAL_WINDOW / 2);
      expect(slow.consume(INITIAL_WINDOW / 2, now, 10)?.window).toBe(INITIAL_WINDOW);
      now += 10;
    }
    const unknown = new ReceiveWindow(MAX_WINDOW);
    for (let i = 0; i < 5; i++) {
      unknown.receive(INITIAL_WINDOW / 2);
      expect(unknown.consume(INITIAL_WINDOW / 2, 0, undefined)?.window).toBe(INITIAL_WINDOW);
    }
  });

  it('grows only up to its share of the session budget (5.7)', () => {
    const w = new ReceiveWindow(MAX_WINDOW);
    let now = 0;
    const windows: number[] = [];
    for (let i = 0; i < 8; i++) {
      w.receive(w.window / 2);
      windows.push(w.consume(w.window / 2, now, 10, 3 * INITIAL_WINDOW)!.window);
      now += 1;
    }
    // Doubling stops at the share, which need not be a power of two.
    expect(windows).toEqual([INITIAL_WINDOW, 2 * INITIAL_WINDOW, 3 * INITIAL_WINDOW, 3 * INITIAL_WINDOW, 3 * INITIAL_WINDOW, 3 * INITIAL_WINDOW, 3 * INITIAL_WINDOW, 3 * INITIAL_WINDOW]);
  });

  it('gives room back when its share falls: halves at each update down to the share, never below INITIAL_WINDOW (5.7)', () => {
    const w = new ReceiveWindow(MAX_WINDOW);
    let now = 0;
    const cycle = (ceiling: number): number => {
      const limit = w.limit;
      w.receive(w.window / 2);
      const update = w.consume(w.window / 2, now++, 10, ceiling)!;
      // The limit never decreases (5.2): a sender would reject the WINDOW otherwise.
      expect(update.consumed + update.window).toBeGreaterThanOrEqual(limit);
      return update.window;
    };
    for (let i = 0; i < 8; i++) cycle(MAX_WINDOW);
    expect(w.window).toBe(MAX_WINDOW);
    // 100 streams now share 16 MiB: each one's share is below INITIAL_WINDOW, so the floor applies.
    const shrinking = Array.from({ length: 8 }, () => cycle((16 * 1024 * 1024) / 100));
    expect(shrinking).toEqual([MAX_WINDOW / 2, MAX_WINDOW / 4, MAX_WINDOW / 8, MAX_WINDOW / 16, MAX_WINDOW / 32, MAX_WINDOW / 64, INITIAL_WINDOW, INITIAL_WINDOW]);
  });

  it('with the default maxWindow it never grows', () => {
    const w = new ReceiveWindow();
    for (let i = 0; i < 5; i++) {
      w.receive(INITIAL_WINDOW / 2);
      expect(w.consume(INITIAL_WINDOW / 2, i, 1000)?.window).toBe(INITIAL_WINDOW);
    }
  });
});

describe('sender and receiver together (property)', () => {
  type Step = { kind: 'send'; n: number } | { kind: 'consume'; n: number; ceiling: number } | { kind: 'tick'; ms: number };
  const step: fc.Arbitrary<Step> = fc.oneof(
    fc.integer({ min: 1, max: 65_536 }).map((n) => ({ kind: 'send' as const, n })),
    // The session's share for this stream changes as streams come and go (5.7), to any value, even below the floor.
    fc
      .record({ n: fc.integer({ min: 1, max: 200_000 }), ceiling: fc.integer({ min: 1, max: 2 * MAX_WINDOW }) })
      .map(({ n, ceiling }) => ({ kind: 'consume' as const, n, ceiling })),
    fc.integer({ min: 0, max: 50 }).map((ms) => ({ kind: 'tick' as const, ms })),
  );

  it('every WINDOW the receiver sends is valid for the sender, the limit never decreases, the window stays in range', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: INITIAL_WINDOW, max: MAX_WINDOW }),
        fc.option(fc.integer({ min: 1, max: 40 }), { nil: undefined }),
        fc.array(step, { maxLength: 300 }),
        (maxWindow, rtt, steps) => {
          const send = new SendCredit();
          const recv = new ReceiveWindow(maxWindow);
          let now = 0;
          let lastLimit = recv.limit;
          for (const s of steps) {
            if (s.kind === 'tick') now += s.ms;
            else if (s.kind === 'send') {
              // A well-behaved sender sends only within its credit; the receiver then always accepts it.
              const n = Math.min(s.n, send.available);
              if (n === 0) continue;
              send.take(n);
              expect(recv.receive(n)).toBe(true);
            } else {
              const update = recv.consume(s.n, now, rtt, s.ceiling);
              if (update) expect(send.update(update.consumed, update.window)).toBeUndefined();
            }
            expect(recv.limit).toBeGreaterThanOrEqual(lastLimit);
            lastLimit = recv.limit;
            expect(recv.window).toBeGreaterThanOrEqual(INITIAL_WINDOW);
            expect(recv.window).toBeLessThanOrEqual(maxWindow);
            // The receiver never holds more than one window (5.6), and both sides agree on the limit.
            expect(recv.held).toBeLessThanOrEqual(recv.window);
            expect(send.limit).toBe(recv.limit);
            expect(send.sent).toBe(recv.received);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a sender past its credit is refused by the receiver', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: INITIAL_WINDOW }), (extra) => {
        const recv = new ReceiveWindow();
        expect(recv.receive(INITIAL_WINDOW - extra + 1)).toBe(true);
        expect(recv.receive(extra)).toBe(false);
      }),
      { numRuns: 200 },
    );
  });
});
