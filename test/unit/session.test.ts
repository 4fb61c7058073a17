/**
 * shared/session.ts: the session engine against PROTOCOL 4 to 6. `rawSession` feeds one engine hand-made frames
 * and reads what it sends; `sessionPair` joins two engines in memory for end-to-end behaviour.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameType, INITIAL_WINDOW, MAX_DATA_PAYLOAD, MAX_FRAME_BYTES, MAX_STREAM_ID } from '../../shared/constants.js';
import {
  encodeData,
  encodeFin,
  encodeGoAway,
  encodeOpen,
  encodeOpenFail,
  encodeOpenOk,
  encodePing,
  encodePong,
  encodeReset,
  encodeWindow,
} from '../../shared/encode.js';
import { ERRORS, SockgateError, type ErrorCode } from '../../shared/errors.js';
import type { Frame } from '../../shared/frame.js';
import { encodeFrame } from '../../shared/encode.js';
import { Session, type Stream, type Transport } from '../../shared/session.js';
import { frameArb, hexOf } from '../helpers/frames.js';
import { rawSession, sessionPair, type RawSession } from '../helpers/session-pair.js';

const wire = (code: ErrorCode): number => (ERRORS[code] as { wireCode: number }).wireCode;
const bytes = (n: number, fill = 0x61): Uint8Array => new Uint8Array(n).fill(fill);
const codeOf = (err: unknown): string | undefined => (err instanceof SockgateError ? err.code : undefined);

function thrown(f: () => unknown): SockgateError {
  try {
    f();
  } catch (err) {
    if (err instanceof SockgateError) return err;
    throw err;
  }
  throw new Error('did not throw');
}

/** A server-side raw session that accepts every stream and remembers them by id. */
function acceptingServer(opts: Parameters<typeof rawSession>[0] = {}): RawSession & { streams: Map<number, Stream> } {
  const streams = new Map<number, Stream>();
  const raw = rawSession({
    onStream(stream) {
      streams.set(stream.id, stream);
      stream.accept();
    },
    ...opts,
  });
  return Object.assign(raw, { streams });
}

function types(frames: Frame[]): number[] {
  return frames.map((f) => f.type);
}

function dataBytes(frames: Frame[], streamId?: number): number {
  return frames.reduce((n, f) => n + (f.type === FrameType.DATA && (streamId === undefined || f.streamId === streamId) ? f.data.length : 0), 0);
}

/** Byte equality that reports the first difference (toEqual on large typed arrays is slow). */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  const at = actual.findIndex((b, i) => b !== expected[i]);
  expect(at, `first difference at byte ${at}`).toBe(-1);
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

describe('stream ids (PROTOCOL 4.1)', () => {
  it('the client opens odd ids and the server even ids, each strictly increasing', () => {
    const pair = sessionPair({}, { onStream: (s) => s.accept() });
    expect([1, 2, 3].map(() => pair.client.open('r').id)).toEqual([1, 3, 5]);
    expect([1, 2, 3].map(() => pair.server.open('r').id)).toEqual([2, 4, 6]);
  });

  it('an OPEN with the wrong parity is a protocol error (1002)', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(2, 'r'));
    expect(raw.closedWith?.code).toBe(1002);
    expect(codeOf(raw.closeError)).toBe('SOCKGATE_ERR_PROTOCOL_BAD_STREAM_ID');
  });

  it('an OPEN whose id is not greater than every id the peer opened before is a protocol error', () => {
    for (const ids of [
      [5, 3],
      [3, 3],
      [1, 1],
    ]) {
      const raw = acceptingServer();
      raw.feed(encodeOpen(ids[0]!, 'r'));
      expect(raw.closedWith).toBeUndefined();
      raw.feed(encodeOpen(ids[1]!, 'r'));
      expect(raw.closedWith?.code, ids.join(',')).toBe(1002);
    }
  });

  it('ids may skip (1 then 7), and an id refused with OPEN_FAIL still counts as used', () => {
    const raw = acceptingServer({ maxIncomingStreams: 0 });
    raw.feed(encodeOpen(1, 'r'));
    raw.feed(encodeOpen(7, 'r'));
    expect(types(raw.take())).toEqual([FrameType.OPEN_FAIL, FrameType.OPEN_FAIL]);
    raw.feed(encodeOpen(5, 'r'));
    expect(raw.closedWith?.code).toBe(1002);
  });

  it('after the last id a side cannot open more streams (SOCKGATE_ERR_SESSION_IDS_EXHAUSTED)', () => {
    const client = rawSession({ role: 'client' });
    // Reaching 2^32 ids takes too long; start near the end instead.
    (client.session as unknown as { nextLocalId: number }).nextLocalId = MAX_STREAM_ID - 2;
    expect(client.session.open('r').id).toBe(MAX_STREAM_ID - 2);
    expect(client.session.open('r').id).toBe(MAX_STREAM_ID);
    expect(thrown(() => client.session.open('r')).code).toBe('SOCKGATE_ERR_SESSION_IDS_EXHAUSTED');
    const server = rawSession({ role: 'server' });
    (server.session as unknown as { nextLocalId: number }).nextLocalId = MAX_STREAM_ID - 1;
    expect(server.session.open('r').id).toBe(MAX_STREAM_ID - 1);
    expect(thrown(() => server.session.open('r')).code).toBe('SOCKGATE_ERR_SESSION_IDS_EXHAUSTED');
  });

  it('accepts the largest id from the peer', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(MAX_STREAM_ID, 'r'));
    expect(types(raw.take())).toEqual([FrameType.OPEN_OK]);
  });
});

describe('frames for closed and never-opened streams (PROTOCOL 4.5)', () => {
  it('frames for a stream that was open and is closed now are ignored', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r'));
    raw.feed(encodeOpen(3, 'r'));
    raw.streams.get(1)!.reset();
    raw.take();
    for (const m of [encodeData(1, bytes(10)), encodeWindow(1, 0, INITIAL_WINDOW), encodeFin(1), encodeReset(1, 0)]) raw.feed(m);
    expect(raw.closedWith).toBeUndefined();
    expect(raw.take()).toEqual([]);
    expect(raw.session.streamCount).toBe(1);
  });

  it('reports every peer RESET to onPeerReset, for open and already closed streams alike (rate limits charge it)', () => {
    let resets = 0;
    const raw = rawSession({ onStream: (s) => s.accept(), onPeerReset: () => resets++ });
    raw.feed(encodeOpen(1, 'r'));
    raw.feed(encodeReset(1, 0));
    raw.feed(encodeReset(1, 0)); // the stream is gone: ignored, but still counted
    expect(resets).toBe(2);
    expect(raw.closedWith).toBeUndefined();
  });

  it('frames for our own closed stream (the peer answered late) are ignored', () => {
    const client = rawSession({ role: 'client' });
    const s = client.session.open('r');
    s.reset();
    client.take();
    for (const m of [encodeOpenOk(1), encodeOpenFail(1, 1), encodeData(1, bytes(1)), encodeFin(1), encodeWindow(1, 0, INITIAL_WINDOW)]) client.feed(m);
    expect(client.closedWith).toBeUndefined();
    expect(client.take()).toEqual([]);
  });

  it('a frame for a stream the peer never opened is a protocol error (1002)', () => {
    for (const m of [encodeData(3, bytes(1)), encodeFin(3), encodeWindow(3, 0, INITIAL_WINDOW), encodeReset(3, 0)]) {
      const raw = acceptingServer();
      raw.feed(encodeOpen(1, 'r'));
      raw.feed(m);
      expect(raw.closedWith?.code).toBe(1002);
      expect(codeOf(raw.closeError)).toBe('SOCKGATE_ERR_PROTOCOL_BAD_STREAM_ID');
    }
  });

  it('a frame for a stream we never opened is a protocol error', () => {
    for (const m of [encodeOpenOk(2), encodeOpenFail(2, 0), encodeData(2, bytes(1)), encodeReset(4, 0)]) {
      const raw = acceptingServer();
      raw.feed(m);
      expect(raw.closedWith?.code).toBe(1002);
    }
  });
});

