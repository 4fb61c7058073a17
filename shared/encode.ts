/**
 * PROTOCOL 2 and 3: frames to bytes. Each function allocates exactly one Uint8Array for the whole message
 * (encodeData can build it in memory the caller provides instead).
 * A value the wire cannot carry (or that the decoder would refuse) is a caller bug: RangeError, never a frame
 * whose integers silently wrapped.
 */
import {
  FrameType,
  HEADER_BYTES,
  MAX_DATA_PAYLOAD,
  MAX_OPEN_PAYLOAD,
  MAX_REASON_BYTES,
  MAX_ROUTE_NAME_BYTES,
  MAX_STREAM_ID,
  PING_PAYLOAD_BYTES,
  isSessionFrameType,
} from './constants.js';
import type { Frame, FrameOption } from './frame.js';
import { truncateUtf8, utf8Encode } from './utf8.js';

function isUint(n: number, max: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= max;
}

/**
 * Big-endian integers written byte by byte, not through a DataView: a DataView needs the array's ArrayBuffer, and
 * asking a small Uint8Array for its buffer makes V8 move it out of the heap (an external allocation, swept by the
 * garbage collector), once per frame: about 0.7 us per WINDOW against 0.05 (the SDK returns credit about 8,100
 * times per GiB at 100 busy streams).
 */
function putU16(bytes: Uint8Array, at: number, v: number): void {
  bytes[at] = v >>> 8;
  bytes[at + 1] = v;
}

function putU32(bytes: Uint8Array, at: number, v: number): void {
  bytes[at] = v >>> 24;
  bytes[at + 1] = v >>> 16;
  bytes[at + 2] = v >>> 8;
  bytes[at + 3] = v;
}

function header(type: number, streamId: number, payloadBytes: number, into?: Uint8Array): Uint8Array {
  // PROTOCOL 2.3: stream id 0 is the session's; every other frame names a stream.
  if (!isUint(streamId, MAX_STREAM_ID) || (streamId === 0) !== isSessionFrameType(type)) {
    throw new RangeError(`stream id ${streamId} for type 0x${type.toString(16)}`);
  }
  if (into && into.length < HEADER_BYTES + payloadBytes) throw new RangeError(`${into.length} bytes cannot hold the frame`);
  const bytes = into ? into.subarray(0, HEADER_BYTES + payloadBytes) : new Uint8Array(HEADER_BYTES + payloadBytes);
  bytes[0] = type;
  bytes[1] = 0; // flags: none defined (PROTOCOL 2.2); set, since recycled memory may hold anything
  putU32(bytes, 2, streamId);
  return bytes;
}

/** PROTOCOL 3.1: the bytes an option list takes; RangeError for a tag or value it cannot carry. */
function optionsLength(options: readonly FrameOption[]): number {
  let n = 0;
  for (const o of options) {
    if (!isUint(o.tag, 0xff) || o.value.length > 0xffff) throw new RangeError(`bad option 0x${o.tag.toString(16)}`);
    n += 3 + o.value.length;
  }
  return n;
}

function writeOptions(bytes: Uint8Array, at: number, options: readonly FrameOption[]): void {
  for (const o of options) {
    bytes[at] = o.tag;
    putU16(bytes, at + 1, o.value.length);
    bytes.set(o.value, at + 3);
    at += 3 + o.value.length;
  }
}

/** OPEN: throws RangeError for a name or options the protocol cannot carry (a caller bug, not peer input). */
export function encodeOpen(streamId: number, route: string, options: readonly FrameOption[] = []): Uint8Array {
  const name = utf8Encode(route);
  if (name.length < 1 || name.length > MAX_ROUTE_NAME_BYTES) throw new RangeError(`route name length ${name.length}`);
  const payload = 1 + name.length + optionsLength(options);
  if (payload > MAX_OPEN_PAYLOAD) throw new RangeError(`OPEN payload ${payload} > ${MAX_OPEN_PAYLOAD}`);
  const bytes = header(FrameType.OPEN, streamId, payload);
  bytes[HEADER_BYTES] = name.length;
  bytes.set(name, HEADER_BYTES + 1);
  writeOptions(bytes, HEADER_BYTES + 1 + name.length, options);
  return bytes;
}

export function encodeOpenOk(streamId: number, options: readonly FrameOption[] = []): Uint8Array {
  const payload = optionsLength(options);
  if (payload > MAX_OPEN_PAYLOAD) throw new RangeError(`OPEN_OK payload ${payload} > ${MAX_OPEN_PAYLOAD}`);
  const bytes = header(FrameType.OPEN_OK, streamId, payload);
  writeOptions(bytes, HEADER_BYTES, options);
  return bytes;
}

