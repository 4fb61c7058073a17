/**
 * The SDK session over a real WebSocket (ws, 127.0.0.1) against an in-process server-role engine
 * (test/helpers/mux-server.ts): handshake, events, ping, flow control and many sockets at once.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { openSession, type SessionCloseEvent, type SockgateSession } from '../../client/node.js';
import { INITIAL_WINDOW } from '../../shared/constants.js';
import { SockgateError } from '../../shared/errors.js';
import { patternBytes, refusedPort, sha256, waitFor } from '../helpers/backends.js';
import { noiseBytes, readAll, rejectionOf, startMuxServer, writeAll, type MuxServer } from '../helpers/mux-server.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(opts?: Parameters<typeof startMuxServer>[0]): Promise<MuxServer> {
  const s = await startMuxServer(opts);
  cleanups.push(() => s.close());
  return s;
}

async function session(s: MuxServer, options?: Parameters<typeof openSession>[1]): Promise<SockgateSession> {
  const sess = await openSession(s.url, options);
  cleanups.push(() => sess.close());
  return sess;
}

function nextClose(sess: SockgateSession): Promise<SessionCloseEvent> {
  return new Promise((resolve) => sess.addEventListener('close', resolve, { once: true }));
}

/** A TCP server that accepts and never answers: a handshake that never completes. */
async function silentServer(): Promise<string> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => sockets.add(s));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => srv.close(() => r()));
  });
  return `ws://127.0.0.1:${(srv.address() as net.AddressInfo).port}/mux`;
}

describe('openSession: handshake', () => {
  it('opens with sockgate.v1; the token travels in an offered subprotocol by default, never in the URL', async () => {
    const s = await server();
    const sess = await session(s, { token: 'sekret' });
    expect(sess.state).toBe('open');
    expect(s.requests[0]).toBe('/mux');
    expect(sess.url).not.toContain('sekret');
  });

  it("sends the token as access_token with tokenCarrier 'query'; url masks it", async () => {
    const s = await server();
    const sess = await session(s, { token: 'sekret', tokenCarrier: 'query' });
    expect(sess.state).toBe('open');
    expect(s.requests[0]).toBe('/mux?access_token=sekret');
    expect(sess.url).not.toContain('sekret');
  });

  it('accepts http(s) URLs for the mux endpoint', async () => {
    const s = await server();
    const sess = await openSession(`${s.httpUrl}/mux`);
    cleanups.push(() => sess.close());
    expect(sess.state).toBe('open');
  });

  it('refuses a server that selects another subprotocol, or none', async () => {
    for (const subprotocol of ['sockgate.v2', null]) {
      const s = await server({ subprotocol });
      const err = await rejectionOf(openSession(s.url));
      expect(err.code).toBe('SOCKGATE_ERR_SDK_HANDSHAKE');
    }
  });

  it('reports a refused upgrade with SOCKGATE_ERR_SDK_HANDSHAKE and the HTTP status', async () => {
    const s = await server({ rejectStatus: 401 });
    const err = await rejectionOf(openSession(s.url, { token: 'bad-token' }));
    expect(err.code).toBe('SOCKGATE_ERR_SDK_HANDSHAKE');
    expect(err.message).toContain('401');
    expect(err.message).not.toContain('bad-token');
  });

  it('reports a connection refused with SOCKGATE_ERR_SDK_HANDSHAKE', async () => {
    const port = await refusedPort();
    const err = await rejectionOf(openSession(`ws://127.0.0.1:${port}/mux`));
    expect(err.code).toBe('SOCKGATE_ERR_SDK_HANDSHAKE');
    expect(err.message).toContain('ECONNREFUSED');
  });

  it('gives up after openTimeoutMs', async () => {
    const url = await silentServer();
    const err = await rejectionOf(openSession(url, { openTimeoutMs: 200 }));
    expect(err.code).toBe('SOCKGATE_ERR_SDK_HANDSHAKE');
    expect(err.message).toContain('200 ms');
  });

  it('rejects with signal.reason when aborted before or during the handshake', async () => {
    const url = await silentServer();
    const reason = new Error('user left');
    expect(await rejectionOf(openSession(url, { signal: AbortSignal.abort(reason) }))).toBe(reason);
    const ac = new AbortController();
    const opening = openSession(url, { signal: ac.signal });
    setTimeout(() => ac.abort(reason), 20);
    expect(await rejectionOf(opening)).toBe(reason);
  });

  it('closes the session when the signal aborts after the handshake', async () => {
    const s = await server();
    const ac = new AbortController();
    const sess = await session(s, { signal: ac.signal });
    const closed = nextClose(sess);
    ac.abort();
    const ev = await closed;
    expect(ev.code).toBe(1000);
    expect(ev.error).toBeUndefined();
    expect(sess.state).toBe('closed');
  });

  it('rejects a maxWindowBytes outside the protocol range', async () => {
    const s = await server();
    await expect(openSession(s.url, { maxWindowBytes: 1000 })).rejects.toBeInstanceOf(RangeError);
  });
});

