/**
 * Fuzzing the decoder and the session engine with fast-check (PROTOCOL 2, 3 and 7.2). Whatever bytes arrive,
 * decodeFrame returns a frame or throws a SockgateError with a SOCKGATE_ERR_PROTOCOL* code, never anything
 * else; and a live Session never throws from receive(), sends only valid frames within the credit it was given,
 * and ends open or closed with a registry code. Runs are bounded in count; nothing here depends on time.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameType, HEADER_BYTES, INITIAL_WINDOW, MAX_DATA_PAYLOAD, MAX_FRAME_BYTES, MAX_WINDOW } from '../../shared/constants.js';
import { decodeFrame } from '../../shared/decode.js';
import { encodeFrame } from '../../shared/encode.js';
import { ERRORS, SockgateError, isErrorCode } from '../../shared/errors.js';
import type { Frame } from '../../shared/frame.js';
import type { Stream } from '../../shared/session.js';
import { comparable, frameArb, hexOf, validRouteArb } from '../helpers/frames.js';
import { referenceDecode } from '../helpers/reference-codec.js';
import { rawSession } from '../helpers/session-pair.js';

/** SOCKGATE_FUZZ_SCALE=20 npx vitest run test/unit/decode-fuzz.test.ts fuzzes 20 times longer (seeds are random). */
const SCALE = Math.max(1, Number(process.env.SOCKGATE_FUZZ_SCALE ?? 1) || 1);
const RUNS = 3000 * SCALE;

/** decodeFrame's contract: a frame, or a SockgateError whose code is a SOCKGATE_ERR_PROTOCOL* one. */
function decodeOrProtocolError(bytes: Uint8Array): Frame | SockgateError {
  try {
    return decodeFrame(bytes);
  } catch (err) {
    if (!(err instanceof SockgateError)) throw new Error(`decodeFrame threw a non-SockgateError: ${String(err)}`, { cause: err });
    if (!err.code.startsWith('SOCKGATE_ERR_PROTOCOL')) throw new Error(`decodeFrame threw ${err.code}`, { cause: err });
    expect(err.closeCode === 1002 || err.closeCode === 1009).toBe(true);
    return err;
  }
}

const validMessage = frameArb().map((f) => encodeFrame(f));

/** A valid message with one of: bytes flipped, bytes cut or added, a length field changed. */
const mutatedMessage = fc
  .tuple(validMessage, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat({ max: 3 }))
  .map(([m, edits, how]) => {
    const bytes = m.slice();
    if (how === 0 || bytes.length <= 1) {
      for (const [at, v] of edits) bytes[at % bytes.length] = v;
      return bytes;
    }
    if (how === 1) return bytes.subarray(0, edits[0]![0] % bytes.length);
    if (how === 2) {
      const extra = Uint8Array.from(edits.map(([, v]) => v));
      const out = new Uint8Array(bytes.length + extra.length);
      out.set(bytes);
      out.set(extra, bytes.length);
      return out;
    }
    // Change a byte in the header or just after it, where the lengths and codes are.
    for (const [at, v] of edits) bytes[at % Math.min(bytes.length, HEADER_BYTES + 4)] = v;
    return bytes;
  });

