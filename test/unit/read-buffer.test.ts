/**
 * server/read-buffer.ts pooledReads: which buffer a socket reads into next, and whether a read is copied. Node
 * calls `buffer()` after every read callback; here the callback is driven by hand with what Node would pass.
 * (test/integration/raw.test.ts runs the same code under real sockets, mixing connections.)
 */
import { describe, expect, it } from 'vitest';
import {
  READ_BUFFER_BYTES,
  SMALL_READ_BYTES,
  giveReadBuffer,
  holdIfLent,
  lendRead,
  pooledReads,
  releaseRead,
  sharedReadBuffer,
  takeReadBuffer,
  type ReadChunk,
} from '../../server/read-buffer.js';

function reader() {
  const chunks: ReadChunk[] = [];
  const opts = pooledReads((chunk) => {
    chunks.push(chunk);
    return true;
  });
  const buffer = opts.buffer as () => Uint8Array;
  /** One read of n bytes into the buffer the socket holds now; returns the chunk it produced. */
  const read = (n: number): ReadChunk => {
    const buf = buffer();
    buf.fill(n & 0xff, 0, n);
    opts.callback(n, buf);
    return chunks.at(-1)!;
  };
  return { buffer, read };
}

describe('pooledReads', () => {
  it('starts on the shared buffer and copies what it reads there', () => {
    const r = reader();
    expect(r.buffer()).toBe(sharedReadBuffer());
    const chunk = r.read(100);
    expect(chunk.bytes.buffer).not.toBe(sharedReadBuffer().buffer);
    expect(chunk.held).toBe(100);
  });

  it('a read that fills the buffer moves the socket to a pooled buffer of its own, which the next chunk keeps without a copy', () => {
    const r = reader();
    r.read(READ_BUFFER_BYTES);
    const own = r.buffer();
    expect(own).not.toBe(sharedReadBuffer());
    expect(own.byteLength).toBe(READ_BUFFER_BYTES);
    const chunk = r.read(READ_BUFFER_BYTES);
    expect(chunk.bytes.buffer).toBe(own.buffer);
    expect(chunk.held).toBe(READ_BUFFER_BYTES);
    // Still a bulk transfer: a fresh buffer for the next read, never the one the chunk holds.
    expect(r.buffer()).not.toBe(own);
    expect(r.buffer()).not.toBe(sharedReadBuffer());
    chunk.release();
  });

  it('a read that does not fill its buffer (the end of a burst) puts the socket back on the shared buffer', () => {
    const r = reader();
    r.read(READ_BUFFER_BYTES);
    const own = r.buffer();
    // Large but partial: kept without a copy, and the socket, probably idle now, pins nothing more.
    const chunk = r.read(SMALL_READ_BYTES * 2);
    expect(chunk.bytes.buffer).toBe(own.buffer);
    expect(r.buffer()).toBe(sharedReadBuffer());
    chunk.release();
  });

  it('a small read into a pooled buffer is copied out to its exact size', () => {
    const r = reader();
    r.read(READ_BUFFER_BYTES);
    const own = r.buffer();
    const chunk = r.read(10);
    expect(chunk.bytes.buffer).not.toBe(own.buffer);
    expect(chunk.held).toBe(10);
    expect([...chunk.bytes]).toEqual(new Array(10).fill(10));
    expect(r.buffer()).toBe(sharedReadBuffer());
  });
});

describe('lent reads', () => {
  it('go back to the pool with the last holder, and only then', () => {
    const read = takeReadBuffer();
    lendRead(read);
    expect(holdIfLent(read.subarray(10, 20))).toBe(true); // a frame takes a piece
    expect(holdIfLent(read.subarray(20, 30))).toBe(true); // and another
    releaseRead(read); // the lender lets go
    releaseRead(read.subarray(10, 20));
    const meanwhile = takeReadBuffer();
    expect(meanwhile.buffer).not.toBe(read.buffer);
    giveReadBuffer(meanwhile);
    releaseRead(read.subarray(20, 30)); // the last holder
    expect(takeReadBuffer().buffer).toBe(read.buffer);
    // Given back, it is lent no more: nothing holds it, and a stray release changes nothing.
    expect(holdIfLent(read)).toBe(false);
    releaseRead(read);
    expect(takeReadBuffer().buffer).not.toBe(read.buffer);
  });

  it('a buffer that was never lent is not held', () => {
    expect(holdIfLent(new Uint8Array(100))).toBe(false);
    expect(holdIfLent(sharedReadBuffer())).toBe(false);
  });
});