describe('opening (PROTOCOL 4.2)', () => {
  it('OPEN_OK opens the stream: onOpen fires and the state is open', () => {
    const client = rawSession({ role: 'client' });
    const s = client.session.open('echo');
    expect(client.take()).toEqual([{ type: FrameType.OPEN, streamId: 1, route: 'echo', options: [] }]);
    let opened = 0;
    s.onOpen = () => opened++;
    expect(s.state).toBe('opening');
    client.feed(encodeOpenOk(1));
    expect(opened).toBe(1);
    expect(s.state).toBe('open');
  });

  it('OPEN_FAIL closes the stream with the code and reason it carries', () => {
    const client = rawSession({ role: 'client' });
    const s = client.session.open('nope');
    let closed: SockgateError | undefined;
    s.onClose = (e) => (closed = e);
    client.feed(encodeOpenFail(1, wire('SOCKGATE_ERR_ROUTE_UNKNOWN'), 'no route named nope'));
    expect(closed?.code).toBe('SOCKGATE_ERR_ROUTE_UNKNOWN');
    expect(closed?.message).toContain('no route named nope');
    expect(s.isClosed).toBe(true);
    expect(client.session.streamCount).toBe(0);
    expect(client.closedWith).toBeUndefined();
  });

  it('an unknown wire code reads as SOCKGATE_ERR_STREAM_UNKNOWN', () => {
    const client = rawSession({ role: 'client' });
    const s = client.session.open('r');
    client.feed(encodeOpenFail(1, 0x4242, 'from the future'));
    expect(s.error?.code).toBe('SOCKGATE_ERR_STREAM_UNKNOWN');
  });

  it('a second OPEN_OK, or OPEN_FAIL after OPEN_OK, is a protocol error', () => {
    for (const second of [encodeOpenOk(1), encodeOpenFail(1, 1)]) {
      const client = rawSession({ role: 'client' });
      client.session.open('r');
      client.feed(encodeOpenOk(1));
      client.feed(second);
      expect(client.closedWith?.code).toBe(1002);
    }
  });

  it('OPEN_OK or OPEN_FAIL for a stream the peer opened is a protocol error', () => {
    for (const m of [encodeOpenOk(1), encodeOpenFail(1, 0)]) {
      const raw = acceptingServer();
      raw.feed(encodeOpen(1, 'r'));
      raw.feed(m);
      expect(raw.closedWith?.code).toBe(1002);
    }
  });

  it('the opener sends DATA before OPEN_OK, but no more than the initial window', () => {
    const client = rawSession({ role: 'client' });
    const s = client.session.open('r');
    let drained = 0;
    s.onDrain = () => drained++;
    expect(s.write(bytes(INITIAL_WINDOW + 1000))).toBe(false);
    const out = client.take();
    expect(out[0]?.type).toBe(FrameType.OPEN);
    expect(dataBytes(out)).toBe(INITIAL_WINDOW);
    expect(out.every((f) => f.type !== FrameType.DATA || f.data.length <= MAX_DATA_PAYLOAD)).toBe(true);
    expect(s.bufferedAmount).toBe(1000);
    client.feed(encodeOpenOk(1));
    expect(client.take()).toEqual([]);
    client.feed(encodeWindow(1, INITIAL_WINDOW, INITIAL_WINDOW));
    expect(dataBytes(client.take())).toBe(1000);
    expect(drained).toBe(1);
  });

  it('the opener may send FIN before OPEN_OK', () => {
    const client = rawSession({ role: 'client' });
    const s = client.session.open('r');
    s.write(bytes(3));
    s.end();
    expect(types(client.take())).toEqual([FrameType.OPEN, FrameType.DATA, FrameType.FIN]);
    client.feed(encodeOpenOk(1));
    client.feed(encodeFin(1));
    expect(s.isClosed).toBe(true);
    expect(s.error).toBeUndefined();
  });

  it('the acceptor holds early DATA within the window and sends nothing before accept()', async () => {
    let pending: Stream | undefined;
    const got: Uint8Array[] = [];
    const pair = sessionPair({}, {
      onStream(stream) {
        pending = stream;
        stream.onData = (c) => got.push(c.slice());
        stream.write(bytes(10, 0x62)); // queued until accept()
      },
    });
    const s = pair.client.open('r');
    const payload = new Uint8Array(INITIAL_WINDOW + 5000).map((_, i) => i % 253);
    s.write(payload);
    s.end();
    await pair.settle();
    expect(types(pair.frames('server'))).toEqual([]);
    expect(got.reduce((n, c) => n + c.length, 0)).toBe(INITIAL_WINDOW);
    const reply: Uint8Array[] = [];
    s.onData = (c) => reply.push(c.slice());
    pending!.accept();
    pending!.consume(INITIAL_WINDOW);
    pending!.onEnd = () => pending!.end();
    await pair.settle();
    expectSameBytes(concat(got), payload);
    expect(pair.frames('server')[0]).toEqual({ type: FrameType.OPEN_OK, streamId: 1, options: [] });
    expectSameBytes(concat(reply), bytes(10, 0x62));
    expect(s.isClosed && pending!.isClosed).toBe(true);
  });

  it('refuses an OPEN with a bad route name with BAD_OPEN (3.2)', () => {
    for (const route of ['a/b', 'é', 'with space', '..%2f', 'a\u0000b']) {
      const raw = acceptingServer();
      raw.feed(encodeOpen(1, route));
      expect(raw.take(), route).toEqual([{ type: FrameType.OPEN_FAIL, streamId: 1, code: wire('SOCKGATE_ERR_STREAM_BAD_OPEN'), reason: expect.any(String) }]);
      expect(raw.streams.size).toBe(0);
    }
    const ok = acceptingServer();
    ok.feed(encodeOpen(1, 'Az09._-'));
    expect(types(ok.take())).toEqual([FrameType.OPEN_OK]);
  });

  it('refuses an unknown critical option with BAD_OPEN and skips an unknown non-critical one (3.1)', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r', [{ tag: 0x80, value: bytes(2) }]));
    raw.feed(encodeOpen(3, 'r', [{ tag: 0x7f, value: bytes(2) }, { tag: 0xff, value: bytes(0) }]));
    raw.feed(encodeOpen(5, 'r', [{ tag: 0x01, value: bytes(2) }, { tag: 0x7f, value: bytes(0) }]));
    const out = raw.take();
    expect(out.map((f) => [f.type, f.streamId, 'code' in f ? f.code : undefined])).toEqual([
      [FrameType.OPEN_FAIL, 1, wire('SOCKGATE_ERR_STREAM_BAD_OPEN')],
      [FrameType.OPEN_FAIL, 3, wire('SOCKGATE_ERR_STREAM_BAD_OPEN')],
      [FrameType.OPEN_OK, 5, undefined],
    ]);
  });

  it('an OPEN_OK with an unknown critical option resets the stream with BAD_OPEN (3.1)', () => {
    const client = rawSession({ role: 'client' });
    const s = client.session.open('r');
    let opened = false;
    s.onOpen = () => (opened = true);
    client.take();
    client.feed(encodeOpenOk(1, [{ tag: 0x90, value: bytes(1) }]));
    expect(opened).toBe(false);
    expect(s.error?.code).toBe('SOCKGATE_ERR_STREAM_BAD_OPEN');
    expect(client.take()).toEqual([{ type: FrameType.RESET, streamId: 1, code: wire('SOCKGATE_ERR_STREAM_BAD_OPEN'), reason: expect.any(String) }]);
    const other = rawSession({ role: 'client' });
    const t = other.session.open('r');
    other.feed(encodeOpenOk(1, [{ tag: 0x10, value: bytes(1) }]));
    expect(t.state).toBe('open');
  });

  it('a side with no onStream refuses every OPEN with ROUTE_UNKNOWN', () => {
    const raw = rawSession();
    raw.feed(encodeOpen(1, 'r'));
    expect(raw.take()).toEqual([{ type: FrameType.OPEN_FAIL, streamId: 1, code: wire('SOCKGATE_ERR_ROUTE_UNKNOWN'), reason: expect.any(String) }]);
  });

  it('admitOpen can refuse an OPEN with its own code (rate limits)', () => {
    const raw = acceptingServer({ admitOpen: () => new SockgateError('SOCKGATE_ERR_STREAM_RATE_LIMITED') });
    raw.feed(encodeOpen(1, 'r'));
    expect(raw.take()[0]).toMatchObject({ type: FrameType.OPEN_FAIL, code: wire('SOCKGATE_ERR_STREAM_RATE_LIMITED') });
  });

  it('reject() sends OPEN_FAIL with the error code and closes the stream', () => {
    const raw = rawSession({ onStream: (s) => s.reject(new SockgateError('SOCKGATE_ERR_ROUTE_FORBIDDEN', 'not for you')) });
    raw.feed(encodeOpen(1, 'r'));
    expect(raw.take()).toEqual([
      // The reason carries the detail; the receiver adds the code's own message back.
      { type: FrameType.OPEN_FAIL, streamId: 1, code: wire('SOCKGATE_ERR_ROUTE_FORBIDDEN'), reason: 'not for you' },
    ]);
    expect(raw.session.streamCount).toBe(0);
  });

  it('open() refuses a bad route name locally, and after close()', () => {
    const client = rawSession({ role: 'client' });
    expect(thrown(() => client.session.open('a b')).code).toBe('SOCKGATE_ERR_STREAM_BAD_OPEN');
    expect(thrown(() => client.session.open('')).code).toBe('SOCKGATE_ERR_STREAM_BAD_OPEN');
    expect(client.out).toEqual([]);
    client.session.close();
    expect(thrown(() => client.session.open('r')).code).toBe('SOCKGATE_ERR_SDK_NOT_CONNECTED');
  });
});