describe('decodeFrame never throws anything but a protocol error', () => {
  it('random frames round-trip exactly', () => {
    fc.assert(
      fc.property(frameArb(), (frame) => {
        const bytes = encodeFrame(frame);
        expect(bytes.length).toBeLessThanOrEqual(MAX_FRAME_BYTES);
        const back = decodeFrame(bytes);
        expect(comparable(back)).toEqual(comparable(frame));
        expect(hexOf(encodeFrame(back))).toBe(hexOf(bytes));
      }),
      { numRuns: RUNS },
    );
  });

  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 96 }), (bytes) => {
        decodeOrProtocolError(bytes);
      }),
      { numRuns: RUNS },
    );
  });

  it('random bytes behind a plausible header', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 3 }), fc.uint8Array({ maxLength: 64 }), (type, id, rest) => {
        const bytes = new Uint8Array(HEADER_BYTES + rest.length);
        bytes.set([type, 0, 0, 0, 0, id]);
        bytes.set(rest, HEADER_BYTES);
        decodeOrProtocolError(bytes);
      }),
      { numRuns: RUNS },
    );
  });

  it('truncated valid frames: a frame that still decodes is a prefix-consistent one, otherwise a protocol error', () => {
    fc.assert(
      fc.property(validMessage, fc.nat(), (m, cut) => {
        const short = m.subarray(0, cut % m.length);
        const result = decodeOrProtocolError(short);
        if (short.length < HEADER_BYTES) expect((result as SockgateError).code).toBe('SOCKGATE_ERR_PROTOCOL_TRUNCATED');
        // Types whose payload has a fixed length can never survive a cut.
        const type = m[0]!;
        if ([FrameType.FIN, FrameType.WINDOW, FrameType.PING, FrameType.PONG].includes(type as 6)) expect(result).toBeInstanceOf(SockgateError);
      }),
      { numRuns: RUNS },
    );
  });

  it('mutated valid frames', () => {
    fc.assert(
      fc.property(mutatedMessage, (m) => {
        const result = decodeOrProtocolError(m);
        // Whatever the fast decoder says, the reference decoder says the same.
        const ref = (() => {
          try {
            return comparable(referenceDecode(m));
          } catch (e) {
            return (e as { code: string }).code;
          }
        })();
        expect(result instanceof SockgateError ? result.code : comparable(result)).toEqual(ref);
      }),
      { numRuns: RUNS },
    );
  });

  it('oversized payloads are refused from their length: BAD_LENGTH, or TOO_BIG past MAX_FRAME_BYTES', () => {
    const oversized = fc.oneof(
      fc.tuple(fc.constant(FrameType.DATA), fc.integer({ min: MAX_DATA_PAYLOAD + 1, max: MAX_DATA_PAYLOAD + 4096 })),
      fc.tuple(fc.constantFrom(FrameType.OPEN_FAIL, FrameType.RESET, FrameType.GOAWAY), fc.integer({ min: 2 + 513, max: 70_000 })),
      fc.tuple(fc.constantFrom(FrameType.OPEN, FrameType.OPEN_OK), fc.integer({ min: 1025, max: 70_000 })),
      fc.tuple(fc.constant(FrameType.WINDOW), fc.integer({ min: 13, max: 70_000 })),
      fc.tuple(fc.constantFrom(FrameType.FIN), fc.integer({ min: 1, max: 70_000 })),
      fc.tuple(fc.constantFrom(FrameType.PING, FrameType.PONG), fc.integer({ min: 9, max: 70_000 })),
    );
    fc.assert(
      fc.property(oversized, fc.integer({ min: 0, max: 255 }), ([type, payload], fill) => {
        const m = new Uint8Array(HEADER_BYTES + payload).fill(fill);
        const session = type === FrameType.PING || type === FrameType.PONG || type === FrameType.GOAWAY;
        m.set([type, 0, 0, 0, 0, session ? 0 : 1]);
        const result = decodeOrProtocolError(m);
        expect(result).toBeInstanceOf(SockgateError);
        const expected = m.length > MAX_FRAME_BYTES ? 'SOCKGATE_ERR_PROTOCOL_TOO_BIG' : 'SOCKGATE_ERR_PROTOCOL_BAD_LENGTH';
        expect((result as SockgateError).code).toBe(expected);
      }),
      { numRuns: 500 * SCALE },
    );
  });
});

/**
 * What the fuzzing peer does next. Most actions are frames that make sense for the streams so far (so sequences
 * reach deep states: open streams, credit exhausted, half-closed), some bend a rule, a few are raw garbage.
 */
type Action =
  | { k: 'open'; skip: number; route: string; critical: boolean }
  | { k: 'data'; sel: number; n: number }
  | { k: 'window'; sel: number; percent: number; window: number }
  | { k: 'fin'; sel: number }
  | { k: 'reset'; sel: number; code: number }
  | { k: 'openOk'; sel: number; critical: boolean }
  | { k: 'openFail'; sel: number; code: number }
  | { k: 'ping' }
  | { k: 'pong' }
  | { k: 'goaway'; code: number }
  | { k: 'text' }
  | { k: 'raw'; bytes: Uint8Array };

class AdapterBug extends Error {}

