/**
 * DATA frames written straight to the socket under a `ws` client WebSocket, masked in the same pass that copies
 * the payload (Node only: the SDK's NodeWebSocket in client/node.ts, and the agent's dial through WsTransport in
 * server/mux.ts); small control frames the same way (writeMaskedMessageBeside); unmaskInPlace(), with which the gateway's frame reader unmasks what a client sent
 * (client/frame-reader.ts); and writeMessageHead(), which also frames the gateway's unmasked DATA (server/mux.ts).
 *
 * A client masks every frame it sends (RFC 6455 5.3). Through ws.send(), a DATA frame cost two copies of its
 * payload and two 64 KiB allocations: shared/encode.ts copied the application's bytes behind the 6-byte header,
 * then ws copied that message again to mask it (ws never masks a caller's buffer in place). Here the payload is
 * copied once, masked on the way, into a recycled buffer that already holds the WebSocket header and our frame
 * header. Measured with bench/cpu-probe.mjs (docs/BENCHMARKS.md): the SDK client's user CPU uploading 472-543 ->
 * 304-379 ms per GiB; mux upload 858 -> 913 MB/s and echo 483 -> 514 (a first patched build: 1,006 -> 1,205 and
 * 492 -> 537).
 *
 * Writing beside ws is safe while ws itself writes each frame to the socket synchronously, in call order: it does
 * unless permessage-deflate was negotiated (its compression is asynchronous and queues ws's frames) or a Blob is
 * being sent. NodeWebSocket never offers the extension and checks that none was negotiated; the SDK sends bytes
 * only. ws.bufferedAmount counts the socket's pending bytes, so these frames count toward it like ws's own.
 */
import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';
import { createRequire } from 'node:module';
import { BufferPool } from '../shared/buffer-pool.js';
import { FrameType, HEADER_BYTES, MAX_DATA_PAYLOAD, MAX_FRAME_BYTES } from '../shared/constants.js';

/** WebSocket.OPEN. */
const WS_OPEN = 1;
/** The WebSocket header of a masked binary message of up to MAX_FRAME_BYTES: 2 + 8 length bytes + 4 mask bytes. */
const MAX_WS_HEADER_BYTES = 14;
/** Frames of payloads at least this large go in recycled memory; smaller ones are allocated to size. */
const MIN_POOLED_PAYLOAD = 16 * 1024;
/**
 * Recycled frames kept by the process (1 MiB). The engine stops sending DATA at 1 MiB held by the transport
 * (maxTransportBufferedBytes), so a busy session has about 16 frames in flight at once.
 */
const MAX_FREE_FRAMES = 16;
const frames = new BufferPool(MAX_WS_HEADER_BYTES + MAX_FRAME_BYTES, MAX_FREE_FRAMES);
/** The masking key turned to where the payload starts (byte 6 of the message); reused, as masking is synchronous. */
const payloadKey = Buffer.alloc(4);

type MaskFn = (source: Uint8Array, mask: Uint8Array, output: Uint8Array, offset: number, length: number) => void;

/** ws's own JavaScript fallback, for when the optional native `bufferutil` is not installed. */
function maskJs(source: Uint8Array, mask: Uint8Array, output: Uint8Array, offset: number, length: number): void {
  for (let i = 0; i < length; i++) output[offset + i] = source[i]! ^ mask[i & 3]!;
}

/** `bufferutil`'s native mask when ws would use it too (installed, and WS_NO_BUFFER_UTIL unset). */
function loadMask(): MaskFn {
  if (process.env.WS_NO_BUFFER_UTIL) return maskJs;
  try {
    const native = (createRequire(import.meta.url)('bufferutil') as { mask?: MaskFn }).mask;
    if (typeof native !== 'function') return maskJs;
    // The native mask takes Buffers only: hand it views (no copy) of anything else.
    return (source, mask, output, offset, length) => native(asBuffer(source), asBuffer(mask), asBuffer(output), offset, length);
  } catch {
    return maskJs;
  }
}
const applyMask = loadMask();

type UnmaskFn = (buffer: Buffer, mask: Buffer) => void;

/** `bufferutil`'s native in-place unmask, under the same conditions as loadMask(); undefined: JavaScript. */
function loadUnmask(): UnmaskFn | undefined {
  if (process.env.WS_NO_BUFFER_UTIL) return undefined;
  try {
    const native = (createRequire(import.meta.url)('bufferutil') as { unmask?: UnmaskFn }).unmask;
    return typeof native === 'function' ? native : undefined;
  } catch {
    return undefined;
  }
}
const nativeUnmask = loadUnmask();
/** The key turned to the piece's offset; reused, as unmasking is synchronous. */
const turnedKey = Buffer.alloc(4);
/** Below this many bytes a JavaScript loop beats the native call (ws's own threshold). */
const MIN_NATIVE_UNMASK = 32;

