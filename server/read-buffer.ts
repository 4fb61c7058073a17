/**
 * Reading backend sockets without a fresh allocation per read (raw mode, backend -> client).
 *
 * By default Node allocates a new 64 KiB ArrayBuffer for every read. At a gigabyte per second that is 16,000
 * buffers a second for the garbage collector, and fresh pages for the kernel to fault in and zero; profiles of
 * the gateway showed more CPU in page faults and mark-compacts than in moving the bytes (docs/BENCHMARKS.md).
 * Instead every backend socket reads into ONE shared buffer (`net.connect({ onread })`): libuv fills it and
 * calls back synchronously, so no two sockets ever see it at once. The callback copies the bytes out at once,
 * into a recycled buffer from a small process-wide pool when the read was large, or into an exact-size buffer
 * when it was small (a few keystrokes must not pin 256 KiB). The copy costs far less than the allocation did.
 */
import { Buffer } from 'node:buffer';
import type { OnReadOpts } from 'node:net';

/** Bytes read at most per read: the largest message raw mode sends toward a client. */
export const READ_BUFFER_BYTES = 256 * 1024;
/** Reads below this many bytes get an exact-size copy; larger ones a pooled READ_BUFFER_BYTES buffer. */
export const SMALL_READ_BYTES = 16 * 1024;
/** Free pooled buffers kept for reuse, process-wide (the rest are left to the garbage collector). */
export const MAX_POOLED_BUFFERS = 16;

/** One read's bytes, owned by the receiver until it calls release() (when the bytes left the process). */
export interface ReadChunk {
  /** The bytes read: a view of `memory`. */
  bytes: Buffer;
  /** What the chunk holds on to while unreleased: bytes.length, or the pooled buffer's whole size. */
  held: number;
  /** Give the memory back for reuse; the chunk must not be touched afterwards. Idempotent. */
  release(): void;
}

let shared: Buffer | undefined;
const free: Buffer[] = [];

function copyOut(buf: Uint8Array, n: number): ReadChunk {
  if (n < SMALL_READ_BYTES) {
    const bytes = Buffer.allocUnsafe(n);
    bytes.set(buf.subarray(0, n));
    return { bytes, held: n, release() {} };
  }
  let memory: Buffer | undefined = free.pop() ?? Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  memory.set(buf.subarray(0, n));
  return {
    bytes: memory.subarray(0, n),
    held: READ_BUFFER_BYTES,
    release() {
      if (memory && free.length < MAX_POOLED_BUFFERS) free.push(memory);
      memory = undefined;
    },
  };
}

/**
 * The `onread` option for net.connect(): each read is handed to `onChunk` as a ReadChunk; `onChunk` returning
 * false pauses the socket (resume() it to read again), exactly as returning false from `onread.callback` does.
 */
export function pooledReads(onChunk: (chunk: ReadChunk) => boolean): OnReadOpts {
  shared ??= Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  return { buffer: shared, callback: (n, buf) => onChunk(copyOut(buf, n)) };
}
