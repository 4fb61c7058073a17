/**
 * shared/encode.ts and shared/decode.ts: round trips for every frame type at the boundaries of PROTOCOL 3, the
 * encoder's RangeErrors for what the wire cannot carry, and the fast codec checked against the deliberately
 * simple DataView codec in test/helpers/reference-codec.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  FrameType,
  HEADER_BYTES,
  INITIAL_WINDOW,
  MAX_DATA_PAYLOAD,
  MAX_FRAME_BYTES,
  MAX_OPEN_PAYLOAD,
  MAX_REASON_BYTES,
  MAX_ROUTE_NAME_BYTES,
  MAX_STREAM_ID,
} from '../../shared/constants.js';
import { decodeFrame, decodeHeader } from '../../shared/decode.js';
import {
  encodeData,
  encodeDataHeader,
  encodeFin,
  encodeFrame,
  encodeGoAway,
  encodeOpen,
  encodeOpenFail,
  encodeOpenOk,
  encodePing,
  encodePong,
  encodeReset,
  encodeWindow,
} from '../../shared/encode.js';
import { SockgateError } from '../../shared/errors.js';
import type { Frame } from '../../shared/frame.js';
import { truncateUtf8, utf8Decode } from '../../shared/utf8.js';
import { comparable, frameArb, hexOf } from '../helpers/frames.js';
import { ReferenceDecodeError, referenceDecode, referenceEncode } from '../helpers/reference-codec.js';

function roundTrip(frame: Frame): Uint8Array {
  const bytes = encodeFrame(frame);
  expect(comparable(decodeFrame(bytes))).toEqual(comparable(frame));
  expect(hexOf(encodeFrame(decodeFrame(bytes)))).toBe(hexOf(bytes));
  return bytes;
}

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (err instanceof SockgateError || err instanceof ReferenceDecodeError) return err.code;
    throw err;
  }
  return 'no error';
}

const bytes = (n: number, fill = 0x61): Uint8Array => new Uint8Array(n).fill(fill);

describe('round trips of every frame type', () => {
  it('OPEN: shortest and longest route names, options, and a payload of exactly MAX_OPEN_PAYLOAD', () => {
    roundTrip({ type: FrameType.OPEN, streamId: 1, route: 'a', options: [] });
    const longest = 'r'.repeat(MAX_ROUTE_NAME_BYTES);
    const m = roundTrip({ type: FrameType.OPEN, streamId: 3, route: longest, options: [] });
    expect(m.length).toBe(HEADER_BYTES + 1 + 255);
    // 1 + 255 + options = 1024: 3 + 765 bytes of one option fills it exactly.
    const full = roundTrip({ type: FrameType.OPEN, streamId: 5, route: longest, options: [{ tag: 0x01, value: bytes(765) }] });
    expect(full.length - HEADER_BYTES).toBe(MAX_OPEN_PAYLOAD);
    roundTrip({
      type: FrameType.OPEN,
      streamId: MAX_STREAM_ID,
      route: 'ssh',
      options: [
        { tag: 0x00, value: new Uint8Array() },
        { tag: 0xff, value: Uint8Array.of(1, 2, 3) },
      ],
    });
  });

  it('OPEN_OK with and without options', () => {
    expect(roundTrip({ type: FrameType.OPEN_OK, streamId: 2, options: [] })).toHaveLength(HEADER_BYTES);
    const full = roundTrip({ type: FrameType.OPEN_OK, streamId: 2, options: [{ tag: 0x7f, value: bytes(MAX_OPEN_PAYLOAD - 3) }] });
    expect(full.length - HEADER_BYTES).toBe(MAX_OPEN_PAYLOAD);
  });

  it('OPEN_FAIL, RESET and GOAWAY: empty reason, a reason of exactly 512 bytes, any u16 code', () => {
    for (const code of [0, 1, 0x7fff, 0xffff]) {
      roundTrip({ type: FrameType.OPEN_FAIL, streamId: 7, code, reason: '' });
      roundTrip({ type: FrameType.RESET, streamId: 7, code, reason: 'x'.repeat(MAX_REASON_BYTES) });
      roundTrip({ type: FrameType.GOAWAY, streamId: 0, code, reason: '€'.repeat(170) + 'ab' });
    }
  });

  it('DATA of 1 and of 65,536 bytes', () => {
    expect(roundTrip({ type: FrameType.DATA, streamId: 1, data: Uint8Array.of(0) })).toHaveLength(HEADER_BYTES + 1);
    const big = roundTrip({ type: FrameType.DATA, streamId: 1, data: bytes(MAX_DATA_PAYLOAD, 0xfe) });
    expect(big).toHaveLength(MAX_FRAME_BYTES);
  });

  it('WINDOW: consumed up to 2^53 - 1 and window up to 2^32 - 1', () => {
    for (const consumed of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER]) {
      roundTrip({ type: FrameType.WINDOW, streamId: 9, consumed, window: 0xffff_ffff });
    }
    roundTrip({ type: FrameType.WINDOW, streamId: 9, consumed: 5, window: 0 });
  });

  it('FIN, PING and PONG', () => {
    expect(roundTrip({ type: FrameType.FIN, streamId: 4 })).toHaveLength(HEADER_BYTES);
    roundTrip({ type: FrameType.PING, streamId: 0, opaque: Uint8Array.of(8, 7, 6, 5, 4, 3, 2, 1) });
    roundTrip({ type: FrameType.PONG, streamId: 0, opaque: new Uint8Array(8) });
  });

  it('the specific encoders produce what encodeFrame does', () => {
    expect(encodeOpen(1, 'echo')).toEqual(encodeFrame({ type: FrameType.OPEN, streamId: 1, route: 'echo', options: [] }));
    expect(encodeOpenOk(1)).toEqual(encodeFrame({ type: FrameType.OPEN_OK, streamId: 1, options: [] }));
    expect(encodeOpenFail(1, 2)).toEqual(encodeFrame({ type: FrameType.OPEN_FAIL, streamId: 1, code: 2, reason: '' }));
    expect(encodeReset(1, 2)).toEqual(encodeFrame({ type: FrameType.RESET, streamId: 1, code: 2, reason: '' }));
    expect(encodeGoAway(8)).toEqual(encodeFrame({ type: FrameType.GOAWAY, streamId: 0, code: 8, reason: '' }));
    expect(encodeFin(3)).toEqual(encodeFrame({ type: FrameType.FIN, streamId: 3 }));
    expect(encodePing(bytes(8))).toEqual(encodeFrame({ type: FrameType.PING, streamId: 0, opaque: bytes(8) }));
    expect(encodePong(bytes(8))).toEqual(encodeFrame({ type: FrameType.PONG, streamId: 0, opaque: bytes(8) }));
    expect(encodeWindow(3, 10, 20)).toEqual(encodeFrame({ type: FrameType.WINDOW, streamId: 3, consumed: 10, window: 20 }));
  });

  it('encodeDataHeader is the first 6 bytes of the DATA frame', () => {
    const data = Uint8Array.of(1, 2, 3);
    expect(encodeDataHeader(0x01020304)).toEqual(encodeData(0x01020304, data).subarray(0, HEADER_BYTES));
  });

  it('encodeData into recycled memory writes every header byte (stale bytes never leak into flags)', () => {
    const data = Uint8Array.of(9, 8, 7);
    const into = new Uint8Array(64).fill(0xff); // whatever a recycled buffer held before
    const frame = encodeData(5, data, into);
    expect(frame).toEqual(encodeData(5, data));
    expect(frame.buffer).toBe(into.buffer);
    expect(() => encodeData(5, data, new Uint8Array(HEADER_BYTES + 2))).toThrow(RangeError);
  });

  it('decoded payloads are views into the message, not copies', () => {
    const m = encodeData(1, Uint8Array.of(1, 2, 3));
    const f = decodeFrame(m) as { data: Uint8Array };
    expect(f.data.buffer).toBe(m.buffer);
  });

  it('decodes a message that is a view into a larger buffer', () => {
    const inner = encodeWindow(5, 2 ** 40, 1234);
    const outer = new Uint8Array(inner.length + 10).fill(0xee);
    outer.set(inner, 7);
    expect(decodeFrame(outer.subarray(7, 7 + inner.length))).toEqual({ type: FrameType.WINDOW, streamId: 5, consumed: 2 ** 40, window: 1234 });
  });
});

describe('reasons (PROTOCOL 3.3)', () => {
  it('a reason over 512 bytes is cut on a character boundary when encoding', () => {
    const m = encodeReset(1, 0, 'é'.repeat(300)); // 600 bytes; 'é' is 2 bytes
    const f = decodeFrame(m) as { reason: string };
    expect(m.length - HEADER_BYTES - 2).toBe(MAX_REASON_BYTES);
    expect(f.reason).toBe('é'.repeat(256));
    const emoji = decodeFrame(encodeGoAway(0, 'a' + '😀'.repeat(200))) as { reason: string };
    expect(emoji.reason).toBe('a' + '😀'.repeat(127)); // 1 + 4*127 = 509; a 128th would need 513
  });

  it('truncateUtf8 never splits a character', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 64 }), fc.nat({ max: 80 }), (text, max) => {
        const cut = truncateUtf8(text, max);
        expect(cut.length).toBeLessThanOrEqual(max);
        const back = utf8Decode(cut);
        expect(text.startsWith(back)).toBe(true);
        expect(back).not.toContain('\uFFFD');
      }),
      { numRuns: 500 },
    );
  });

  it('invalid UTF-8 in a reason is replaced, not an error', () => {
    const m = Uint8Array.of(0x07, 0, 0, 0, 0, 1, 0, 0, 0xff, 0x41, 0xc3);
    expect(decodeFrame(m)).toEqual({ type: FrameType.RESET, streamId: 1, code: 0, reason: '\uFFFDA\uFFFD' });
  });

  it('regression: a reason starting with U+FEFF keeps it (the decoder used to strip it as a BOM)', () => {
    expect((decodeFrame(encodeReset(1, 0, '\uFEFFhi')) as { reason: string }).reason).toBe('\uFEFFhi');
    expect((decodeFrame(encodeOpen(1, '\uFEFFr')) as { route: string }).route).toBe('\uFEFFr');
  });
});

describe('the encoder refuses what the wire cannot carry (RangeError)', () => {
  const cases: [string, () => unknown][] = [
    ['empty route name', () => encodeOpen(1, '')],
    ['route name of 256 bytes', () => encodeOpen(1, 'r'.repeat(256))],
    ['route name of 128 two-byte characters', () => encodeOpen(1, 'é'.repeat(128))],
    ['OPEN payload of 1,025 bytes', () => encodeOpen(1, 'r'.repeat(255), [{ tag: 1, value: bytes(766) }])],
    ['option tag 256', () => encodeOpen(1, 'r', [{ tag: 256, value: bytes(1) }])],
    ['option tag -1', () => encodeOpen(1, 'r', [{ tag: -1, value: bytes(1) }])],
    ['option value of 65,536 bytes', () => encodeOpen(1, 'r', [{ tag: 1, value: bytes(65_536) }])],
    ['OPEN_OK payload of 1,025 bytes', () => encodeOpenOk(1, [{ tag: 1, value: bytes(MAX_OPEN_PAYLOAD - 2) }])],
    ['OPEN_OK option tag 0x100', () => encodeOpenOk(1, [{ tag: 0x100, value: bytes(1) }])],
    ['empty DATA', () => encodeData(1, new Uint8Array())],
    ['DATA of 65,537 bytes', () => encodeData(1, bytes(MAX_DATA_PAYLOAD + 1))],
    ['PING of 7 bytes', () => encodePing(bytes(7))],
    ['PONG of 9 bytes', () => encodePong(bytes(9))],
    ['code 0x10000', () => encodeReset(1, 0x10000)],
    ['code -1', () => encodeOpenFail(1, -1)],
    ['code 1.5', () => encodeGoAway(1.5)],
    ['WINDOW consumed above 2^53 - 1', () => encodeWindow(1, 2 ** 53, INITIAL_WINDOW)],
    ['WINDOW consumed -1', () => encodeWindow(1, -1, INITIAL_WINDOW)],
    ['WINDOW consumed 0.5', () => encodeWindow(1, 0.5, INITIAL_WINDOW)],
    ['WINDOW window 2^32', () => encodeWindow(1, 0, 2 ** 32)],
    ['stream id 2^32', () => encodeData(2 ** 32, bytes(1))],
    ['stream id -1', () => encodeFin(-1)],
    ['stream id 1.5', () => encodeFin(1.5)],
    ['stream id NaN', () => encodeFin(NaN)],
    ['stream id 0 on a stream frame (2.3)', () => encodeData(0, bytes(1))],
    ['stream id 0 on OPEN', () => encodeOpen(0, 'r')],
  ];
  for (const [name, f] of cases) it(name, () => expect(f).toThrow(RangeError));
});
describe('the decoder refuses, with the code of the rule broken', () => {
  it('a message over MAX_FRAME_BYTES is TOO_BIG (1009, PROTOCOL 1.4), whatever its type', () => {
    for (const type of [FrameType.DATA, FrameType.RESET, FrameType.OPEN, 0xee]) {
      const m = new Uint8Array(MAX_FRAME_BYTES + 1);
      m[0] = type;
      m[5] = 1;
      const err = (() => {
        try {
          decodeFrame(m);
        } catch (e) {
          return e as SockgateError;
        }
      })();
      expect(err?.code).toBe('SOCKGATE_ERR_PROTOCOL_TOO_BIG');
      expect(err?.closeCode).toBe(1009);
    }
  });

  it('every length shorter than the header is TRUNCATED', () => {
    for (let n = 0; n < HEADER_BYTES; n++) expect(codeOf(() => decodeFrame(Uint8Array.of(4, 0, 0, 0, 0, 1).subarray(0, n)))).toBe('SOCKGATE_ERR_PROTOCOL_TRUNCATED');
  });

  it('every type outside 0x01..0x0A is BAD_TYPE, and every non-zero flags byte is BAD_FLAGS', () => {
    for (let t = 0; t < 256; t++) {
      if (t >= 1 && t <= 10) continue;
      expect(codeOf(() => decodeFrame(Uint8Array.of(t, 0, 0, 0, 0, 1, 1)))).toBe('SOCKGATE_ERR_PROTOCOL_BAD_TYPE');
    }
    for (let f = 1; f < 256; f++) expect(codeOf(() => decodeFrame(Uint8Array.of(4, f, 0, 0, 0, 1, 1)))).toBe('SOCKGATE_ERR_PROTOCOL_BAD_FLAGS');
  });

  it('a reason of 513 bytes, an OPEN of 1,025 bytes and an OPEN_OK of 1,025 bytes are BAD_LENGTH', () => {
    const reset = new Uint8Array(HEADER_BYTES + 2 + 513).fill(0x61);
    reset.set([7, 0, 0, 0, 0, 1], 0);
    expect(codeOf(() => decodeFrame(reset))).toBe('SOCKGATE_ERR_PROTOCOL_BAD_LENGTH');
    const open = encodeOpen(1, 'r'.repeat(255), [{ tag: 1, value: bytes(765) }]);
    const tooLongOpen = new Uint8Array(open.length + 1);
    tooLongOpen.set(open);
    expect(codeOf(() => decodeFrame(tooLongOpen))).toBe('SOCKGATE_ERR_PROTOCOL_BAD_LENGTH');
    const ok = new Uint8Array(HEADER_BYTES + 1025);
    ok.set([2, 0, 0, 0, 0, 1]);
    expect(codeOf(() => decodeFrame(ok))).toBe('SOCKGATE_ERR_PROTOCOL_BAD_LENGTH');
  });

  it('decodeHeader reports type, stream id and payload length', () => {
    expect(decodeHeader(encodeData(0xdeadbeef, bytes(10)))).toEqual({ type: FrameType.DATA, streamId: 0xdeadbeef, payloadBytes: 10 });
  });
});

describe('the fast codec against the reference codec', () => {
  it('both encode generated frames to the same bytes, and both decode them back', () => {
    fc.assert(
      fc.property(frameArb(), (frame) => {
        const fast = encodeFrame(frame);
        expect(hexOf(fast)).toBe(hexOf(referenceEncode(frame)));
        expect(comparable(decodeFrame(fast))).toEqual(comparable(frame));
        expect(comparable(referenceDecode(fast))).toEqual(comparable(frame));
      }),
      { numRuns: 2000 },
    );
  });

  it('both agree on arbitrary bytes: the same frame or the same error code', () => {
    const headerish = fc
      .tuple(
        fc.oneof(fc.integer({ min: 0, max: 11 }), fc.integer({ min: 0, max: 255 })),
        fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: MAX_STREAM_ID })),
        fc.uint8Array({ maxLength: 40 }),
      )
      .map(([type, flags, id, rest]) => {
        const m = new Uint8Array(6 + rest.length);
        m[0] = type;
        m[1] = flags;
        new DataView(m.buffer).setUint32(2, id);
        m.set(rest, 6);
        return m;
      });
    fc.assert(
      fc.property(fc.oneof(headerish, fc.uint8Array({ maxLength: 64 })), (m) => {
        const fast = (() => {
          try {
            return comparable(decodeFrame(m));
          } catch (e) {
            return (e as SockgateError).code;
          }
        })();
        const ref = (() => {
          try {
            return comparable(referenceDecode(m));
          } catch (e) {
            return (e as ReferenceDecodeError).code;
          }
        })();
        expect(fast).toEqual(ref);
      }),
      { numRuns: 3000 },
    );
  });
});
