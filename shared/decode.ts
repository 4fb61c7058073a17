/**
 * PROTOCOL 2 and 3: bytes to frames. The decoder checks one whole message. The WebSocket layer should already
 * have refused anything over MAX_FRAME_BYTES before buffering it (PROTOCOL 1.4); a transport that did not still
 * gets SOCKGATE_ERR_PROTOCOL_TOO_BIG (1009) here, not a 1002. Every failure is a SockgateError with a
 * SOCKGATE_ERR_PROTOCOL_* code; nothing else is ever thrown. Payloads are views into the message, not copies.
 */
import {
  FrameType,
  HEADER_BYTES,
  KNOWN_FLAGS,
  MAX_DATA_PAYLOAD,
  MAX_FRAME_BYTES,
  MAX_OPEN_PAYLOAD,
  MAX_REASON_BYTES,
  PING_PAYLOAD_BYTES,
  isSessionFrameType,
} from './constants.js';
import { SockgateError } from './errors.js';
import type { Frame, FrameOption } from './frame.js';
import { utf8Decode } from './utf8.js';

/** 2^53 - 1 split as u64 halves: the high half may use at most 21 bits. */
const MAX_SAFE_HIGH = 0x1f_ffff;

function fail(code: 'TRUNCATED' | 'BAD_TYPE' | 'BAD_FLAGS' | 'BAD_STREAM_ID' | 'BAD_LENGTH' | 'BAD_VALUE', why: string): never {
  throw new SockgateError(`SOCKGATE_ERR_PROTOCOL_${code}`, why);
}

/** The header alone: lets a caller reject a frame from its first 6 bytes. */
export function decodeHeader(bytes: Uint8Array): { type: number; streamId: number; payloadBytes: number } {
  if (bytes.length < HEADER_BYTES) fail('TRUNCATED', `${bytes.length} bytes, header is ${HEADER_BYTES}`);
  const type = bytes[0]!;
  const flags = bytes[1]!;
  if (type < FrameType.OPEN || type > FrameType.GOAWAY) fail('BAD_TYPE', `type 0x${type.toString(16)}`);
  if ((flags & ~KNOWN_FLAGS) !== 0) fail('BAD_FLAGS', `flags 0x${flags.toString(16)}`);
  const streamId = ((bytes[2]! << 24) | (bytes[3]! << 16) | (bytes[4]! << 8) | bytes[5]!) >>> 0;
  if (isSessionFrameType(type) ? streamId !== 0 : streamId === 0) {
    fail('BAD_STREAM_ID', `stream id ${streamId} for type 0x${type.toString(16)}`);
  }
  return { type, streamId, payloadBytes: bytes.length - HEADER_BYTES };
}

function decodeOptions(bytes: Uint8Array, view: DataView, at: number): FrameOption[] {
  const options: FrameOption[] = [];
  while (at < bytes.length) {
    if (at + 3 > bytes.length) fail('BAD_LENGTH', 'option header runs past the payload');
    const tag = bytes[at]!;
    const len = view.getUint16(at + 1);
    if (at + 3 + len > bytes.length) fail('BAD_LENGTH', `option 0x${tag.toString(16)} runs past the payload`);
    options.push({ tag, value: bytes.subarray(at + 3, at + 3 + len) });
    at += 3 + len;
  }
  return options;
}

function decodeCodeReason(bytes: Uint8Array, view: DataView): { code: number; reason: string } {
  const reasonBytes = bytes.length - HEADER_BYTES - 2;
  if (reasonBytes < 0) fail('BAD_LENGTH', 'missing code');
  if (reasonBytes > MAX_REASON_BYTES) fail('BAD_LENGTH', `reason of ${reasonBytes} bytes`);
  return { code: view.getUint16(HEADER_BYTES), reason: utf8Decode(bytes.subarray(HEADER_BYTES + 2)) };
}

export function decodeFrame(bytes: Uint8Array): Frame {
  if (bytes.length > MAX_FRAME_BYTES) {
    throw new SockgateError('SOCKGATE_ERR_PROTOCOL_TOO_BIG', `${bytes.length} bytes > ${MAX_FRAME_BYTES}`);
  }
  const { type, streamId, payloadBytes } = decodeHeader(bytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (type) {
    case FrameType.DATA:
      if (payloadBytes < 1 || payloadBytes > MAX_DATA_PAYLOAD) fail('BAD_LENGTH', `DATA of ${payloadBytes} bytes`);
      return { type, streamId, data: bytes.subarray(HEADER_BYTES) };
    case FrameType.WINDOW: {
      if (payloadBytes !== 12) fail('BAD_LENGTH', `WINDOW of ${payloadBytes} bytes`);
      const high = view.getUint32(HEADER_BYTES);
      if (high > MAX_SAFE_HIGH) fail('BAD_VALUE', 'WINDOW consumed above 2^53 - 1');
      const consumed = high * 0x1_0000_0000 + view.getUint32(HEADER_BYTES + 4);
      return { type, streamId, consumed, window: view.getUint32(HEADER_BYTES + 8) };
    }
    case FrameType.OPEN: {
      if (payloadBytes > MAX_OPEN_PAYLOAD) fail('BAD_LENGTH', `OPEN of ${payloadBytes} bytes`);
      if (payloadBytes < 2) fail('BAD_LENGTH', 'OPEN without a route name');
      const nameBytes = bytes[HEADER_BYTES]!;
      if (nameBytes < 1 || HEADER_BYTES + 1 + nameBytes > bytes.length) fail('BAD_LENGTH', 'OPEN route name length');
      const route = utf8Decode(bytes.subarray(HEADER_BYTES + 1, HEADER_BYTES + 1 + nameBytes));
      return { type, streamId, route, options: decodeOptions(bytes, view, HEADER_BYTES + 1 + nameBytes) };
    }
    case FrameType.OPEN_OK:
      if (payloadBytes > MAX_OPEN_PAYLOAD) fail('BAD_LENGTH', `OPEN_OK of ${payloadBytes} bytes`);
      return { type, streamId, options: decodeOptions(bytes, view, HEADER_BYTES) };
    case FrameType.OPEN_FAIL:
    case FrameType.RESET:
      return { type, streamId, ...decodeCodeReason(bytes, view) };
    case FrameType.GOAWAY:
      return { type, streamId: 0, ...decodeCodeReason(bytes, view) };
    case FrameType.FIN:
      if (payloadBytes !== 0) fail('BAD_LENGTH', `FIN of ${payloadBytes} bytes`);
      return { type, streamId };
    case FrameType.PING:
    case FrameType.PONG:
      if (payloadBytes !== PING_PAYLOAD_BYTES) fail('BAD_LENGTH', `PING/PONG of ${payloadBytes} bytes`);
      return { type, streamId: 0, opaque: bytes.subarray(HEADER_BYTES) };
    default:
      // decodeHeader already refused unknown types; this keeps the switch honest if a type is added.
      return fail('BAD_TYPE', `type 0x${type.toString(16)}`);
  }
}