describe('half-close and close (PROTOCOL 4.3, 4.4)', () => {
  async function openPair() {
    let server!: Stream;
    const serverGot: Uint8Array[] = [];
    const pair = sessionPair({}, {
      onStream(s) {
        server = s;
        s.onData = (c) => {
          serverGot.push(c.slice());
          s.consume(c.length);
        };
        s.accept();
      },
    });
    const client = pair.client.open('r');
    const clientGot: Uint8Array[] = [];
    client.onData = (c) => {
      clientGot.push(c.slice());
      client.consume(c.length);
    };
    await pair.settle();
    return { pair, client, server, clientGot, serverGot };
  }

  it('client FIN first: the server still sends, and the stream closes on the second FIN', async () => {
    const { pair, client, server, clientGot } = await openPair();
    let serverEnded = false;
    let clientClosed: unknown = 'open';
    let serverClosed: unknown = 'open';
    server.onEnd = () => (serverEnded = true);
    client.onClose = (e) => (clientClosed = e);
    server.onClose = (e) => (serverClosed = e);
    client.end();
    await pair.settle();
    expect(serverEnded).toBe(true);
    expect(client.localEnded && server.remoteEnded).toBe(true);
    expect(client.write(bytes(1))).toBe(false); // nothing after our FIN
    expect(server.write(bytes(5, 0x7a))).toBe(true);
    await pair.settle();
    expectSameBytes(concat(clientGot), bytes(5, 0x7a));
    expect(clientClosed).toBe('open');
    server.end();
    await pair.settle();
    expect(clientClosed).toBeUndefined();
    expect(serverClosed).toBeUndefined();
    expect(pair.client.streamCount + pair.server.streamCount).toBe(0);
  });

  it('server FIN first: the client still sends', async () => {
    const { pair, client, server, serverGot } = await openPair();
    let clientEnded = false;
    client.onEnd = () => (clientEnded = true);
    server.end();
    await pair.settle();
    expect(clientEnded).toBe(true);
    client.write(bytes(7, 0x41));
    client.end();
    await pair.settle();
    expectSameBytes(concat(serverGot), bytes(7, 0x41));
    expect(client.isClosed && server.isClosed).toBe(true);
    expect(client.error).toBeUndefined();
  });

  it('FIN goes out only after everything written before end()', () => {
    const client = rawSession({ role: 'client' });
    const s = client.session.open('r');
    s.write(bytes(INITIAL_WINDOW + 10));
    s.end();
    expect(client.take().at(-1)?.type).toBe(FrameType.DATA);
    client.feed(encodeWindow(1, INITIAL_WINDOW, INITIAL_WINDOW));
    expect(types(client.take())).toEqual([FrameType.DATA, FrameType.FIN]);
  });

  it('DATA after the peer\'s FIN resets the stream with STREAM_STATE; so does a second FIN', () => {
    for (const late of [encodeData(1, bytes(1)), encodeFin(1)]) {
      const raw = acceptingServer();
      raw.feed(encodeOpen(1, 'r'));
      raw.feed(encodeFin(1));
      raw.take();
      raw.feed(late);
      expect(raw.take()).toEqual([{ type: FrameType.RESET, streamId: 1, code: wire('SOCKGATE_ERR_STREAM_STATE'), reason: expect.any(String) }]);
      expect(raw.streams.get(1)!.error?.code).toBe('SOCKGATE_ERR_STREAM_STATE');
      expect(raw.closedWith).toBeUndefined();
    }
  });

  it('RESET from the peer closes the stream with its code and drops pending data', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r'));
    const s = raw.streams.get(1)!;
    s.write(bytes(INITIAL_WINDOW + 1));
    raw.feed(encodeReset(1, wire('SOCKGATE_ERR_BACKEND_RESET'), 'ECONNRESET: read ECONNRESET'));
    expect(s.error?.code).toBe('SOCKGATE_ERR_BACKEND_RESET');
    expect(s.error?.message).toContain('ECONNRESET');
    expect(s.bufferedAmount).toBe(0);
    expect(s.write(bytes(1))).toBe(false);
  });

  it('reset() sends RESET (CANCELLED by default) and closes the stream locally', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r'));
    raw.take();
    raw.streams.get(1)!.reset();
    expect(raw.take()).toEqual([{ type: FrameType.RESET, streamId: 1, code: wire('SOCKGATE_ERR_STREAM_CANCELLED'), reason: expect.any(String) }]);
    raw.streams.get(1)!.reset();
    expect(raw.take()).toEqual([]);
  });
});

