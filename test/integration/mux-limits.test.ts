/**
 * Mux mode under pressure and abuse: a stalled reader stalls only its own stream, with bounded memory; a
 * session that ends mid-transfer releases every backend socket; protocol violations close the session with
 * the right code; rate and idle limits; one log line per session and stream.
 */
import { createHash } from 'node:crypto';
import type net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createGateway } from '../../server/gateway.js';
import { INITIAL_WINDOW, MAX_FRAME_BYTES } from '../../shared/constants.js';
import {
  type Backend,
  echoHandler,
  patternBytes,
  sha256,
  sinkHandler,
  sourceHandler,
  tcpBackend,
  unixBackend,
  waitFor,
} from '../helpers/backends.js';
import { type ClientStream, type MuxClient, type MuxServer, connectMux, startMuxGateway, startMuxServer, within } from '../helpers/mux-client.js';
import { noiseBytes } from '../helpers/mux-server.js';

const MiB = 1024 * 1024;

/** Everything a test started, closed afterwards whatever happened. */
let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  cleanups = [];
});

async function backend(kind: 'tcp' | 'unix', handler: Parameters<typeof tcpBackend>[0]): Promise<Backend> {
  const b = await (kind === 'tcp' ? tcpBackend(handler) : unixBackend(handler));
  cleanups.push(() => b.close());
  return b;
}

/** The real gateway. */
async function server(routes: Record<string, string>): Promise<MuxServer> {
  const s = await startMuxGateway(routes);
  cleanups.push(() => s.close());
  return s;
}

/** handleMuxSession in a bare app, without the gateway's admission checks. */
async function bareServer(routes: Record<string, string>, opts: Parameters<typeof startMuxServer>[1]): Promise<MuxServer> {
  const s = await startMuxServer(routes, opts);
  cleanups.push(() => s.close());
  return s;
}

async function client(url: string): Promise<MuxClient> {
  const c = await connectMux(url);
  cleanups.push(() => c.close());
  return c;
}

/** Bytes a backend socket has handed to the kernel (not those still queued in Node). */
function bytesSent(socket: net.Socket): number {
  return socket.bytesWritten - socket.writableLength;
}

/** Poll until f() has not changed for `quietMs`; bounded by timeoutMs. Returns the settled value. */
async function settled(f: () => number, quietMs: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = f();
  let since = Date.now();
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    await new Promise((r) => setTimeout(r, 25));
    const now = f();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return now;
  }
  throw new Error(`value still changing after ${timeoutMs} ms (last ${last})`);
}

async function echoRoundTrip(c: MuxClient, route: string, bytes: number): Promise<void> {
  const payload = patternBytes(bytes);
  const s = c.open(route, { keep: false });
  await s.write(payload);
  s.end();
  expect(await within(s.closed, 10_000, 'echo round trip')).toBeUndefined();
  expect(s.received).toBe(bytes);
  expect(s.digest()).toBe(sha256(payload));
}

describe('mux flow control end to end', () => {
  it('a stalled reader stalls only its own stream, and the gateway takes a bounded amount from the source', async () => {
    const total = 64 * MiB;
    const source = await backend('tcp', sourceHandler(total));
    const echo = await backend('unix', echoHandler);
    const gw = await server({ source: source.target, echo: echo.target });
    const c = await client(gw.url);

    const stalled = c.open('source', { keep: false });
    stalled.pause(); // never consume: the gateway gets no credit beyond the initial window
    await within(stalled.opened, 5000, 'OPEN_OK');
    await waitFor(() => source.accepted.length === 1, 5000, 'the source connection');
    const taken = await settled(() => bytesSent(source.accepted[0]!), 300, 15_000);

    // Only the initial window crossed the session; the rest sits in socket buffers, not in the gateway.
    expect(stalled.received).toBeLessThanOrEqual(INITIAL_WINDOW);
    expect(taken).toBeLessThan(16 * MiB);
    expect(stalled.isClosed).toBe(false);

    // A neighbour on the same session still round-trips, both ways, more than a window's worth.
    await echoRoundTrip(c, 'echo', 3 * MiB);

    // Reading again drains the whole source, byte-exact.
    const hash = createHash('sha256');
    const expected = patternBytes(total);
    stalled.resume();
    await within(stalled.ended$, 20_000, 'the source to finish');
    stalled.end(); // the stream is half-closed until we end our side too
    expect(await within(stalled.closed, 5000, 'the stream to close')).toBeUndefined();
    expect(stalled.received).toBe(total);
    hash.update(expected);
    expect(stalled.digest()).toBe(hash.digest('hex'));
  });

  it('a backend that does not read gets no more than the credit the gateway gives', async () => {
    // The backend never reads: the gateway must stop granting credit once the socket's buffers are full.
    const stuck = await backend('tcp', (socket) => {
      socket.pause();
      socket.on('end', () => socket.end());
    });
    const gw = await server({ stuck: stuck.target });
    const c = await client(gw.url);
    const s = c.open('stuck', { keep: false });
    const writing = s.write(patternBytes(64 * MiB)).catch(() => {});
    const sent = await settled(() => s.stream.credit.sent, 300, 15_000);
    // Kernel buffers plus one window, far from everything offered.
    expect(sent).toBeLessThan(24 * MiB);
    s.stream.reset();
    await writing;
    stuck.accepted[0]!.resume(); // read again, so the backend notices the gateway closed its socket
    await waitFor(() => stuck.connections.size === 0, 5000, 'backend connection to close');
  });
});

