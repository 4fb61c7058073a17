/**
 * bench/pattern.mjs: the benchmark's integrity check. Every throughput figure in docs/BENCHMARKS.md rests on it
 * failing a transfer that dropped, duplicated, reordered or altered a byte, however the relay cut the stream.
 */
import { describe, expect, it } from 'vitest';
import { MESSAGE, PERIOD, PatternCheck, patternAt } from '../../bench/pattern.mjs';

/** `bytes` of the pattern from offset 0, as one buffer (crossing the period's end when bytes > PERIOD). */
function stream(bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let at = 0; at < bytes; at += MESSAGE) out.set(patternAt(at, Math.min(MESSAGE, bytes - at)), at);
  return out;
}

/** Feed `data` in pieces of seeded pseudo-random sizes from 1 byte to 200 KB; returns the checker. */
function feed(data: Uint8Array, seed = 1): PatternCheck {
  const check = new PatternCheck();
  let x = seed;
  for (let at = 0; at < data.length; ) {
    x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0;
    const n = 1 + (x % 200_000);
    check.update(data.subarray(at, at + n));
    at += n;
  }
  return check;
}

const firstBad = (check: PatternCheck): number => Number(/byte (\d+) differs/.exec(check.error ?? '')?.[1]);
const BYTES = 2 * PERIOD + 12_345; // wraps the period twice

describe('PatternCheck', () => {
  it('accepts the pattern however it is cut, across the end of the period', () => {
    const data = stream(BYTES);
    for (const seed of [1, 2, 3]) {
      const check = feed(data, seed);
      expect(check.error).toBeUndefined();
      expect(check.received).toBe(BYTES);
    }
  });

  it('names the offset of an altered byte', () => {
    const data = stream(BYTES);
    data[PERIOD + 77] = data[PERIOD + 77]! ^ 0x01;
    expect(firstBad(feed(data))).toBe(PERIOD + 77);
  });

  it('fails a dropped byte, a dropped or duplicated 64 KiB message, and two messages swapped', () => {
    const data = stream(BYTES);
    const at = 5 * MESSAGE;
    // [what, the bytes received, the offset where they first go wrong]
    const cases: [string, Uint8Array, number][] = [
      ['a dropped byte', Buffer.concat([data.subarray(0, at + 3), data.subarray(at + 4)]), at + 3],
      ['a dropped message', Buffer.concat([data.subarray(0, at), data.subarray(at + MESSAGE)]), at],
      ['a duplicated message', Buffer.concat([data.subarray(0, at + MESSAGE), data.subarray(at)]), at + MESSAGE],
      ['two messages swapped', Buffer.concat([data.subarray(0, at), data.subarray(at + MESSAGE, at + 2 * MESSAGE), data.subarray(at, at + MESSAGE), data.subarray(at + 2 * MESSAGE)]), at],
    ];
    for (const [what, bad, where] of cases) {
      const check = feed(bad);
      expect(check.error, what).toBeDefined();
      // Found where it happened (a few bytes later at most: a shifted byte can equal the expected one by chance).
      expect(firstBad(check), what).toBeGreaterThanOrEqual(where);
      expect(firstBad(check), what).toBeLessThan(where + 64);
    }
  });

  it('keeps the first difference: nothing after it counts', () => {
    const data = stream(3 * MESSAGE);
    data[MESSAGE + 1] = data[MESSAGE + 1]! ^ 0xff;
    const check = new PatternCheck();
    check.update(data.subarray(0, MESSAGE));
    check.update(data.subarray(MESSAGE, 2 * MESSAGE));
    check.update(data.subarray(2 * MESSAGE));
    expect(firstBad(check)).toBe(MESSAGE + 1);
    expect(check.received).toBe(MESSAGE);
  });
});