/** True about one time in n. */
const rarely = (n: number): fc.Arbitrary<boolean> => fc.integer({ min: 1, max: n }).map((i) => i === 1);

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ k: fc.constant('open' as const), skip: fc.oneof({ weight: 40, arbitrary: fc.constant(0) }, fc.integer({ min: -2, max: 3 })), route: fc.oneof({ weight: 9, arbitrary: validRouteArb }, fc.constantFrom('a/b', 'é', ' ')), critical: rarely(10) }) },
  { weight: 20, arbitrary: fc.record({ k: fc.constant('data' as const), sel: fc.nat(), n: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 30_000, max: MAX_DATA_PAYLOAD })) }) },
  { weight: 8, arbitrary: fc.record({ k: fc.constant('window' as const), sel: fc.nat(), percent: fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 0, max: 100 }) }, fc.integer({ min: 101, max: 200 })), window: fc.oneof({ weight: 5, arbitrary: fc.integer({ min: INITIAL_WINDOW, max: MAX_WINDOW }) }, fc.integer({ min: 0, max: 0xffff_ffff })) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('fin' as const), sel: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('reset' as const), sel: fc.nat(), code: fc.oneof(fc.integer({ min: 0, max: 16 }), fc.integer({ min: 0, max: 0xffff })) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('openOk' as const), sel: fc.nat(), critical: rarely(5) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('openFail' as const), sel: fc.nat(), code: fc.integer({ min: 0, max: 0xffff }) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'ping' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'pong' as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('goaway' as const), code: fc.integer({ min: 0, max: 16 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('raw' as const), bytes: fc.oneof(mutatedMessage, fc.uint8Array({ maxLength: 24 })) }).chain((a) => rarely(2).map((keep) => (keep ? a : ({ k: 'ping' } as const)))) },
  { weight: 1, arbitrary: rarely(10).map((text) => (text ? { k: 'text' as const } : { k: 'pong' as const })) },
);