function encodeCodeReason(type: number, streamId: number, code: number, reason: string): Uint8Array {
  if (!isUint(code, 0xffff)) throw new RangeError(`code ${code} is not a u16`);
  // PROTOCOL 3.3: a longer reason is cut (on a character boundary), not an error: it is only for logs.
  const text = truncateUtf8(reason, MAX_REASON_BYTES);
  const bytes = header(type, streamId, 2 + text.length);
  putU16(bytes, HEADER_BYTES, code);
  bytes.set(text, HEADER_BYTES + 2);
  return bytes;
}

export function encodeOpenFail(streamId: number, code: number, reason = ''): Uint8Array {
  return encodeCodeReason(FrameType.OPEN_FAIL, streamId, code, reason);
}

export function encodeReset(streamId: number, code: number, reason = ''): Uint8Array {
  return encodeCodeReason(FrameType.RESET, streamId, code, reason);
}

export function encodeGoAway(code: number, reason = ''): Uint8Array {
  return encodeCodeReason(FrameType.GOAWAY, 0, code, reason);
}

/**
 * DATA: one copy of the payload into the message. Callers split chunks longer than MAX_DATA_PAYLOAD. `into`:
 * memory to build the frame in (a recycled buffer) instead of a new allocation; the frame is a view of it.
 */
export function encodeData(streamId: number, data: Uint8Array, into?: Uint8Array): Uint8Array {
  if (data.length < 1 || data.length > MAX_DATA_PAYLOAD) throw new RangeError(`DATA payload ${data.length}`);
  const bytes = header(FrameType.DATA, streamId, data.length, into);
  bytes.set(data, HEADER_BYTES);
  return bytes;
}

/** Just the 6 header bytes of a DATA frame, for transports that can send header and payload without a copy. */
export function encodeDataHeader(streamId: number): Uint8Array {
  return header(FrameType.DATA, streamId, 0);
}

export function encodeWindow(streamId: number, consumed: number, window: number): Uint8Array {
  if (!isUint(consumed, Number.MAX_SAFE_INTEGER)) throw new RangeError(`WINDOW consumed ${consumed}`);
  if (!isUint(window, 0xffff_ffff)) throw new RangeError(`WINDOW window ${window} is not a u32`);
  const bytes = header(FrameType.WINDOW, streamId, 12);
  // u64 as two u32 halves: consumed is at most 2^53 - 1, so the high half fits in 21 bits.
  putU32(bytes, HEADER_BYTES, Math.floor(consumed / 0x1_0000_0000));
  putU32(bytes, HEADER_BYTES + 4, consumed >>> 0);
  putU32(bytes, HEADER_BYTES + 8, window);
  return bytes;
}

export function encodeFin(streamId: number): Uint8Array {
  return header(FrameType.FIN, streamId, 0);
}

function encodePingPong(type: number, opaque: Uint8Array): Uint8Array {
  if (opaque.length !== PING_PAYLOAD_BYTES) throw new RangeError('PING payload must be 8 bytes');
  const bytes = header(type, 0, PING_PAYLOAD_BYTES);
  bytes.set(opaque, HEADER_BYTES);
  return bytes;
}

export function encodePing(opaque: Uint8Array): Uint8Array {
  return encodePingPong(FrameType.PING, opaque);
}

export function encodePong(opaque: Uint8Array): Uint8Array {
  return encodePingPong(FrameType.PONG, opaque);
}

/** Any frame value to bytes (tests and tools; the session uses the specific encoders). */
export function encodeFrame(frame: Frame): Uint8Array {
  switch (frame.type) {
    case FrameType.OPEN:
      return encodeOpen(frame.streamId, frame.route, frame.options);
    case FrameType.OPEN_OK:
      return encodeOpenOk(frame.streamId, frame.options);
    case FrameType.OPEN_FAIL:
      return encodeOpenFail(frame.streamId, frame.code, frame.reason);
    case FrameType.DATA:
      return encodeData(frame.streamId, frame.data);
    case FrameType.WINDOW:
      return encodeWindow(frame.streamId, frame.consumed, frame.window);
    case FrameType.FIN:
      return encodeFin(frame.streamId);
    case FrameType.RESET:
      return encodeReset(frame.streamId, frame.code, frame.reason);
    case FrameType.PING:
      return encodePing(frame.opaque);
    case FrameType.PONG:
      return encodePong(frame.opaque);
    case FrameType.GOAWAY:
      return encodeGoAway(frame.code, frame.reason);
  }
}
