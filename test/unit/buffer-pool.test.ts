/** shared/buffer-pool.ts: reuse, recognition of its own memory, and the bound on what it keeps. */
import { describe, expect, it } from 'vitest';
import { BufferPool } from '../../shared/buffer-pool.js';
import { bufferless } from '../helpers/frames.js';

describe('BufferPool', () => {
  it('hands a given-back buffer out again, and recognises views of its buffers only', () => {
    const pool = new BufferPool(1024, 4);
    const a = pool.take();
    expect(a.length).toBe(1024);
    expect(pool.owns(a.subarray(10, 20))).toBe(true);
    expect(pool.owns(new Uint8Array(1024))).toBe(false);
    pool.give(a.subarray(0, 5)); // a view gives back the whole buffer
    expect(pool.take().buffer).toBe(a.buffer);
  });

  it('does not recognise, nor ask for its buffer, a view shorter than minViewBytes', () => {
    const pool = new BufferPool(1024, 4, 100);
    const a = pool.take();
    expect(pool.owns(a.subarray(0, 100))).toBe(true);
    expect(pool.owns(bufferless(new Uint8Array(18)))).toBe(false); // would throw if asked for its buffer
    expect(pool.owns(a.subarray(0, 99))).toBe(false);
  });

  it('ignores memory it did not allocate', () => {
    const pool = new BufferPool(16, 4);
    const foreign = new Uint8Array(16);
    pool.give(foreign);
    expect(pool.take().buffer).not.toBe(foreign.buffer);
  });

  it('keeps at most maxFree buffers for reuse', () => {
    const pool = new BufferPool(16, 2);
    const taken = [pool.take(), pool.take(), pool.take()];
    for (const b of taken) pool.give(b);
    const again = [pool.take(), pool.take(), pool.take()];
    const reused = again.filter((b) => taken.some((t) => t.buffer === b.buffer));
    expect(reused).toHaveLength(2);
  });
});
