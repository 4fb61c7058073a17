/**
 * A deliberately simple codec written from docs/PROTOCOL.md alone, to check the fast codec in shared/ against
 * (and as a baseline for benchmarks). It shares nothing with shared/encode.ts or shared/decode.ts: every field is
 * read and written one at a time through a DataView, with the numbers spelled out from the document, and every
 * message is built by concatenating parts. Clarity over speed.
 */
import type { Frame, FrameOption } from '../../shared/frame.js';

/** The decoder's error: the registry code it would report (PROTOCOL 7.2, decoder table). */
export class ReferenceDecodeError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

// PROTOCOL 3: type numbers, spelled out rather than imported.
const OPEN = 1;
const OPEN_OK = 2;
const OPEN_FAIL = 3;
const DATA = 4;
const WINDOW = 5;
const FIN = 6;
const RESET = 7;
const PING = 8;
const PONG = 9;
const GOAWAY = 10;

const HEADER = 6; // PROTOCOL 2
const MAX_MESSAGE = 6 + 65536; // PROTOCOL 1.4
const MAX_REASON = 512; // PROTOCOL 3.3
const MAX_OPEN = 1024; // PROTOCOL 3.1

function refuse(code: string): never {
  throw new ReferenceDecodeError(`SOCKGATE_ERR_PROTOCOL_${code}`);
}

function text(bytes: Uint8Array): string {
  // PROTOCOL 3.3: invalid UTF-8 is replaced; a leading U+FEFF is text like any other character.
  return new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(bytes);
}

function concat(parts: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function u8(n: number): Uint8Array {
  const b = new Uint8Array(1);
  new DataView(b.buffer).setUint8(0, n);
  return b;
}
function u16(n: number): Uint8Array {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, n, false);
  return b;
}
function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, false);
  return b;
}
function u64(n: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), false);
  return b;
}

function options(list: readonly FrameOption[]): Uint8Array {
  return concat(list.flatMap((o) => [u8(o.tag), u16(o.value.length), o.value]));
}

export function referenceEncode(frame: Frame): Uint8Array {
  const head = (type: number, id: number): Uint8Array => concat([u8(type), u8(0), u32(id)]);
  switch (frame.type) {
    case OPEN: {
      const name = new TextEncoder().encode(frame.route);
      return concat([head(OPEN, frame.streamId), u8(name.length), name, options(frame.options)]);
    }
    case OPEN_OK:
      return concat([head(OPEN_OK, frame.streamId), options(frame.options)]);
    case OPEN_FAIL:
    case RESET:
    case GOAWAY:
      return concat([head(frame.type, frame.streamId), u16(frame.code), new TextEncoder().encode(frame.reason)]);
    case DATA:
      return concat([head(DATA, frame.streamId), frame.data]);
    case WINDOW:
      return concat([head(WINDOW, frame.streamId), u64(frame.consumed), u32(frame.window)]);
    case FIN:
      return head(FIN, frame.streamId);
    case PING:
    case PONG:
      return concat([head(frame.type, 0), frame.opaque]);
  }
}

function readOptions(view: DataView, from: number): FrameOption[] {
  const list: FrameOption[] = [];
  let at = from;
  while (at < view.byteLength) {
    if (view.byteLength - at < 3) refuse('BAD_LENGTH');
    const tag = view.getUint8(at);
    const length = view.getUint16(at + 1, false);
    if (view.byteLength - (at + 3) < length) refuse('BAD_LENGTH');
    list.push({ tag, value: new Uint8Array(view.buffer, view.byteOffset + at + 3, length).slice() });
    at = at + 3 + length;
  }
  return list;
}

export function referenceDecode(message: Uint8Array): Frame {
  if (message.length > MAX_MESSAGE) throw new ReferenceDecodeError('SOCKGATE_ERR_PROTOCOL_TOO_BIG');
  if (message.length < HEADER) refuse('TRUNCATED');
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const type = view.getUint8(0);
  const flags = view.getUint8(1);
  const id = view.getUint32(2, false);
  const payload = message.length - HEADER;
  const rest = (from: number): Uint8Array => message.slice(from);

  if (type < OPEN || type > GOAWAY) refuse('BAD_TYPE');
  if (flags !== 0) refuse('BAD_FLAGS');
  const sessionFrame = type === PING || type === PONG || type === GOAWAY;
  if (sessionFrame && id !== 0) refuse('BAD_STREAM_ID');
  if (!sessionFrame && id === 0) refuse('BAD_STREAM_ID');

  const codeAndReason = (): { code: number; reason: string } => {
    if (payload < 2) refuse('BAD_LENGTH');
    if (payload - 2 > MAX_REASON) refuse('BAD_LENGTH');
    return { code: view.getUint16(HEADER, false), reason: text(rest(HEADER + 2)) };
  };

  switch (type) {
    case OPEN: {
      if (payload > MAX_OPEN) refuse('BAD_LENGTH');
      if (payload < 1) refuse('BAD_LENGTH');
      const nameLength = view.getUint8(HEADER);
      if (nameLength === 0) refuse('BAD_LENGTH');
      if (payload < 1 + nameLength) refuse('BAD_LENGTH');
      const route = text(message.slice(HEADER + 1, HEADER + 1 + nameLength));
      return { type: OPEN, streamId: id, route, options: readOptions(view, HEADER + 1 + nameLength) };
    }
    case OPEN_OK:
      if (payload > MAX_OPEN) refuse('BAD_LENGTH');
      return { type: OPEN_OK, streamId: id, options: readOptions(view, HEADER) };
    case OPEN_FAIL:
      return { type: OPEN_FAIL, streamId: id, ...codeAndReason() };
    case RESET:
      return { type: RESET, streamId: id, ...codeAndReason() };
    case GOAWAY:
      return { type: GOAWAY, streamId: 0, ...codeAndReason() };
    case DATA:
      if (payload < 1 || payload > 65536) refuse('BAD_LENGTH');
      return { type: DATA, streamId: id, data: rest(HEADER) };
    case WINDOW: {
      if (payload !== 12) refuse('BAD_LENGTH');
      const consumed = view.getBigUint64(HEADER, false);
      if (consumed > BigInt(Number.MAX_SAFE_INTEGER)) refuse('BAD_VALUE');
      return { type: WINDOW, streamId: id, consumed: Number(consumed), window: view.getUint32(HEADER + 8, false) };
    }
    case FIN:
      if (payload !== 0) refuse('BAD_LENGTH');
      return { type: FIN, streamId: id };
    case PING:
    case PONG:
      if (payload !== 8) refuse('BAD_LENGTH');
      return { type, streamId: 0, opaque: rest(HEADER) } as Frame;
    default:
      return refuse('BAD_TYPE');
  }
}