/**
 * Unmask `bytes` in place: bytes of a message masked with `key` (RFC 6455 5.3), starting `keyOffset` (0 to 3)
 * bytes into the key (the piece's offset in the message, mod 4). The frame reader's Unmask.
 */
export function unmaskInPlace(bytes: Uint8Array, key: Uint8Array, keyOffset: number): void {
  const n = bytes.length;
  if (n < MIN_NATIVE_UNMASK || !nativeUnmask) {
    for (let i = 0; i < n; i++) bytes[i] = bytes[i]! ^ key[(keyOffset + i) & 3]!;
    return;
  }
  for (let i = 0; i < 4; i++) turnedKey[i] = key[(keyOffset + i) & 3]!;
  nativeUnmask(asBuffer(bytes), turnedKey);
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Masking keys, drawn from the CSPRNG 8 KiB at a time as ws does (RFC 6455 5.3: unpredictable). */
const keys = Buffer.alloc(8192);
let keyAt = keys.length;
/** The next 4 unused random bytes, as a view valid until the next call. */
function nextKey(): Uint8Array {
  if (keyAt === keys.length) {
    randomFillSync(keys);
    keyAt = 0;
  }
  keyAt += 4;
  return keys.subarray(keyAt - 4, keyAt);
}

/** Bytes of the masked WebSocket message carrying `messageBytes`: its header (2 + 0, 2 or 8 + 4 key bytes) and them. */
function maskedMessageBytes(messageBytes: number): number {
  return messageHeadBytes(messageBytes) + 4 + messageBytes;
}

/** Bytes of the masked WebSocket message carrying a DATA frame of `payloadBytes`. */
export function maskedDataFrameBytes(payloadBytes: number): number {
  return maskedMessageBytes(HEADER_BYTES + payloadBytes);
}

/** Bytes of the header of an unmasked WebSocket message carrying `messageBytes`: 2, 4 or 10 (RFC 6455 5.2). */
export function messageHeadBytes(messageBytes: number): number {
  return messageBytes < 126 ? 2 : messageBytes < 65_536 ? 4 : 10;
}

/**
 * Write the header of a final, binary WebSocket message of `messageBytes` (at most MAX_FRAME_BYTES) into `into`,
 * with the mask bit set when `masked` (the key is the caller's to write next); returns where it ends. The shortest
 * length form, as ws writes it.
 */
export function writeMessageHead(into: Uint8Array, messageBytes: number, masked: boolean): number {
  const maskBit = masked ? 0x80 : 0;
  into[0] = 0x82; // FIN, binary
  const at = messageHeadBytes(messageBytes);
  if (at === 2) into[1] = maskBit | messageBytes;
  else if (at === 4) {
    into[1] = maskBit | 126;
    into[2] = messageBytes >>> 8;
    into[3] = messageBytes & 0xff;
  } else {
    // 64-bit length; a message is at most MAX_FRAME_BYTES, so only the low three bytes are not zero.
    into[1] = maskBit | 127;
    into.fill(0, 2, 7);
    into[7] = messageBytes >>> 16;
    into[8] = (messageBytes >>> 8) & 0xff;
    into[9] = messageBytes & 0xff;
  }
  return at;
}

/**
 * Write the header of a masked, final, binary WebSocket message of `messageBytes` (at most MAX_FRAME_BYTES) into
 * `into`, `key` last; returns where the message itself starts.
 */
function writeMaskedHead(into: Uint8Array, messageBytes: number, key: Uint8Array): number {
  const at = writeMessageHead(into, messageBytes, true);
  into.set(key, at);
  return at + 4;
}

/**
 * Write into `into` one whole masked, final, binary WebSocket message carrying DATA for `streamId` (PROTOCOL 2
 * and 3), masked with the 4 bytes of `key`; returns its length. The same bytes as ws.send(encodeData(...)) with
 * that key, made with one pass over the payload.
 */
export function encodeMaskedData(into: Uint8Array, streamId: number, payload: Uint8Array, key: Uint8Array): number {
  const n = payload.length;
  if (n < 1 || n > MAX_DATA_PAYLOAD) throw new RangeError(`DATA payload ${n}`);
  const total = maskedDataFrameBytes(n);
  if (into.length < total) throw new RangeError(`frame buffer ${into.length} < ${total}`);
  const at = writeMaskedHead(into, HEADER_BYTES + n, key);
  const k0 = key[0]!;
  const k1 = key[1]!;
  const k2 = key[2]!;
  const k3 = key[3]!;
  // Our 6-byte header, masked by hand: key bytes 0 1 2 3 0 1.
  into[at] = FrameType.DATA ^ k0;
  into[at + 1] = 0 ^ k1;
  into[at + 2] = (streamId >>> 24) ^ k2;
  into[at + 3] = ((streamId >>> 16) & 0xff) ^ k3;
  into[at + 4] = ((streamId >>> 8) & 0xff) ^ k0;
  into[at + 5] = (streamId & 0xff) ^ k1;
  // The payload starts 6 bytes into the message: the key turned by two.
  payloadKey[0] = k2;
  payloadKey[1] = k3;
  payloadKey[2] = k0;
  payloadKey[3] = k1;
  applyMask(payload, payloadKey, into, at + HEADER_BYTES, n);
  return total;
}

/** The part of a net.Socket (or tls.TLSSocket) this writes to. */
export interface FrameSink {
  write(chunk: Uint8Array, cb: (err?: Error | null) => void): boolean;
}

/** What the guard of writeMaskedDataBeside reads of a `ws` WebSocket. */
export interface WsState {
  readonly readyState: number;
  readonly extensions: string;
}

/**
 * Send one DATA frame on `socket`, the socket under `ws`, when writing beside ws is safe (see the top of this
 * file): ws is open and negotiated no extension. Returns false, having written nothing, otherwise: send through
 * ws then. `done` as for writeMaskedData.
 */
export function writeMaskedDataBeside(ws: WsState, socket: FrameSink, streamId: number, payload: Uint8Array, done: () => void): boolean {
  if (ws.readyState !== WS_OPEN || ws.extensions !== '') return false;
  writeMaskedData(socket, streamId, payload, done);
  return true;
}

/** Messages up to this size go through writeMaskedMessageBeside (control frames); larger ones through ws. */
export const MAX_SMALL_MESSAGE_BYTES = 1024;

/**
 * Write into `into` one whole masked, final, binary WebSocket message carrying `message` (at most
 * MAX_SMALL_MESSAGE_BYTES), masked with the 4 bytes of `key`; returns its length. The same bytes as
 * ws.send(message) with that key.
 */
export function encodeMaskedMessage(into: Uint8Array, message: Uint8Array, key: Uint8Array): number {
  const n = message.length;
  if (n > MAX_SMALL_MESSAGE_BYTES) throw new RangeError(`message ${n} > ${MAX_SMALL_MESSAGE_BYTES}`);
  const total = maskedMessageBytes(n);
  if (into.length < total) throw new RangeError(`frame buffer ${into.length} < ${total}`);
  const at = writeMaskedHead(into, n, key);
  for (let i = 0; i < n; i++) into[at + i] = message[i]! ^ key[i & 3]!;
  return total;
}

/**
 * Send one small binary message (a control frame: WINDOW, OPEN, FIN, PING...) on `socket`, the socket under `ws`,
 * framed and masked in one allocation and one socket write, when writing beside ws is safe (see the top of this
 * file) and the message is at most MAX_SMALL_MESSAGE_BYTES. ws.send() frames it in two writes (header, then a
 * masked copy) and allocates for each; at 100 busy streams the SDK sends about 8,000 WINDOWs per GiB. Returns
 * false, having written nothing, otherwise: send through ws then. `done` runs once the socket wrote it or failed.
 */
export function writeMaskedMessageBeside(ws: WsState, socket: FrameSink, message: Uint8Array, done: (err?: Error | null) => void): boolean {
  if (ws.readyState !== WS_OPEN || ws.extensions !== '' || message.length > MAX_SMALL_MESSAGE_BYTES) return false;
  const frame = Buffer.allocUnsafe(maskedMessageBytes(message.length));
  encodeMaskedMessage(frame, message, nextKey());
  socket.write(frame, done);
  return true;
}


/**
 * Send one DATA frame on `socket`; `done` runs once the socket wrote it or failed (its memory is recycled then).
 * The payload may be reused as soon as this returns.
 */
export function writeMaskedData(socket: FrameSink, streamId: number, payload: Uint8Array, done: () => void): void {
  const key = nextKey();
  const total = maskedDataFrameBytes(payload.length);
  if (payload.length < MIN_POOLED_PAYLOAD) {
    const frame = Buffer.allocUnsafe(total);
    encodeMaskedData(frame, streamId, payload, key);
    socket.write(frame, () => done());
    return;
  }
  const memory = frames.take();
  const frame = Buffer.from(memory.buffer, 0, total);
  encodeMaskedData(frame, streamId, payload, key);
  socket.write(frame, () => {
    // Called once, also with an error: the socket refers to the bytes no more either way.
    frames.give(memory);
    done();
  });
}