describe('flow control in the session (PROTOCOL 5)', () => {
  it('DATA past the limit resets only that stream with FLOW_CONTROL; its neighbour goes on', () => {
    const raw = acceptingServer();
    const got: number[] = [];
    raw.feed(encodeOpen(1, 'r'));
    raw.feed(encodeOpen(3, 'r'));
    raw.streams.get(3)!.onData = (c) => got.push(c.length);
    raw.take();
    for (let i = 0; i < INITIAL_WINDOW / MAX_DATA_PAYLOAD; i++) raw.feed(encodeData(1, bytes(MAX_DATA_PAYLOAD)));
    expect(raw.take()).toEqual([]);
    raw.feed(encodeData(1, bytes(1)));
    expect(raw.take()).toEqual([{ type: FrameType.RESET, streamId: 1, code: wire('SOCKGATE_ERR_STREAM_FLOW_CONTROL'), reason: expect.any(String) }]);
    expect(raw.streams.get(1)!.error?.code).toBe('SOCKGATE_ERR_STREAM_FLOW_CONTROL');
    raw.feed(encodeData(1, bytes(1))); // in flight: ignored
    raw.feed(encodeData(3, bytes(100)));
    expect(got).toEqual([100]);
    expect(raw.closedWith).toBeUndefined();
    expect(raw.streams.get(3)!.isClosed).toBe(false);
  });

  it('marks WINDOW frames, and only them, deferrable for the transport (Transport.send)', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r'));
    const stream = raw.streams.get(1)!;
    stream.onData = (c) => stream.consume(c.length);
    for (let i = 0; i < INITIAL_WINDOW / MAX_DATA_PAYLOAD; i++) raw.feed(encodeData(1, bytes(MAX_DATA_PAYLOAD)));
    stream.write(bytes(10));
    void raw.session.ping().catch(() => {}); // no PONG comes; the test ends first
    stream.reset(new SockgateError('SOCKGATE_ERR_STREAM_CANCELLED'));
    const sent = raw.frames().map((f, i) => [f.type, raw.deferrable[i]]);
    expect(sent).toContainEqual([FrameType.WINDOW, true]);
    expect(sent.filter(([type]) => type !== FrameType.WINDOW)).toEqual([
      [FrameType.OPEN_OK, false],
      [FrameType.DATA, false],
      [FrameType.PING, false],
      [FrameType.RESET, false],
    ]);
  });

  it('a WINDOW breaking 5.2 resets the stream with FLOW_CONTROL', () => {
    const bad = [
      encodeWindow(1, 0, INITIAL_WINDOW - 1),
      encodeWindow(1, 0, 16_777_217),
      encodeWindow(1, 11, INITIAL_WINDOW), // consumed > sent (10)
    ];
    for (const m of bad) {
      const raw = acceptingServer();
      raw.feed(encodeOpen(1, 'r'));
      raw.streams.get(1)!.write(bytes(10));
      raw.take();
      raw.feed(m);
      expect(raw.take()).toEqual([{ type: FrameType.RESET, streamId: 1, code: wire('SOCKGATE_ERR_STREAM_FLOW_CONTROL'), reason: expect.any(String) }]);
      expect(raw.closedWith).toBeUndefined();
    }
    const lowered = acceptingServer();
    lowered.feed(encodeOpen(1, 'r'));
    lowered.streams.get(1)!.write(bytes(10));
    lowered.feed(encodeWindow(1, 10, 2 * INITIAL_WINDOW));
    lowered.take();
    lowered.feed(encodeWindow(1, 10, INITIAL_WINDOW));
    expect(lowered.take()[0]).toMatchObject({ type: FrameType.RESET, code: wire('SOCKGATE_ERR_STREAM_FLOW_CONTROL') });
  });

  it('consume() sends WINDOW once half the window is consumed, and none after the peer\'s FIN', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r'));
    const s = raw.streams.get(1)!;
    raw.take();
    raw.feed(encodeData(1, bytes(MAX_DATA_PAYLOAD)));
    raw.feed(encodeData(1, bytes(MAX_DATA_PAYLOAD)));
    s.consume(MAX_DATA_PAYLOAD);
    expect(raw.take()).toEqual([]);
    s.consume(MAX_DATA_PAYLOAD);
    expect(raw.take()).toEqual([{ type: FrameType.WINDOW, streamId: 1, consumed: INITIAL_WINDOW / 2, window: INITIAL_WINDOW }]);
    raw.feed(encodeData(1, bytes(MAX_DATA_PAYLOAD)));
    raw.feed(encodeData(1, bytes(MAX_DATA_PAYLOAD)));
    raw.feed(encodeFin(1));
    s.consume(2 * MAX_DATA_PAYLOAD);
    expect(raw.take()).toEqual([]);
  });

  it('a sender with no credit sends nothing more until WINDOW, then resumes (5.6)', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r'));
    const s = raw.streams.get(1)!;
    raw.take();
    expect(s.write(bytes(INITIAL_WINDOW))).toBe(true);
    expect(s.write(bytes(10))).toBe(false);
    expect(dataBytes(raw.take())).toBe(INITIAL_WINDOW);
    raw.feed(encodeWindow(1, 100, INITIAL_WINDOW));
    expect(dataBytes(raw.take())).toBe(10);
  });

  it('auto-tuning grows the window once an RTT is known', async () => {
    let clock = 0;
    const now = () => clock;
    let server!: Stream;
    const pair = sessionPair({ now, maxWindowBytes: 4 * INITIAL_WINDOW }, {
      now,
      maxWindowBytes: 4 * INITIAL_WINDOW,
      onStream(s) {
        server = s;
        s.accept();
      },
    });
    const c = pair.client.open('r');
    c.onData = (chunk) => c.consume(chunk.length);
    const rtt = pair.client.ping();
    clock = 5;
    await pair.settle();
    expect(await rtt).toBe(5);
    server.write(bytes(3 * INITIAL_WINDOW));
    await pair.settle();
    const windows = pair.frames('client').filter((f) => f.type === FrameType.WINDOW).map((f) => (f as { window: number }).window);
    expect(windows.length).toBeGreaterThan(1);
    expect(Math.max(...windows)).toBeGreaterThan(INITIAL_WINDOW);
    expect(Math.max(...windows)).toBeLessThanOrEqual(4 * INITIAL_WINDOW);
    expect(server.bufferedAmount).toBe(0);
  });
});

