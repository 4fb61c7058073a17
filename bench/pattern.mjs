// The bytes every transfer moves, and how the receiving end checks them.
//
// A pseudo-random pattern with a prime period (PERIOD bytes), sent from offset 0 in MESSAGE-byte pieces. The
// receiver compares each byte with the pattern at its offset (memcmp speed), so a dropped, duplicated, reordered
// or altered byte is caught at the offset where it happens: a relay moves bytes in chunks whose sizes share
// factors of two, and no such shift lines a prime period up again below PERIOD x 65,536 bytes.
//
// Why not a hash: sha256 of the received bytes cost the client ~1.2 s per GB on this machine, which capped every
// relay below ~850 MB/s and hid the differences between them; and the earlier 256-byte-periodic pattern let a
// dropped chunk plus a duplicated one hash the same.
import { Buffer } from 'node:buffer';

/** Bytes per message, as the benchmark sends them. */
export const MESSAGE = 64 * 1024;
/** One MESSAGE of filler, for the probes that do not check what arrives (backpressure, the flood backend). */
export const FILLER = Buffer.alloc(MESSAGE, 0x5a);

/** A prime, so that no shift by a multiple of a power of two maps the pattern onto itself. */
export const PERIOD = 1_048_573;

/**
 * Fill `buf` (PERIOD + MESSAGE bytes) with PERIOD bytes of xorshift32 output followed by its first MESSAGE bytes
 * again, so any window is one subarray. Self-contained (no imports, no Node API): bench/browser.mjs runs its
 * source in the page.
 */
export function fillPattern(buf, period, message) {
  let x = 0x9e3779b9;
  for (let i = 0; i < period; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 0xff;
  }
  buf.copyWithin(period, 0, message);
  return buf;
}

/** The pattern (see fillPattern). */
export const PATTERN = fillPattern(Buffer.allocUnsafe(PERIOD + MESSAGE), PERIOD, MESSAGE);

/** The `len` (<= MESSAGE) pattern bytes at stream offset `offset`, as a view: nothing is allocated. */
export function patternAt(offset, len = MESSAGE) {
  const o = offset % PERIOD;
  return PATTERN.subarray(o, o + len);
}

/** Checks received bytes against the pattern, in order. `error` names the first offset that differs. */
export class PatternCheck {
  received = 0;
  error = undefined;

  /** @param {Uint8Array} chunk */
  update(chunk) {
    if (this.error) return;
    for (let i = 0; i < chunk.length; ) {
      const o = this.received % PERIOD;
      const n = Math.min(chunk.length - i, PATTERN.length - o);
      const got = chunk.subarray(i, i + n);
      if (Buffer.compare(PATTERN.subarray(o, o + n), got) !== 0) {
        const at = got.findIndex((b, k) => b !== PATTERN[o + k]);
        this.error = `byte ${this.received + at} differs from the pattern`;
        return;
      }
      i += n;
      this.received += n;
    }
  }
}