describe('mux backend reads wait in the kernel while the WebSocket is full (server/read-gate.ts)', () => {
  it('32 downloads at once: byte-exact, little held in the gateway, and a small echo beside them still answers', async () => {
    const each = 4 * MiB;
    const streams = 32;
    const source = await backend('tcp', sourceHandler(each));
    const echo = await backend('tcp', echoHandler);
    const gw = await bareServer({ source: source.target, echo: echo.target }, {});
    const c = await client(gw.url);
    const downloads = Array.from({ length: streams }, () => c.open('source', { keep: false }));
    const allEnded = Promise.all(downloads.map((d) => d.ended$));
    let done = false;
    void allEnded.finally(() => (done = true));

    // Bytes the gateway's engine holds for the client (copied out of backend reads), sampled each loop turn.
    let mostHeld = 0;
    let samples = 0;
    const sampling = (async () => {
      for (let i = 0; i < 50_000 && !done; i++) {
        await new Promise((r) => setImmediate(r));
        let held = 0;
        for (const s of gw.sessions![0]!.session.openStreams()) held += s.bufferedAmount;
        mostHeld = Math.max(mostHeld, held);
        samples++;
      }
    })();

    // An interactive stream on the same session: small round trips while the downloads fill the WebSocket.
    const term = c.open('echo');
    let answeredDuring = 0;
    for (let i = 1; i <= 20; i++) {
      await term.write(Buffer.from(`line ${i}\n`));
      await waitFor(() => term.received === term.stream.bytesOut, 10_000, `echo of line ${i}`);
      if (!done) answeredDuring++;
    }
    expect(term.data().toString()).toBe(Array.from({ length: 20 }, (_, i) => `line ${i + 1}\n`).join(''));

    await within(allEnded, 30_000, 'every download to end');
    await sampling;
    const expected = sha256(patternBytes(each));
    for (const d of downloads) {
      expect(d.received).toBe(each);
      expect(d.digest()).toBe(expected);
    }
    // Without the gate every backend read past the transport's limit was copied and held: 6-7 MiB here (up to a
    // 256 KiB read per stream); with it, what the last few granted reads could not send (measured: 0.75 MiB).
    expect(samples).toBeGreaterThan(10);
    expect(mostHeld).toBeLessThan(2 * MiB);
    // The echo was not held back until the downloads were over (its reads are small: the gate never queues it).
    expect(answeredDuring).toBeGreaterThan(0);
  });
});

describe('mux session end releases everything', () => {
  /** Start traffic on many streams (echo, sink, source over TCP and Unix); returns the streams. */
  async function busySession(): Promise<{ c: MuxClient; gw: MuxServer; backends: Backend[]; streams: ClientStream[] }> {
    const echo = await backend('tcp', echoHandler);
    const sink = await backend('unix', sinkHandler([]));
    const source = await backend('unix', sourceHandler(1024 * MiB));
    const backends = [echo, sink, source];
    const gw = await server({ echo: echo.target, sink: sink.target, source: source.target });
    const c = await client(gw.url);
    const streams: ClientStream[] = [];
    for (let i = 0; i < 8; i++) {
      for (const route of ['echo', 'sink', 'source']) {
        const s = c.open(route, { keep: false });
        if (route !== 'source') void s.write(patternBytes(16 * MiB)).catch(() => {});
        streams.push(s);
      }
    }
    await waitFor(() => backends.every((b) => b.connections.size === 8), 5000, 'every backend connection');
    await waitFor(() => streams.every((s) => s.received > 0 || s.stream.credit.sent > INITIAL_WINDOW), 10_000, 'traffic on every stream');
    return { c, gw, backends, streams };
  }

  async function expectReleased(gw: MuxServer, backends: Backend[], streams: ClientStream[]): Promise<void> {
    await waitFor(() => backends.every((b) => b.connections.size === 0), 5000, 'every backend connection to close');
    await waitFor(() => gw.app.websocketServer.clients.size === 0, 5000, 'the server WebSocket to close');
    await within(Promise.all(streams.map((s) => s.closed)), 5000, 'every client stream to close');
  }

  it('when the client terminates the WebSocket', async () => {
    const { c, gw, backends, streams } = await busySession();
    c.ws.terminate();
    expect((await within(c.closed, 5000, 'close')).code).toBe(1006);
    await expectReleased(gw, backends, streams);
  });

  it('when the client closes the session normally', async () => {
    const { c, gw, backends, streams } = await busySession();
    expect((await c.close()).code).toBe(1000);
    await expectReleased(gw, backends, streams);
  });

  it('when the client breaks the protocol mid-transfer', async () => {
    const { c, gw, backends, streams } = await busySession();
    c.ws.send(Buffer.from([0x04, 0x00, 0x7f, 0xff, 0xff, 0xff, 0x00])); // DATA for a stream never opened
    expect((await within(c.closed, 5000, 'close')).code).toBe(1002);
    await expectReleased(gw, backends, streams);
  });
});