describe('DATA in pieces: receiveDataHead() and receiveDataPiece() (client/frame-reader.ts)', () => {
  /** Feed frames to a fresh accepting server, DATA whole or as a header and pieces; record everything it did. */
  function outcome(frames: readonly Frame[], cuts: readonly number[] | undefined) {
    const received = new Map<number, string>();
    const raw = acceptingServer({
      onStream(stream) {
        stream.onData = (chunk) => received.set(stream.id, (received.get(stream.id) ?? '') + hexOf(chunk));
        stream.accept();
      },
    });
    for (const frame of frames) {
      if (frame.type !== FrameType.DATA || !cuts) {
        raw.feed(encodeFrame(frame));
        continue;
      }
      raw.session.receiveDataHead(frame.streamId, frame.data.length);
      const at = [...new Set(cuts.map((c) => c % frame.data.length))].filter((c) => c > 0).sort((a, b) => a - b);
      let from = 0;
      for (const c of [...at, frame.data.length]) {
        raw.session.receiveDataPiece(frame.data.subarray(from, c));
        from = c;
      }
    }
    return { sent: raw.out.map(hexOf), received: [...received], closedWith: raw.closedWith, closeError: codeOf(raw.closeError) };
  }

  it('does exactly what the whole frames do, however the payloads are cut', () => {
    const odd = fc.integer({ min: 0, max: 7 }).map((n) => 2 * n + 1);
    fc.assert(
      fc.property(fc.array(frameArb({ streamId: odd }), { maxLength: 24 }), fc.array(fc.nat(), { maxLength: 6 }), (frames, cuts) => {
        expect(outcome(frames, cuts)).toEqual(outcome(frames, undefined));
      }),
      { numRuns: 300 },
    );
  });

  it('charges the whole frame to the window at its header: one past the limit resets the stream before any piece', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r'));
    const got: number[] = [];
    raw.streams.get(1)!.onData = (c) => got.push(c.length);
    raw.take();
    for (let i = 1; i < INITIAL_WINDOW / MAX_DATA_PAYLOAD; i++) raw.feed(encodeData(1, bytes(MAX_DATA_PAYLOAD)));
    raw.session.receiveDataHead(1, MAX_DATA_PAYLOAD - 1);
    raw.session.receiveDataPiece(bytes(MAX_DATA_PAYLOAD - 1));
    expect(raw.take()).toEqual([]);
    raw.session.receiveDataHead(1, 2);
    raw.session.receiveDataPiece(bytes(1));
    raw.session.receiveDataPiece(bytes(1));
    expect(got.reduce((a, b) => a + b)).toBe(INITIAL_WINDOW - 1);
    expect(raw.take()).toEqual([{ type: FrameType.RESET, streamId: 1, code: wire('SOCKGATE_ERR_STREAM_FLOW_CONTROL'), reason: expect.any(String) }]);
    expect(raw.closedWith).toBeUndefined();
  });

  it('drops the rest of a frame once its stream was reset, from within onData too', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r'));
    const s = raw.streams.get(1)!;
    const got: number[] = [];
    s.onData = (c) => {
      got.push(c.length);
      s.reset();
    };
    raw.session.receiveDataHead(1, 30);
    for (let i = 0; i < 3; i++) raw.session.receiveDataPiece(bytes(10));
    expect(got).toEqual([10]);
    expect(s.bytesIn).toBe(10);
    expect(raw.closedWith).toBeUndefined();
  });

  it('a header for stream 0, or of a length DATA cannot have, is a protocol error (1002)', () => {
    for (const [id, length, code] of [
      [0, 1, 'SOCKGATE_ERR_PROTOCOL_BAD_STREAM_ID'],
      [1, 0, 'SOCKGATE_ERR_PROTOCOL_BAD_LENGTH'],
      [1, MAX_DATA_PAYLOAD + 1, 'SOCKGATE_ERR_PROTOCOL_BAD_LENGTH'],
    ] as const) {
      const raw = acceptingServer();
      raw.feed(encodeOpen(1, 'r'));
      raw.session.receiveDataHead(id, length);
      expect([raw.closedWith?.code, codeOf(raw.closeError)]).toEqual([1002, code]);
    }
  });

  it('an onData that throws closes the session with 1011 (internal)', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r'));
    raw.streams.get(1)!.onData = () => {
      throw new Error('adapter bug');
    };
    raw.session.receiveDataHead(1, 1);
    expect(() => raw.session.receiveDataPiece(bytes(1))).not.toThrow();
    expect([raw.closedWith?.code, codeOf(raw.closeError)]).toEqual([1011, 'SOCKGATE_ERR_INTERNAL']);
  });
});

describe('session window budget (5.7)', () => {
  it("a stream's window grows only to its share of maxSessionWindowBytes among the streams receiving data", async () => {
    let clock = 0;
    const now = () => clock;
    const served: Stream[] = [];
    const pair = sessionPair(
      { now, maxWindowBytes: 4 * INITIAL_WINDOW, maxSessionWindowBytes: 4 * INITIAL_WINDOW },
      {
        now,
        onStream(s) {
          served.push(s);
          s.accept();
        },
      },
    );
    const streams = ['a', 'b', 'c', 'd', 'idle'].map((r) => pair.client.open(r));
    for (const c of streams) c.onData = (chunk) => c.consume(chunk.length);
    const rtt = pair.client.ping();
    clock = 5;
    await pair.settle();
    expect(await rtt).toBe(5);
    const windowsOf1 = () =>
      pair
        .frames('client')
        .filter((f) => f.type === FrameType.WINDOW && f.streamId === 1)
        .map((f) => (f as { window: number }).window);
    // Four streams receive data (the fifth is open but idle and takes no share): a budget of four initial windows
    // keeps stream 1 at INITIAL_WINDOW however fast it reads.
    for (const s of served.slice(0, 4)) s.write(bytes(100));
    await pair.settle();
    clock += 200; // the count of busy streams is refreshed at most every 100 ms
    served[0]!.write(bytes(4 * INITIAL_WINDOW));
    await pair.settle();
    expect(windowsOf1().length).toBeGreaterThan(2);
    expect(Math.max(...windowsOf1())).toBe(INITIAL_WINDOW);
    // A second later the other three have been quiet: stream 1 alone receives data, and has the whole budget.
    clock += 1100;
    served[0]!.write(bytes(8 * INITIAL_WINDOW));
    await pair.settle();
    expect(Math.max(...windowsOf1())).toBe(4 * INITIAL_WINDOW);
    expect(served[0]!.bufferedAmount).toBe(0);
  });

  it('refuses a budget below INITIAL_WINDOW', () => {
    expect(() => sessionPair({ maxSessionWindowBytes: INITIAL_WINDOW - 1 })).toThrow(RangeError);
  });
});