describe('a live Session fed random and mutated frames', () => {
  let unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };
  beforeAll(() => {
    process.on('unhandledRejection', onUnhandled);
  });
  afterAll(() => {
    process.off('unhandledRejection', onUnhandled);
  });

  const closeCodes = new Set(Object.values(ERRORS as Record<string, { closeCode?: number }>).flatMap((s) => (s.closeCode === undefined ? [] : [s.closeCode])));

  interface Outcome {
    closed: boolean;
    streams: number;
  }

  function drive(role: 'client' | 'server', actions: Action[], decisions: number[], localOpens: number): Outcome {
    let turn = 0;
    const decide = (): number => decisions[turn++ % decisions.length]!;
    const streams: Stream[] = [];
    const adapt = (stream: Stream): void => {
      streams.push(stream);
      const style = decide() % 4;
      stream.onData = (chunk) => {
        if (style === 0) stream.consume(chunk.length);
        else if (style === 1) {
          stream.write(chunk.slice());
          stream.consume(chunk.length);
        }
        // style 2 and 3: hold the data (a stalled reader)
      };
      stream.onEnd = () => {
        if (style !== 3) stream.end();
      };
      // Now and then an adapter with a bug: the session must close with 1011 and still never throw.
      const bug = decide() % 40;
      if (bug === 0) {
        stream.onClose = () => {
          throw new AdapterBug();
        };
      } else if (bug === 1) {
        stream.onData = () => {
          throw new AdapterBug();
        };
      }
    };
    const raw = rawSession({
      role,
      maxIncomingStreams: 4,
      maxWindowBytes: 2 * INITIAL_WINDOW,
      now: () => turn,
      onStream(stream) {
        adapt(stream);
        const d = decide() % 5;
        if (d === 0) stream.reject(new SockgateError('SOCKGATE_ERR_ROUTE_UNKNOWN'));
        else if (d !== 1) stream.accept(); // d === 1: left pending; a later turn may accept it
      },
      onGoAway() {},
    });
    for (let i = 0; i < localOpens; i++) {
      const s = raw.session.open('local');
      adapt(s);
      s.write(new Uint8Array((decide() % 400) * 1000).fill(7));
      if (decide() % 2 === 0) s.end();
    }
    if (decide() % 3 === 0) raw.session.ping().catch(() => {});

    // The peer's view: ids it opened, ids the session opened, and what the session sent on each.
    const peerParity = role === 'server' ? 1 : 0;
    let lastPeerId = 0;
    const ids: number[] = [];
    const sentOn = (id: number): number =>
      raw.frames().reduce((n, f) => n + (f.type === FrameType.DATA && f.streamId === id ? f.data.length : 0), 0);
    const pick = (sel: number, localOnly = false): number => {
      const local = raw.frames().filter((f) => f.type === FrameType.OPEN).map((f) => f.streamId);
      const known = localOnly && local.length > 0 && sel % 31 !== 0 ? local : [...ids, ...local];
      // Now and then an id nobody opened (PROTOCOL 4.5 says: protocol error).
      if (known.length === 0 || sel % 211 === 0) return 1 + (sel % 20);
      return known[sel % known.length]!;
    };
    /** The largest limit each stream was granted by a WINDOW within the rules: an upper bound on what it may send. */
    const granted = new Map<number, number>();

    for (const original of actions) {
      let a = original;
      // Before any stream exists, a stream frame would only test 4.5 again: open one instead, mostly.
      if ('sel' in a && ids.length === 0 && raw.out.length === 0 && a.sel % 211 !== 0) a = { k: 'open', skip: 0, route: 'r', critical: false };
      // OPEN_OK and OPEN_FAIL answer the session's own OPENs; without any they are 4.5 errors, kept rare.
      if ((a.k === 'openOk' || a.k === 'openFail') && !raw.out.some((o) => o[0] === FrameType.OPEN) && a.sel % 211 !== 0) a = { k: 'ping' };
      let m: Uint8Array | undefined;
      switch (a.k) {
        case 'open': {
          let id = (lastPeerId === 0 ? 2 - peerParity : lastPeerId + 2) + 2 * a.skip;
          if (a.skip < 0 && lastPeerId === 0) id = 2 - peerParity;
          if (id <= 0) id = 2 - peerParity;
          if (id > lastPeerId) lastPeerId = id;
          ids.push(id);
          m = encodeFrame({ type: FrameType.OPEN, streamId: id, route: a.route, options: a.critical ? [{ tag: 0x81, value: new Uint8Array(1) }] : [] });
          break;
        }
        case 'data':
          m = encodeFrame({ type: FrameType.DATA, streamId: pick(a.sel), data: new Uint8Array(a.n).fill(a.n & 0xff) });
          break;
        case 'window': {
          const id = pick(a.sel);
          const consumed = Math.floor((sentOn(id) * a.percent) / 100);
          if (a.window >= INITIAL_WINDOW && a.window <= MAX_WINDOW) granted.set(id, Math.max(granted.get(id) ?? 0, consumed + a.window));
          m = encodeFrame({ type: FrameType.WINDOW, streamId: id, consumed, window: a.window });
          break;
        }
        case 'fin':
          m = encodeFrame({ type: FrameType.FIN, streamId: pick(a.sel) });
          break;
        case 'reset':
          m = encodeFrame({ type: FrameType.RESET, streamId: pick(a.sel), code: a.code, reason: 'fuzz' });
          break;
        case 'openOk':
          m = encodeFrame({ type: FrameType.OPEN_OK, streamId: pick(a.sel, true), options: a.critical ? [{ tag: 0xc0, value: new Uint8Array(0) }] : [] });
          break;
        case 'openFail':
          m = encodeFrame({ type: FrameType.OPEN_FAIL, streamId: pick(a.sel, true), code: a.code, reason: '' });
          break;
        case 'ping':
          m = encodeFrame({ type: FrameType.PING, streamId: 0, opaque: new Uint8Array(8).fill(turn & 0xff) });
          break;
        case 'pong': {
          // Answer the session's own PING when it sent one, else an unsolicited PONG.
          const ping = raw.frames().find((f) => f.type === FrameType.PING);
          m = encodeFrame({ type: FrameType.PONG, streamId: 0, opaque: ping?.type === FrameType.PING ? ping.opaque : new Uint8Array(8) });
          break;
        }
        case 'goaway':
          m = encodeFrame({ type: FrameType.GOAWAY, streamId: 0, code: a.code, reason: 'bye' });
          break;
        case 'raw':
          m = a.bytes;
          break;
        case 'text':
          expect(() => raw.session.receiveText()).not.toThrow();
          break;
      }
      if (m) expect(() => raw.feed(m)).not.toThrow();
      // Between messages the adapter acts too: accept a pending stream, write, reset, end, consume, drain.
      const s = streams[decide() % Math.max(1, streams.length)];
      const act = decide() % 8;
      try {
        if (s && !s.isClosed) {
          if (act === 0) s.accept();
          else if (act === 1) s.write(new Uint8Array(1 + (decide() % 70_000)).fill(1));
          else if (act === 2) s.reset();
          else if (act === 3) s.end();
          else if (act === 4) s.consume(decide() * 100);
        }
        if (act === 5) raw.session.transportDrained();
      } catch (err) {
        // The adapter's own calls may throw its own bug back at it (reset() runs its onClose); nothing else.
        if (!(err instanceof AdapterBug)) throw err;
      }
      if (raw.session.closed) break;
    }

    // Everything the session sent is a valid frame (frames() decodes them all), within the credit it had.
    const sent = raw.frames();
    const dataPerStream = new Map<number, number>();
    for (const f of sent) if (f.type === FrameType.DATA) dataPerStream.set(f.streamId, (dataPerStream.get(f.streamId) ?? 0) + f.data.length);
    for (const [id, n] of dataPerStream) expect(n, `stream ${id}`).toBeLessThanOrEqual(Math.max(INITIAL_WINDOW, granted.get(id) ?? 0));
    // Stream ids it opened have its own parity and increase.
    const opened = sent.filter((f) => f.type === FrameType.OPEN).map((f) => f.streamId);
    for (const [i, id] of opened.entries()) {
      expect(id % 2).toBe(role === 'client' ? 1 : 0);
      if (i > 0) expect(id).toBeGreaterThan(opened[i - 1]!);
    }

    // It ends open, or closed with a registry code, and then it has no streams.
    if (raw.session.closed) {
      expect(raw.closedWith).toBeDefined();
      expect(closeCodes.has(raw.closedWith!.code), `close code ${raw.closedWith!.code}`).toBe(true);
      if (raw.closeError !== undefined && raw.closeError !== 'open') {
        expect(raw.closeError).toBeInstanceOf(SockgateError);
        expect(isErrorCode((raw.closeError as SockgateError).code)).toBe(true);
        expect((raw.closeError as SockgateError).closeCode).toBe(raw.closedWith!.code);
      }
      expect(raw.session.streamCount).toBe(0);
      for (const s of streams) expect(s.isClosed).toBe(true);
    } else {
      expect(raw.closedWith).toBeUndefined();
      expect(raw.closeError).toBe('open');
    }
    return { closed: raw.session.closed, streams: streams.length };
  }

  const decisionsArb = fc.array(fc.nat({ max: 1000 }), { minLength: 1, maxLength: 64 });

  it('server role: never throws from receive(), ends open or closed with a registry code', async () => {
    unhandled = [];
    let open = 0;
    let streams = 0;
    fc.assert(
      fc.property(fc.array(actionArb, { maxLength: 60 }), decisionsArb, (actions, decisions) => {
        const o = drive('server', actions, decisions, decisions[0]! % 3);
        if (!o.closed) open++;
        streams += o.streams;
      }),
      { numRuns: 1000 * SCALE },
    );
    await new Promise((r) => setImmediate(r));
    expect(unhandled).toEqual([]);
    // The generator must reach deep states, not just close on the first bad frame.
    expect(open).toBeGreaterThan(100);
    expect(streams).toBeGreaterThan(1000);
    expect(unhandled).toEqual([]);
  });

  it('client role with streams it opened: the same', async () => {
    unhandled = [];
    fc.assert(
      fc.property(fc.array(actionArb, { maxLength: 60 }), decisionsArb, fc.integer({ min: 0, max: 4 }), (actions, decisions, opens) => {
        drive('client', actions, decisions, opens);
      }),
      { numRuns: 1000 * SCALE },
    );
    await new Promise((r) => setImmediate(r));
    expect(unhandled).toEqual([]);
  });

  it('arbitrary messages (mostly garbage): the same', () => {
    const message = fc.oneof(
      frameArb({ streamId: fc.integer({ min: 1, max: 9 }) }).map((f) => ({ k: 'raw' as const, bytes: encodeFrame(f) })),
      mutatedMessage.map((bytes) => ({ k: 'raw' as const, bytes })),
      fc.uint8Array({ maxLength: 24 }).map((bytes) => ({ k: 'raw' as const, bytes })),
    );
    fc.assert(
      fc.property(fc.array(message, { maxLength: 20 }), decisionsArb, (actions, decisions) => {
        drive('server', actions, decisions, 0);
      }),
      { numRuns: 500 * SCALE },
    );
  });
});