describe('mux protocol violations close the session', () => {
  async function session(): Promise<{ c: MuxClient; gw: MuxServer }> {
    const echo = await backend('tcp', echoHandler);
    const gw = await server({ echo: echo.target });
    return { gw, c: await client(gw.url) };
  }

  it('a text message: 1003', async () => {
    const { c } = await session();
    c.ws.send('hello');
    expect((await within(c.closed, 5000, 'close')).code).toBe(1003);
  });

  it('a binary message that is not a frame: 1002', async () => {
    const { c } = await session();
    c.ws.send(Buffer.from([0xff, 0x00, 0x00, 0x00, 0x00, 0x01]));
    expect((await within(c.closed, 5000, 'close')).code).toBe(1002);
  });

  it('a garbage WebSocket frame (reserved opcode): 1002', async () => {
    const { c } = await session();
    // Written under ws: FIN + opcode 0x3 (reserved), masked, empty payload.
    (c.ws as unknown as { _socket: net.Socket })._socket.write(Buffer.from([0x83, 0x80, 0, 0, 0, 0]));
    expect((await within(c.closed, 5000, 'close')).code).toBe(1002);
  });

  it('an unmasked frame from the client: 1002 (RFC 6455 5.1), also after frames the gateway read itself', async () => {
    const { c } = await session();
    const s = c.open('echo');
    await within(s.opened, 5000, 'OPEN_OK');
    await s.write(Buffer.from('first'));
    await waitFor(() => s.received === 5, 5000, 'the echo');
    // A well-formed DATA frame for the open stream, but not masked: the gateway's frame reader leaves it to ws.
    const data = Buffer.from([0x04, 0x00, 0, 0, 0, 0, 0x61]);
    data.writeUInt32BE(s.id, 2);
    (c.ws as unknown as { _socket: net.Socket })._socket.write(Buffer.concat([Buffer.from([0x82, data.length]), data]));
    expect((await within(c.closed, 5000, 'close')).code).toBe(1002);
    expect(s.received).toBe(5);
  });

  it('a DATA frame written one byte at a time arrives byte-exact, and the stream goes on', async () => {
    const { c } = await session();
    const s = c.open('echo');
    await within(s.opened, 5000, 'OPEN_OK');
    const payload = noiseBytes(1000, 11);
    const message = Buffer.alloc(6 + payload.length);
    message.set([0x04, 0x00], 0);
    message.writeUInt32BE(s.id, 2);
    message.set(payload, 6);
    const key = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
    const frame = Buffer.concat([Buffer.from([0x82, 0x80 | 126, message.length >> 8, message.length & 0xff]), key, message.map((b, i) => b ^ key[i & 3]!)]);
    const socket = (c.ws as unknown as { _socket: net.Socket })._socket;
    socket.setNoDelay(true);
    for (const byte of frame) {
      socket.write(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    // The engine does not know of these bytes (the credit is ours to spend), so count them at the echo.
    await waitFor(() => s.received === payload.length, 5000, 'the echo');
    await s.write(Buffer.from('after'));
    await waitFor(() => s.received === payload.length + 5, 5000, 'the next echo');
    expect(s.data().equals(Buffer.concat([payload, Buffer.from('after')]))).toBe(true);
    expect(c.session.closed).toBe(false);
  });

  it('a message over MAX_FRAME_BYTES: 1009', async () => {
    const { c, gw } = await session();
    c.ws.send(Buffer.alloc(MAX_FRAME_BYTES + 1));
    expect((await within(c.closed, 5000, 'close')).code).toBe(1009);
    await waitFor(() => gw.app.websocketServer.clients.size === 0, 5000, 'the server WebSocket to close');
  });

  it('an oversized frame is refused from its header alone, before its payload arrives', async () => {
    const { c } = await session();
    // A binary frame announcing 512 KiB (below the server's raw-mode maxPayload, above MAX_FRAME_BYTES), masked,
    // with none of its payload: only a header check can answer it.
    const header = Buffer.alloc(14);
    header[0] = 0x82;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(512n * 1024n, 2);
    (c.ws as unknown as { _socket: net.Socket })._socket.write(header);
    expect((await within(c.closed, 5000, 'close')).code).toBe(1009);
  });

  it('a message of exactly MAX_FRAME_BYTES is a frame like any other', async () => {
    const { c } = await session();
    const s = c.open('echo');
    await within(s.opened, 5000, 'OPEN_OK');
    const frame = Buffer.alloc(MAX_FRAME_BYTES, 0x61);
    frame.set([0x04, 0x00], 0);
    frame.writeUInt32BE(s.id, 2);
    c.ws.send(frame); // a full DATA frame, sent by hand (the engine does not know: its credit is ours to spend)
    await waitFor(() => s.received === MAX_FRAME_BYTES - 6, 5000, 'the echo');
    expect(c.session.closed).toBe(false);
  });
});

describe('mux limits', () => {
  it('refuses OPENs past the rate limit with SOCKGATE_ERR_STREAM_RATE_LIMITED', async () => {
    const echo = await backend('tcp', echoHandler);
    const gw = await bareServer({ echo: echo.target }, { limits: { opensPerSecond: 1, opensBurst: 3 } });
    const c = await client(gw.url);
    const streams = Array.from({ length: 5 }, () => c.open('echo'));
    const errs = await within(Promise.all(streams.slice(3).map((s) => s.closed)), 5000, 'refusals');
    expect(errs.map((e) => e?.code)).toEqual(['SOCKGATE_ERR_STREAM_RATE_LIMITED', 'SOCKGATE_ERR_STREAM_RATE_LIMITED']);
    await within(Promise.all(streams.slice(0, 3).map((s) => s.opened)), 5000, 'the burst to open');
  });

  it('closes an idle session with 4002 (SOCKGATE_ERR_SESSION_IDLE_TIMEOUT)', async () => {
    const echo = await backend('tcp', echoHandler);
    const gw = await bareServer({ echo: echo.target }, { limits: { idleTimeoutMs: 300 } });
    const c = await client(gw.url);
    const s = c.open('echo');
    await within(s.opened, 5000, 'OPEN_OK');
    expect((await within(c.closed, 5000, 'idle close')).code).toBe(4002);
    expect((await s.closed)?.code).toBe('SOCKGATE_ERR_SESSION_IDLE_TIMEOUT');
    await waitFor(() => echo.connections.size === 0, 5000, 'backend connection to close');
  });
});

describe('mux logging', () => {
  it('logs one line per session and per stream open and close', async () => {
    const lines: Record<string, unknown>[] = [];
    const logStream = { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) };
    const echo = await backend('tcp', echoHandler);
    const gateway = await createGateway(
      { listen: '127.0.0.1:0', routes: { echo: { target: echo.target } }, allowAnonymous: true },
      { logger: { level: 'info', stream: logStream } },
    );
    cleanups.push(() => gateway.close());
    const { url } = await gateway.listen();
    const c = await client(`${url.replace(/^http/, 'ws')}/mux`);
    const s = c.open('echo');
    await s.write(Buffer.from('hello'));
    s.end();
    await within(s.closed, 5000, 'stream close');
    const bad = c.open('nope');
    await within(bad.closed, 5000, 'OPEN_FAIL');
    await c.close();
    await waitFor(() => lines.some((l) => l.msg === 'mux session closed'), 5000, 'the session close line');
    const mux = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('mux '));
    expect(mux.map((l) => l.msg)).toEqual([
      'mux session open',
      'mux stream open',
      'mux stream closed',
      'mux stream closed',
      'mux session closed',
    ]);
    expect(mux[0]).toMatchObject({ remote: '127.0.0.1' });
    expect(mux[2]).toMatchObject({ route: 'echo', stream: 1, bytesIn: 5, bytesOut: 5 });
    expect(mux[2]!.err).toBeUndefined();
    expect(mux[3]).toMatchObject({ route: 'nope', stream: 3, err: 'SOCKGATE_ERR_ROUTE_UNKNOWN' });
    expect(mux[4]).toMatchObject({ streams: 2, bytesIn: 5, bytesOut: 5, code: 1000 });
    expect(typeof mux[4]!.ms).toBe('number');
  });
});