describe('transport backpressure', () => {
  it('sends no DATA while the transport holds too much, then drains round-robin, two streams alternating', async () => {
    const pair = sessionPair({ maxTransportBufferedBytes: 1000 }, { onStream: (s) => s.accept() });
    pair.setClientBuffered(5000);
    const a = pair.client.open('a');
    const b = pair.client.open('b');
    let drainedA = 0;
    let drainedB = 0;
    a.onDrain = () => drainedA++;
    b.onDrain = () => drainedB++;
    expect(a.write(bytes(3 * MAX_DATA_PAYLOAD))).toBe(false);
    expect(b.write(bytes(3 * MAX_DATA_PAYLOAD))).toBe(false);
    expect(pair.client.wantsDrain).toBe(true);
    expect(types(pair.frames('client'))).toEqual([FrameType.OPEN, FrameType.OPEN]);
    pair.setClientBuffered(0);
    pair.client.transportDrained();
    const data = pair.frames('client').filter((f) => f.type === FrameType.DATA).map((f) => f.streamId);
    expect(data).toEqual([1, 3, 1, 3, 1, 3]);
    expect(drainedA).toBe(1);
    expect(drainedB).toBe(1);
    expect(pair.client.wantsDrain).toBe(false);
    await pair.settle();
  });

  it('stops sending DATA as soon as the transport is full again', () => {
    const out: Uint8Array[] = [];
    let buffered = 0;
    const transport: Transport = {
      send(m) {
        out.push(m);
        buffered += m.length;
      },
      get bufferedAmount() {
        return buffered;
      },
      close() {},
    };
    const session = new Session({ role: 'client', transport, maxTransportBufferedBytes: 2 * MAX_DATA_PAYLOAD });
    const s = session.open('r');
    buffered = 0;
    expect(s.write(bytes(INITIAL_WINDOW))).toBe(false);
    // Two 64 KiB frames fill the 128 KiB budget.
    expect(out.length).toBe(1 + 2);
    buffered = 0;
    session.transportDrained();
    expect(out.length).toBe(1 + 4);
    expect(s.bufferedAmount).toBe(0);
  });

  it('closes the session with 1008 when the transport backlog passes maxTransportBacklogBytes', () => {
    const raw = acceptingServer({ maxTransportBacklogBytes: 100 });
    raw.setBuffered(101);
    raw.feed(encodePing(bytes(8)));
    expect(raw.closedWith?.code).toBe(1008);
    expect(codeOf(raw.closeError)).toBe('SOCKGATE_ERR_SESSION_POLICY');
  });
});

describe('GOAWAY (PROTOCOL 6.2)', () => {
  it('after sending GOAWAY a side refuses new OPENs with SHUTTING_DOWN; open streams go on', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r'));
    raw.session.goAway();
    raw.feed(encodeOpen(3, 'r'));
    raw.feed(encodeData(1, bytes(4)));
    const out = raw.take();
    expect(out.map((f) => f.type)).toEqual([FrameType.OPEN_OK, FrameType.GOAWAY, FrameType.OPEN_FAIL]);
    expect(out[1]).toEqual({ type: FrameType.GOAWAY, streamId: 0, code: wire('SOCKGATE_ERR_STREAM_SHUTTING_DOWN'), reason: expect.any(String) });
    expect(out[2]).toMatchObject({ streamId: 3, code: wire('SOCKGATE_ERR_STREAM_SHUTTING_DOWN') });
    expect(raw.streams.get(1)!.bytesIn).toBe(4);
    raw.session.goAway();
    expect(raw.take()).toEqual([]);
  });

  it('the peer hears GOAWAY and open() then throws locally', async () => {
    let heard: SockgateError | undefined;
    const pair = sessionPair({ onGoAway: (e) => (heard = e) }, { onStream: (s) => s.accept() });
    const before = pair.client.open('r');
    await pair.settle();
    pair.server.goAway();
    await pair.settle();
    expect(heard?.code).toBe('SOCKGATE_ERR_STREAM_SHUTTING_DOWN');
    expect(pair.client.goingAway).toBe(true);
    expect(thrown(() => pair.client.open('r')).code).toBe('SOCKGATE_ERR_STREAM_SHUTTING_DOWN');
    expect(before.state).toBe('open');
  });

  it('regression: a side that received GOAWAY can still send its own', () => {
    const raw = acceptingServer();
    raw.feed(encodeGoAway(wire('SOCKGATE_ERR_STREAM_CLOSED'), 'page unload'));
    raw.session.goAway();
    expect(raw.take()).toEqual([{ type: FrameType.GOAWAY, streamId: 0, code: wire('SOCKGATE_ERR_STREAM_SHUTTING_DOWN'), reason: expect.any(String) }]);
  });
});

describe('PING and PONG (PROTOCOL 6.1)', () => {
  it('answers PING with PONG carrying the same bytes', () => {
    const raw = rawSession();
    raw.feed(encodePing(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)));
    expect(raw.take()).toEqual([{ type: FrameType.PONG, streamId: 0, opaque: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) }]);
  });

  it('ping() measures the round-trip time with the session clock', async () => {
    let clock = 1000;
    const pair = sessionPair({ now: () => clock }, {});
    const rtt = pair.client.ping();
    expect(pair.client.pendingPings).toBe(1);
    clock = 1042;
    await pair.settle();
    expect(await rtt).toBe(42);
    expect(pair.client.rtt).toBe(42);
    expect(pair.client.pendingPings).toBe(0);
  });

  it('ignores unsolicited PONGs; refuses more than maxPendingPings; rejects pending pings on close', async () => {
    const raw = rawSession({ role: 'client', maxPendingPings: 2 });
    raw.feed(encodePong(bytes(8)));
    expect(raw.closedWith).toBeUndefined();
    const p1 = raw.session.ping();
    const p2 = raw.session.ping();
    await expect(raw.session.ping()).rejects.toMatchObject({ code: 'SOCKGATE_ERR_SESSION_POLICY' });
    raw.session.close();
    await expect(p1).rejects.toMatchObject({ code: 'SOCKGATE_ERR_SESSION_CLOSED' });
    await expect(p2).rejects.toBeInstanceOf(SockgateError);
    await expect(raw.session.ping()).rejects.toMatchObject({ code: 'SOCKGATE_ERR_SDK_NOT_CONNECTED' });
  });
});

describe('limits (PROTOCOL 4.6)', () => {
  it('refuses OPENs past maxIncomingStreams with TOO_MANY, and accepts again once one closed', () => {
    const raw = acceptingServer({ maxIncomingStreams: 2 });
    raw.feed(encodeOpen(1, 'r'));
    raw.feed(encodeOpen(3, 'r'));
    raw.feed(encodeOpen(5, 'r'));
    expect(raw.take().map((f) => [f.type, f.streamId])).toEqual([
      [FrameType.OPEN_OK, 1],
      [FrameType.OPEN_OK, 3],
      [FrameType.OPEN_FAIL, 5],
    ]);
    expect(raw.frames()[2]).toMatchObject({ code: wire('SOCKGATE_ERR_STREAM_TOO_MANY') });
    raw.feed(encodeReset(1, 0));
    raw.feed(encodeOpen(7, 'r'));
    expect(raw.take().map((f) => [f.type, f.streamId])).toEqual([[FrameType.OPEN_OK, 7]]);
  });

  it('streams we opened do not count against maxIncomingStreams', () => {
    const raw = acceptingServer({ maxIncomingStreams: 1 });
    raw.session.open('r');
    raw.session.open('r');
    raw.feed(encodeOpen(1, 'r'));
    expect(raw.take().map((f) => f.type)).toEqual([FrameType.OPEN, FrameType.OPEN, FrameType.OPEN_OK]);
  });
});