describe('SockgateSession', () => {
  it('measures the round-trip time with ping()', async () => {
    const sess = await session(await server());
    expect(sess.rtt).toBeUndefined();
    const rtt = await sess.ping();
    expect(rtt).toBeGreaterThanOrEqual(0);
    expect(sess.rtt).toBe(rtt);
  });

  it('round-trips 4 MiB through echo, hashed, with reads and writes concurrent', async () => {
    const sess = await session(await server());
    const socket = sess.connect('echo');
    const { readable, writable, route } = await socket.opened;
    expect(route).toBe('echo');
    const data = noiseBytes(4 * 1024 * 1024, 11);
    const [echoed] = await Promise.all([readAll(readable), writeAll(writable, data, 50_000)]);
    expect(sha256(echoed)).toBe(sha256(data));
    await socket.closed;
    expect(sess.socketCount).toBe(0);
  });

  it('runs 40 sockets at once, each hashed end to end', async () => {
    const sess = await session(await server());
    const results = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const data = noiseBytes(100_000 + i * 997, i + 1);
        const socket = sess.connect('echo');
        const [echoed] = await Promise.all([readAll(socket.readable), writeAll(socket.writable, data, 8192)]);
        await socket.closed;
        return sha256(echoed) === sha256(data);
      }),
    );
    expect(results.every(Boolean)).toBe(true);
  });

  it('half-closes both ways: our FIN reaches the server, its FIN ends our readable', async () => {
    const s = await server();
    const sess = await session(s);
    const sink = sess.connect('sink');
    const data = noiseBytes(300_000, 2);
    await writeAll(sink.writable, data);
    expect(await readAll(sink.readable)).toHaveLength(0); // the sink ends its side after our FIN
    await sink.closed;
    expect(s.ctx.sinkResults).toEqual([{ bytes: data.length, sha256: sha256(data) }]);

    const source = sess.connect('source-70000');
    expect(sha256(await readAll(source.readable))).toBe(sha256(patternBytes(70_000)));
    await source.writable.close();
    await source.closed;
  });

  it('a reader that stops reading withholds credit over a real WebSocket; a neighbour is unaffected', async () => {
    const s = await server();
    const sess = await session(s);
    const total = 4 * 1024 * 1024;
    const slow = sess.connect(`source-${total}`);
    await slow.opened;
    const stream = () => s.ctx.streams.find((x) => x.route === `source-${total}`)!.stream;
    await waitFor(() => stream().credit.sent === INITIAL_WINDOW, 5000, 'one window sent');

    // The stalled socket withholds only its own credit: another socket round-trips meanwhile.
    const echo = sess.connect('echo');
    const data = noiseBytes(INITIAL_WINDOW * 2, 9);
    const [echoed] = await Promise.all([readAll(echo.readable), writeAll(echo.writable, data)]);
    expect(sha256(echoed)).toBe(sha256(data));
    expect(stream().credit.sent).toBe(INITIAL_WINDOW);

    // Reading releases the rest, intact.
    expect(sha256(await readAll(slow.readable))).toBe(sha256(patternBytes(total)));
    await slow.writable.close();
    await slow.closed;
  });

  it('counts bytes waiting for credit in bufferedAmount', async () => {
    const sess = await session(await server());
    const socket = sess.connect('hold');
    const writer = socket.writable.getWriter();
    await writer.write(new Uint8Array(INITIAL_WINDOW));
    void writer.write(new Uint8Array(5000)).catch(() => {});
    await waitFor(() => socket.bufferedAmount === 5000, 5000, 'bytes held for credit');
    expect(sess.bufferedAmount).toBeGreaterThanOrEqual(5000);
    socket.reset();
    await socket.closed;
  });

  it('reports OPEN_FAIL codes: unknown route, refused backend, bad route name', async () => {
    const sess = await session(await server());
    expect((await rejectionOf(sess.connect('no-such-route').opened)).code).toBe('SOCKGATE_ERR_ROUTE_UNKNOWN');
    const refused = await rejectionOf(sess.connect('refused').opened);
    expect(refused.code).toBe('SOCKGATE_ERR_BACKEND_REFUSED');
    expect(refused.message).toContain('ECONNREFUSED');
    expect((await rejectionOf(sess.connect('bad name!').opened)).code).toBe('SOCKGATE_ERR_STREAM_BAD_OPEN');
    expect(sess.state).toBe('open');
  });

  it('emits goaway; new sockets fail with SOCKGATE_ERR_STREAM_SHUTTING_DOWN, open ones go on', async () => {
    const s = await server();
    const sess = await session(s);
    const open = sess.connect('echo');
    await open.opened;
    const goaway = new Promise<string>((resolve) => sess.addEventListener('goaway', (ev) => resolve(ev.error.code)));
    s.sessions[0]!.goAway();
    expect(await goaway).toBe('SOCKGATE_ERR_STREAM_SHUTTING_DOWN');
    expect((await rejectionOf(sess.connect('echo').opened)).code).toBe('SOCKGATE_ERR_STREAM_SHUTTING_DOWN');
    const data = noiseBytes(1000);
    const [echoed] = await Promise.all([readAll(open.readable), writeAll(open.writable, data)]);
    expect(echoed).toEqual(data);
  });

  it('emits error then close when the server ends the session with an error code', async () => {
    const s = await server();
    const sess = await session(s);
    const socket = sess.connect('echo');
    await socket.opened;
    const seen: string[] = [];
    sess.addEventListener('error', (ev) => seen.push(`error ${ev.error.code}`));
    const closed = nextClose(sess);
    s.sessions[0]!.close(new SockgateError('SOCKGATE_ERR_SESSION_IDLE_TIMEOUT'));
    const ev = await closed;
    expect(seen).toEqual(['error SOCKGATE_ERR_SESSION_IDLE_TIMEOUT']);
    expect(ev.code).toBe(4002);
    expect(ev.error?.code).toBe('SOCKGATE_ERR_SESSION_IDLE_TIMEOUT');
    expect((await rejectionOf(socket.closed)).code).toBe('SOCKGATE_ERR_SESSION_IDLE_TIMEOUT');
  });

  it('reports a lost connection as SOCKGATE_ERR_SESSION_LOST (1006)', async () => {
    const s = await server();
    const sess = await session(s);
    const closed = nextClose(sess);
    s.websockets[0]!.terminate();
    const ev = await closed;
    expect(ev.code).toBe(1006);
    expect(ev.error?.code).toBe('SOCKGATE_ERR_SESSION_LOST');
  });

  it('closes with 1003 when the server sends a text message', async () => {
    const s = await server();
    const sess = await session(s);
    const closed = nextClose(sess);
    s.websockets[0]!.send('hello');
    const ev = await closed;
    expect(ev.code).toBe(1003);
    expect(ev.error?.code).toBe('SOCKGATE_ERR_PROTOCOL_TEXT_FRAME');
  });

  it('close() closes with 1000; open sockets end with SOCKGATE_ERR_SESSION_CLOSED; connect() after fails', async () => {
    const s = await server();
    const sess = await session(s);
    const socket = sess.connect('echo');
    await socket.opened;
    const closed = nextClose(sess);
    await sess.close();
    const ev = await closed;
    expect([ev.code, ev.error]).toEqual([1000, undefined]);
    expect(sess.state).toBe('closed');
    expect((await rejectionOf(socket.closed)).code).toBe('SOCKGATE_ERR_SESSION_CLOSED');
    expect((await rejectionOf(sess.connect('echo').opened)).code).toBe('SOCKGATE_ERR_SDK_NOT_CONNECTED');
    await waitFor(() => s.sessions[0]!.closed, 5000, 'server session closed');
    await sess.close(); // idempotent
  });
});
