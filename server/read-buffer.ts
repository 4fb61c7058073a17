/**
 * Reading backend sockets without a fresh allocation per read (backend -> client, raw and mux).
 *
 * By default Node allocates a new 64 KiB ArrayBuffer for every read. At a gigabyte per second that is 16,000
 * buffers a second for the garbage collector, and fresh pages for the kernel to fault in and zero; profiles of
 * the gateway showed more CPU in page faults and mark-compacts than in moving the bytes (docs/BENCHMARKS.md).
 * Instead every backend socket reads into ONE shared buffer (`net.connect({ onread })`): libuv fills it and
 * calls back synchronously, so no two sockets ever see it at once. The callback copies the bytes out at once,
 * into a recycled buffer from a small process-wide pool when the read was large, or into an exact-size buffer
 * when it was small (a few keystrokes must not pin 256 KiB). The copy costs far less than the allocation did,
 * and a socket in a bulk transfer skips it: it reads straight into recycled buffers (pooledReads).
 * Mux streams skip even that copy: the engine copies each read in the shared buffer straight into DATA frames
 * and keeps a copy only of what must wait for credit (Stream.write(chunk, borrowed), shared/session.ts); and on
 * the gateway's side a bulk read's pooled buffer is lent to the engine whole, its DATA frames written to the
 * socket as views of it (lendRead, server/mux.ts WsTransport): no copy at all.
 */
import { Buffer } from 'node:buffer';
import type { OnReadOpts } from 'node:net';
import { BufferPool } from '../shared/buffer-pool.js';

/** Bytes read at most per read: the largest message raw mode sends toward a client. */
export const READ_BUFFER_BYTES = 256 * 1024;
/** Reads below this many bytes get an exact-size copy; larger ones a pooled READ_BUFFER_BYTES buffer. */
export const SMALL_READ_BYTES = 16 * 1024;
/** Free pooled buffers kept for reuse, process-wide (the rest are left to the garbage collector). */
export const MAX_POOLED_BUFFERS = 16;

/** One read's bytes, owned by the receiver until it calls release() (when the bytes left the process). */
export interface ReadChunk {
  /** The bytes read: a pooled buffer's first bytes, or a buffer of their own. */
  bytes: Uint8Array;
  /** What the chunk holds on to while unreleased: bytes.length, or the pooled buffer's whole size. */
  held: number;
  /** Give the memory back for reuse; the chunk must not be touched afterwards. Idempotent. */
  release(): void;
}

let shared: Buffer | undefined;
const readPool = new BufferPool(READ_BUFFER_BYTES, MAX_POOLED_BUFFERS);

/** release() of a chunk that owns its memory: nothing to give back. */
export const ownMemory = (): void => {};

/** A chunk that owns a pooled buffer: its first n bytes. */
function pooledChunk(memory: Uint8Array, n: number): ReadChunk {
  let owned: Uint8Array | undefined = memory;
  return {
    bytes: memory.subarray(0, n),
    held: READ_BUFFER_BYTES,
    release() {
      if (owned) readPool.give(owned);
      owned = undefined;
    },
  };
}

function copyOut(buf: Uint8Array, n: number): ReadChunk {
  if (n < SMALL_READ_BYTES) {
    const bytes = Buffer.allocUnsafe(n);
    bytes.set(buf.subarray(0, n));
    return { bytes, held: n, release: ownMemory };
  }
  const memory = readPool.take();
  memory.set(buf.subarray(0, n));
  return pooledChunk(memory, n);
}

/**
 * Reads lent out whole: how many holders each lent buffer has (the bridge until its stream took the read, then
 * each DATA frame until the socket wrote it). The last releaseRead() gives the buffer back to the pool. Weak: a
 * buffer whose holders never all let go (a socket destroyed before it called back) is left to the garbage
 * collector, never kept.
 */
const lent = new WeakMap<ArrayBufferLike, number>();

/** A pooled READ_BUFFER_BYTES buffer for a socket's next read (give it back with giveReadBuffer if unlent). */
export function takeReadBuffer(): Uint8Array {
  return readPool.take();
}

/** Give back a buffer from takeReadBuffer() that was never lent. */
export function giveReadBuffer(bytes: Uint8Array): void {
  readPool.give(bytes);
}

/** Lend out `bytes`, a view of a buffer from takeReadBuffer(), with the caller as its one holder. */
export function lendRead(bytes: Uint8Array): void {
  lent.set(bytes.buffer, 1);
}

/** One more holder of `bytes` if they are a view of a lent buffer; false (nothing held) otherwise. */
export function holdIfLent(bytes: Uint8Array): boolean {
  const n = lent.get(bytes.buffer);
  if (n === undefined) return false;
  lent.set(bytes.buffer, n + 1);
  return true;
}

/** One holder of a lent buffer lets go of it (any view of it); the last gives it back to the pool. */
export function releaseRead(bytes: Uint8Array): void {
  const n = lent.get(bytes.buffer);
  if (n === undefined) return;
  if (n > 1) lent.set(bytes.buffer, n - 1);
  else {
    lent.delete(bytes.buffer);
    readPool.give(bytes);
  }
}

/**
 * The buffer every backend socket reads into. Valid only inside the `onread` callback that was handed it: the
 * next read of any socket overwrites it.
 */
export function sharedReadBuffer(): Buffer {
  shared ??= Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  return shared;
}

/**
 * The `onread` option for net.connect(): each read is handed to `onChunk` as a ReadChunk; `onChunk` returning
 * false pauses the socket (resume() it to read again), exactly as returning false from `onread.callback` does.
 *
 * A socket reads into the shared buffer until a read fills it (a bulk transfer: more is waiting). From then on
 * each read goes straight into a pooled buffer of its own, which the chunk takes along (no copy at all, unless the
 * read was small), and the socket gets a fresh one for its next read (Node asks `buffer()` after every read).
 * A read that does not fill its buffer puts the socket back on the shared one, so a socket left idle after a
 * burst pins nothing; a paused bulk socket pins one pooled buffer.
 */
export function pooledReads(onChunk: (chunk: ReadChunk) => boolean): OnReadOpts {
  let next: Uint8Array = sharedReadBuffer();
  return {
    buffer: () => next,
    callback: (n, buf) => {
      let chunk: ReadChunk;
      if (buf === shared) chunk = copyOut(buf, n);
      else if (n >= SMALL_READ_BYTES) chunk = pooledChunk(buf, n);
      else {
        chunk = copyOut(buf, n);
        readPool.give(buf);
      }
      // A read that filled its buffer left more waiting: read on into a buffer of its own. Anything less may be
      // the end of a burst (a page, a screen update), after which the socket can sit idle for hours.
      next = n === buf.byteLength ? readPool.take() : sharedReadBuffer();
      return onChunk(chunk);
    },
  };
}