describe('session errors and close', () => {
  it('a bad frame closes the session with 1002 and the decoder\'s code', () => {
    const raw = rawSession();
    raw.feed(Uint8Array.of(0x0b, 0, 0, 0, 0, 1));
    expect(raw.closedWith?.code).toBe(1002);
    expect(codeOf(raw.closeError)).toBe('SOCKGATE_ERR_PROTOCOL_BAD_TYPE');
    raw.feed(encodePing(bytes(8)));
    expect(raw.out).toEqual([]);
  });

  it('a message over MAX_FRAME_BYTES closes the session with 1009 (PROTOCOL 1.4)', () => {
    const raw = rawSession();
    const m = new Uint8Array(MAX_FRAME_BYTES + 1);
    m.set([FrameType.DATA, 0, 0, 0, 0, 1]);
    raw.feed(m);
    expect(raw.closedWith?.code).toBe(1009);
  });

  it('a text message closes the session with 1003 (PROTOCOL 1.3)', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r'));
    raw.session.receiveText();
    expect(raw.closedWith?.code).toBe(1003);
    expect(codeOf(raw.closeError)).toBe('SOCKGATE_ERR_PROTOCOL_TEXT_FRAME');
    expect(raw.streams.get(1)!.error?.code).toBe('SOCKGATE_ERR_PROTOCOL_TEXT_FRAME');
  });

  it('close() ends every stream with an error code and closes the transport with 1000', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r'));
    const local = raw.session.open('r');
    raw.session.close();
    expect(raw.closedWith).toEqual({ code: 1000, reason: '' });
    expect(raw.closeError).toBeUndefined();
    expect(raw.streams.get(1)!.error?.code).toBe('SOCKGATE_ERR_SESSION_CLOSED');
    expect(local.error?.code).toBe('SOCKGATE_ERR_SESSION_CLOSED');
    expect(raw.session.streamCount).toBe(0);
    raw.session.close(new SockgateError('SOCKGATE_ERR_INTERNAL'));
    expect(raw.closedWith?.code).toBe(1000);
  });

  it('close(err) closes with the error\'s close code and gives streams that error', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r'));
    raw.session.close(new SockgateError('SOCKGATE_ERR_SESSION_DRAIN_TIMEOUT'));
    expect(raw.closedWith?.code).toBe(4003);
    expect(raw.streams.get(1)!.error?.code).toBe('SOCKGATE_ERR_SESSION_DRAIN_TIMEOUT');
    expect(codeOf(raw.closeError)).toBe('SOCKGATE_ERR_SESSION_DRAIN_TIMEOUT');
  });

  it('regression: a close reason is cut to fit a WebSocket close frame (123 bytes of UTF-8)', () => {
    const raw = rawSession();
    raw.session.close(new SockgateError('SOCKGATE_ERR_INTERNAL', '€'.repeat(100)));
    expect(raw.closedWith?.code).toBe(1011);
    const reason = raw.closedWith!.reason;
    expect(new TextEncoder().encode(reason).length).toBeLessThanOrEqual(123);
    expect(reason.startsWith('internal error: €')).toBe(true);
    expect(reason).not.toContain('\uFFFD');
  });

  it('the transport closing under us ends the streams: 1006 is SESSION_LOST, 1000 is clean', () => {
    const lost = acceptingServer();
    lost.feed(encodeOpen(1, 'r'));
    lost.session.transportClosed(1006, '');
    expect(codeOf(lost.closeError)).toBe('SOCKGATE_ERR_SESSION_LOST');
    expect(lost.streams.get(1)!.error?.code).toBe('SOCKGATE_ERR_SESSION_LOST');
    expect(lost.closedWith).toBeUndefined();
    const clean = acceptingServer();
    clean.feed(encodeOpen(1, 'r'));
    clean.session.transportClosed(1000, '');
    expect(clean.closeError).toBeUndefined();
    expect(clean.streams.get(1)!.error?.code).toBe('SOCKGATE_ERR_SESSION_CLOSED');
  });

  it('the peer sees the close code: pair.client.close(err) reaches the server as that code', async () => {
    let serverErr: unknown = 'open';
    const pair = sessionPair({}, { onClose: (e) => (serverErr = e), onStream: (s) => s.accept() });
    pair.client.open('r');
    await pair.settle();
    pair.client.close(new SockgateError('SOCKGATE_ERR_SESSION_PING_TIMEOUT'));
    await pair.settle();
    expect(codeOf(serverErr)).toBe('SOCKGATE_ERR_SESSION_PING_TIMEOUT');
    expect(pair.server.closed).toBe(true);
    expect(pair.server.streamCount).toBe(0);
  });
});

describe('exceptions from adapter callbacks close with 1011 (internal), never 1002', () => {
  const scenarios: [string, (raw: RawSession & { streams: Map<number, Stream> }) => void][] = [
    [
      'onStream',
      (raw) => {
        (raw.session as unknown as { opts: { onStream: () => void } }).opts.onStream = () => {
          throw new Error('adapter bug');
        };
        raw.feed(encodeOpen(1, 'r'));
      },
    ],
    [
      'onData',
      (raw) => {
        raw.feed(encodeOpen(1, 'r'));
        raw.streams.get(1)!.onData = () => {
          throw new TypeError('adapter bug');
        };
        raw.feed(encodeData(1, bytes(1)));
      },
    ],
    [
      'onEnd',
      (raw) => {
        raw.feed(encodeOpen(1, 'r'));
        raw.streams.get(1)!.onEnd = () => {
          throw new Error('adapter bug');
        };
        raw.feed(encodeFin(1));
      },
    ],
    [
      'onClose of a stream the peer reset',
      (raw) => {
        raw.feed(encodeOpen(1, 'r'));
        raw.streams.get(1)!.onClose = () => {
          throw new Error('adapter bug');
        };
        raw.feed(encodeReset(1, 0));
      },
    ],
    [
      'onDrain',
      (raw) => {
        raw.feed(encodeOpen(1, 'r'));
        const s = raw.streams.get(1)!;
        s.write(bytes(INITIAL_WINDOW + 1));
        s.onDrain = () => {
          throw new Error('adapter bug');
        };
        raw.feed(encodeWindow(1, 1, INITIAL_WINDOW));
      },
    ],
    [
      'a SockgateError without a close code',
      (raw) => {
        raw.feed(encodeOpen(1, 'r'));
        raw.streams.get(1)!.onData = () => {
          throw new SockgateError('SOCKGATE_ERR_STREAM_CLOSED');
        };
        raw.feed(encodeData(1, bytes(1)));
      },
    ],
  ];
  for (const [name, run] of scenarios) {
    it(name, () => {
      const raw = acceptingServer();
      expect(() => run(raw)).not.toThrow();
      expect(raw.closedWith?.code).toBe(1011);
      expect(codeOf(raw.closeError)).toBe('SOCKGATE_ERR_INTERNAL');
      expect((raw.closeError as Error).cause).toBeInstanceOf(Error);
    });
  }

  it('onOpen on the opening side', () => {
    const client = rawSession({ role: 'client' });
    client.session.open('r').onOpen = () => {
      throw new Error('adapter bug');
    };
    client.feed(encodeOpenOk(1));
    expect(client.closedWith?.code).toBe(1011);
  });

  it('regression: a stream onClose that throws while the session closes still closes the transport and every stream', () => {
    let sessionClosed = 0;
    const raw = acceptingServer({ onClose: () => sessionClosed++ });
    raw.feed(encodeOpen(1, 'r'));
    raw.feed(encodeOpen(3, 'r'));
    raw.streams.get(1)!.onClose = () => {
      throw new Error('adapter bug');
    };
    expect(() => raw.feed(Uint8Array.of(0xee))).not.toThrow();
    expect(raw.closedWith?.code).toBe(1002);
    expect(raw.streams.get(3)!.isClosed).toBe(true);
    expect(sessionClosed).toBe(1);
  });

  it('regression: receiveText() and transportClosed() never throw either (found by decode-fuzz)', () => {
    const throwing = (): RawSession & { streams: Map<number, Stream> } => {
      const raw = acceptingServer();
      raw.feed(encodeOpen(1, 'r'));
      raw.feed(encodeOpen(3, 'r'));
      raw.streams.get(1)!.onClose = () => {
        throw new Error('adapter bug');
      };
      return raw;
    };
    const text = throwing();
    expect(() => text.session.receiveText()).not.toThrow();
    expect(text.closedWith?.code).toBe(1003);
    expect(text.streams.get(3)!.isClosed).toBe(true);
    const gone = throwing();
    expect(() => gone.session.transportClosed(1006, '')).not.toThrow();
    expect(gone.session.closed).toBe(true);
    expect(gone.streams.get(3)!.error?.code).toBe('SOCKGATE_ERR_SESSION_LOST');
  });

  it('an onDrain that throws during transportDrained() closes with 1011', () => {
    const raw = acceptingServer({ maxTransportBufferedBytes: 10 });
    raw.feed(encodeOpen(1, 'r'));
    const s = raw.streams.get(1)!;
    raw.setBuffered(100);
    s.write(bytes(5));
    s.onDrain = () => {
      throw new Error('adapter bug');
    };
    raw.setBuffered(0);
    expect(() => raw.session.transportDrained()).not.toThrow();
    expect(raw.closedWith?.code).toBe(1011);
  });

  it('close() called by the application still closes the transport, then rethrows the callback\'s error', () => {
    const raw = acceptingServer();
    raw.feed(encodeOpen(1, 'r'));
    raw.streams.get(1)!.onClose = () => {
      throw new Error('adapter bug');
    };
    expect(() => raw.session.close()).toThrow('adapter bug');
    expect(raw.closedWith?.code).toBe(1000);
    expect(raw.closeError).toBeUndefined();
  });
});

