/** fast-check arbitraries for sockgate frames: every frame they make is valid and round-trips exactly. */
import fc from 'fast-check';
import {
  FrameType,
  MAX_DATA_PAYLOAD,
  MAX_OPEN_PAYLOAD,
  MAX_REASON_BYTES,
  MAX_ROUTE_NAME_BYTES,
  MAX_STREAM_ID,
  PING_PAYLOAD_BYTES,
} from '../../shared/constants.js';
import type { Frame, FrameOption } from '../../shared/frame.js';

const utf8Length = (s: string): number => new TextEncoder().encode(s).length;

/** Mostly small ids (so sequences hit the same streams), sometimes anything up to 2^32 - 1. */
export const streamIdArb = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 16 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: MAX_STREAM_ID }) },
  { weight: 1, arbitrary: fc.constantFrom(MAX_STREAM_ID, MAX_STREAM_ID - 1) },
);

const ROUTE_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-'.split('');

/** A route name the session accepts (PROTOCOL 3.2). */
export const validRouteArb = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: fc.constantFrom(...ROUTE_CHARS), minLength: 1, maxLength: 16 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(...ROUTE_CHARS), minLength: 250, maxLength: MAX_ROUTE_NAME_BYTES }) },
);

/** Any route name the codec can carry: any well-formed text of 1..255 UTF-8 bytes (the session judges it). */
export const anyRouteArb = fc.oneof(
  validRouteArb,
  fc.string({ unit: 'binary', minLength: 1, maxLength: 60 }).filter((s) => utf8Length(s) >= 1 && utf8Length(s) <= MAX_ROUTE_NAME_BYTES),
);

/** Reasons: well-formed text of at most 512 UTF-8 bytes, sometimes exactly at the limit. */
export const reasonArb = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 128 }).filter((s) => utf8Length(s) <= MAX_REASON_BYTES) },
  { weight: 1, arbitrary: fc.constantFrom('x'.repeat(MAX_REASON_BYTES), '\uFEFFbom', 'é'.repeat(MAX_REASON_BYTES / 2)) },
);

export const u16Arb = fc.integer({ min: 0, max: 0xffff });

export const optionArb: fc.Arbitrary<FrameOption> = fc.record({
  tag: fc.integer({ min: 0, max: 0xff }),
  value: fc.uint8Array({ maxLength: 40 }),
});

const optionsBytes = (options: readonly FrameOption[]): number => options.reduce((n, o) => n + 3 + o.value.length, 0);

export const dataArb = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 64 }) },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 1, max: MAX_DATA_PAYLOAD })
      .chain((n) => fc.integer({ min: 0, max: 255 }).map((seed) => new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff))),
  },
  { weight: 1, arbitrary: fc.constantFrom(1, MAX_DATA_PAYLOAD).map((n) => new Uint8Array(n).fill(0xa5)) },
);

export function frameArb(opts: { route?: fc.Arbitrary<string>; streamId?: fc.Arbitrary<number> } = {}): fc.Arbitrary<Frame> {
  const id = opts.streamId ?? streamIdArb;
  const route = opts.route ?? anyRouteArb;
  return fc.oneof(
    fc
      .record({ streamId: id, route, options: fc.array(optionArb, { maxLength: 4 }) })
      .filter((f) => 1 + utf8Length(f.route) + optionsBytes(f.options) <= MAX_OPEN_PAYLOAD)
      .map((f) => ({ type: FrameType.OPEN, ...f })),
    fc
      .record({ streamId: id, options: fc.array(optionArb, { maxLength: 4 }) })
      .map((f) => ({ type: FrameType.OPEN_OK, ...f })),
    fc.record({ streamId: id, code: u16Arb, reason: reasonArb }).map((f) => ({ type: FrameType.OPEN_FAIL, ...f })),
    fc.record({ streamId: id, data: dataArb }).map((f) => ({ type: FrameType.DATA, ...f })),
    fc
      .record({
        streamId: id,
        consumed: fc.oneof(fc.nat({ max: 1 << 24 }), fc.maxSafeNat()),
        window: fc.oneof(fc.integer({ min: 0, max: 0xffff_ffff }), fc.constantFrom(262_144, 16_777_216)),
      })
      .map((f) => ({ type: FrameType.WINDOW, ...f })),
    fc.record({ streamId: id }).map((f) => ({ type: FrameType.FIN, ...f })),
    fc.record({ streamId: id, code: u16Arb, reason: reasonArb }).map((f) => ({ type: FrameType.RESET, ...f })),
    fc
      .uint8Array({ minLength: PING_PAYLOAD_BYTES, maxLength: PING_PAYLOAD_BYTES })
      .map((opaque) => ({ type: FrameType.PING, streamId: 0 as const, opaque })),
    fc
      .uint8Array({ minLength: PING_PAYLOAD_BYTES, maxLength: PING_PAYLOAD_BYTES })
      .map((opaque) => ({ type: FrameType.PONG, streamId: 0 as const, opaque })),
    fc.record({ code: u16Arb, reason: reasonArb }).map((f) => ({ type: FrameType.GOAWAY, streamId: 0 as const, ...f })),
  ) as fc.Arbitrary<Frame>;
}

/**
 * `bytes`, whose `buffer` throws when read: for checking that a path never asks a small message for its ArrayBuffer
 * (V8 moves a typed array of 64 bytes or less off its heap to answer).
 */
export function bufferless(bytes: Uint8Array): Uint8Array {
  return Object.defineProperty(bytes, 'buffer', {
    get() {
      throw new Error('asked for the buffer of a small message');
    },
  });
}

/** Hex of bytes, through Node's Buffer: fast where expect().toEqual on a large Uint8Array takes ~200 ms. */
export function hexOf(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** A frame with every byte field as hex, so that toEqual compares it quickly and prints it readably. */
export function comparable(frame: Frame): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(frame)) {
    if (value instanceof Uint8Array) out[key] = hexOf(value);
    else if (key === 'options') out[key] = (value as FrameOption[]).map((o) => ({ tag: o.tag, value: hexOf(o.value) }));
    else out[key] = value;
  }
  return out;
}