describe('end to end over the in-memory pair', () => {
  it('opens, echoes with flow control and half-closes', async () => {
    const pair = sessionPair({}, {
      onStream(stream) {
        stream.onData = (chunk) => {
          stream.write(chunk);
          stream.consume(chunk.length);
        };
        stream.onEnd = () => stream.end();
        stream.accept();
      },
    });
    const s = pair.client.open('echo');
    const got: Uint8Array[] = [];
    let ended = false;
    let closed: unknown = 'pending';
    s.onData = (c) => {
      got.push(c.slice());
      s.consume(c.length);
    };
    s.onEnd = () => (ended = true);
    s.onClose = (e) => (closed = e);
    const payload = new Uint8Array(INITIAL_WINDOW * 3 + 123).map((_, i) => i % 251);
    s.write(payload);
    s.end();
    await pair.settle();
    expectSameBytes(concat(got), payload);
    expect(ended).toBe(true);
    expect(closed).toBeUndefined();
    expect(pair.client.streamCount).toBe(0);
    expect(pair.server.streamCount).toBe(0);
  });

  it('a stalled stream does not stall its neighbour (5.6)', async () => {
    const streams: Stream[] = [];
    const pair = sessionPair({}, {
      onStream(s) {
        streams.push(s);
        s.accept();
      },
    });
    const stalled = pair.client.open('stalled');
    const busy = pair.client.open('busy');
    const got: number[] = [];
    await pair.settle();
    // The server never consumes on the first stream, and consumes everything on the second.
    streams[1]!.onData = (c) => {
      got.push(c.length);
      streams[1]!.consume(c.length);
    };
    stalled.write(bytes(2 * INITIAL_WINDOW));
    busy.write(bytes(3 * INITIAL_WINDOW));
    busy.end();
    await pair.settle();
    expect(got.reduce((a, b) => a + b, 0)).toBe(3 * INITIAL_WINDOW);
    expect(stalled.bufferedAmount).toBe(INITIAL_WINDOW);
    expect(streams[0]!.window.held).toBe(INITIAL_WINDOW);
  });

  it('property: random writes, reads and ends on several streams deliver every byte in order, with no resets', async () => {
    type Op =
      | { kind: 'write'; stream: number; n: number }
      | { kind: 'end'; stream: number }
      | { kind: 'consume'; stream: number }
      | { kind: 'settle' };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.record({ kind: fc.constant('write' as const), stream: fc.nat({ max: 2 }), n: fc.integer({ min: 1, max: 150_000 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('end' as const), stream: fc.nat({ max: 2 }) }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('consume' as const), stream: fc.nat({ max: 2 }) }) },
      { weight: 2, arbitrary: fc.constant({ kind: 'settle' as const }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), fc.boolean(), async (ops, buffered) => {
        const serverStreams: Stream[] = [];
        const received = new Map<number, Uint8Array[]>();
        const unconsumed = new Map<number, number>();
        const pair = sessionPair({ maxWindowBytes: 2 * INITIAL_WINDOW, now: () => 0 }, {
          onStream(s) {
            serverStreams.push(s);
            received.set(s.id, []);
            unconsumed.set(s.id, 0);
            s.onData = (c) => {
              received.get(s.id)!.push(c.slice());
              unconsumed.set(s.id, unconsumed.get(s.id)! + c.length);
            };
            s.accept();
          },
        });
        const streams = [pair.client.open('a'), pair.client.open('b'), pair.client.open('c')];
        const written = new Map<number, number>(streams.map((s) => [s.id, 0]));
        const ended = new Set<number>();
        const consumeAll = () => {
          for (const s of serverStreams) {
            const n = unconsumed.get(s.id)!;
            unconsumed.set(s.id, 0);
            s.consume(n);
          }
        };
        // Over maxTransportBufferedBytes (1 MiB) but under the backlog limit (16 MiB): DATA waits, control frames go.
        if (buffered) pair.setClientBuffered(2 * 1024 * 1024);
        for (const o of ops) {
          if (o.kind === 'write') {
            const s = streams[o.stream]!;
            if (ended.has(s.id)) continue;
            const start = written.get(s.id)!;
            s.write(new Uint8Array(o.n).map((_, i) => (start + i + s.id) & 0xff));
            written.set(s.id, start + o.n);
          } else if (o.kind === 'end') {
            streams[o.stream]!.end();
            ended.add(streams[o.stream]!.id);
          } else if (o.kind === 'consume') {
            const s = serverStreams.find((t) => t.id === streams[o.stream]!.id);
            if (s) {
              const n = unconsumed.get(s.id)!;
              unconsumed.set(s.id, 0);
              s.consume(n);
            }
          } else {
            await pair.settle();
          }
        }
        pair.setClientBuffered(0);
        pair.client.transportDrained();
        // Finish: read everything, bounded.
        for (let i = 0; i < 200 && streams.some((s) => s.bufferedAmount > 0); i++) {
          await pair.settle();
          consumeAll();
          pair.client.transportDrained();
        }
        await pair.settle();
        for (const s of streams) {
          expect(s.error).toBeUndefined();
          expect(s.bufferedAmount).toBe(0);
          const got = concat(received.get(s.id) ?? []);
          expect(got.length).toBe(written.get(s.id));
          for (let i = 0; i < got.length; i++) if (got[i] !== ((i + s.id) & 0xff)) throw new Error(`stream ${s.id} byte ${i} differs`);
        }
        expect(pair.frames('server').some((f) => f.type === FrameType.RESET)).toBe(false);
        expect(pair.client.closed || pair.server.closed).toBe(false);
      }),
      { numRuns: 60 },
    );
  });
});
