/**
 * Resource limits of "secure by default", attacked over real sockets on 127.0.0.1: oversized, malformed and text
 * messages, OPEN floods and OPEN+RESET floods, session slots per address and in total, a slowloris handshake and
 * idle sessions. Over a limit only the offending stream or session is closed, with a clear code, and a good
 * client is served afterwards.
 */
import net from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MAX_FRAME_BYTES, SUBPROTOCOL } from '../../shared/constants.js';
import { closeOf, closeSocket, expectMuxEcho, expectRawEcho, expectRefused, muxEcho, tryUpgrade } from '../helpers/attack.js';
import { type Backend, echoHandler, tcpBackend, waitFor } from '../helpers/backends.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { type ClientStream, type MuxClient, connectMux, within } from '../helpers/mux-client.js';

let echo: Backend;
let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  cleanups = [];
});

beforeAll(async () => {
  echo = await tcpBackend(echoHandler);
  return () => echo.close();
});

/** An anonymous loopback gateway (the default) with route `echo` and the given limits. */
async function gateway(limits: Record<string, number> = {}): Promise<TestGateway> {
  const gw = await startGateway({ routes: { echo: { target: echo.target } }, limits });
  cleanups.push(() => gw.close());
  return gw;
}

async function mux(gw: TestGateway): Promise<MuxClient> {
  const c = await connectMux(`${gw.wsUrl}/mux`);
  cleanups.push(() => c.close().catch(() => c.ws.terminate()));
  return c;
}

/** The raw socket under a ws client, to write WebSocket frames ws itself would refuse to send. */
function rawSocketOf(c: MuxClient): net.Socket {
  return (c.ws as unknown as { _socket: net.Socket })._socket;
}

describe('hostile messages close only the offending session', () => {
  it('an oversized message: 1009, in mux and in raw mode', async () => {
    const gw = await gateway({ maxMessageBytes: 100_000 });
    const c = await mux(gw);
    const neighbour = await mux(gw);
    c.ws.send(Buffer.alloc(MAX_FRAME_BYTES + 1));
    expect((await within(c.closed, 5000, 'close')).code).toBe(1009);
    const raw = await tryUpgrade(`${gw.wsUrl}/raw/echo`);
    raw.ws!.send(Buffer.alloc(100_001));
    expect((await closeOf(raw.ws!)).code).toBe(1009);
    // The other session on the same gateway never noticed.
    await muxEcho(neighbour);
    await expectRawEcho(`${gw.wsUrl}/raw/echo`);
  });

  it('garbage: a binary message that is no frame, and a reserved WebSocket opcode: 1002', async () => {
    const gw = await gateway();
    const c1 = await mux(gw);
    c1.ws.send(Buffer.from([0xff, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x01]));
    expect((await within(c1.closed, 5000, 'close')).code).toBe(1002);
    const c2 = await mux(gw);
    rawSocketOf(c2).write(Buffer.from([0x83, 0x80, 0, 0, 0, 0])); // FIN + opcode 0x3, masked, empty
    expect((await within(c2.closed, 5000, 'close')).code).toBe(1002);
    const c3 = await mux(gw);
    c3.ws.send(Buffer.from([0x01, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x65, 0x63, 0x68, 0x6f])); // OPEN with an even id
    expect((await within(c3.closed, 5000, 'close')).code).toBe(1002);
    await expectMuxEcho(`${gw.wsUrl}/mux`);
  });

  it('a text message: 1003, in mux and in raw mode', async () => {
    const gw = await gateway();
    const c = await mux(gw);
    c.ws.send('{"type":"open","route":"echo"}');
    expect((await within(c.closed, 5000, 'close')).code).toBe(1003);
    const raw = await tryUpgrade(`${gw.wsUrl}/raw/echo`);
    raw.ws!.send('text');
    expect((await closeOf(raw.ws!)).code).toBe(1003);
    await expectMuxEcho(`${gw.wsUrl}/mux`);
    await expectRawEcho(`${gw.wsUrl}/raw/echo`);
  });
});

describe('OPEN and RESET rate per session', () => {
  it('an OPEN burst past opensBurst is refused with RATE_LIMITED; the same session opens again later', async () => {
    const gw = await gateway({ opensPerSecond: 4, opensBurst: 4 });
    const c = await mux(gw);
    const streams = Array.from({ length: 6 }, () => c.open('echo'));
    const refused = await within(Promise.all(streams.slice(4).map((s) => s.closed)), 5000, 'the refusals');
    expect(refused.map((e) => e?.code)).toEqual(['SOCKGATE_ERR_STREAM_RATE_LIMITED', 'SOCKGATE_ERR_STREAM_RATE_LIMITED']);
    await within(Promise.all(streams.slice(0, 4).map((s) => s.opened)), 5000, 'the burst to open');
    for (const s of streams.slice(0, 4)) s.stream.reset();
    // The bucket refills at opensPerSecond: retry (bounded) until an OPEN goes through, on the same session.
    let later: ClientStream | undefined;
    for (let i = 0; i < 20 && !later; i++) {
      await new Promise((r) => setTimeout(r, 300));
      const s = c.open('echo');
      if (await within(s.opened.then(() => true, () => false), 5000, 'the answer to an OPEN')) later = s;
      else expect((await s.closed)?.code).toBe('SOCKGATE_ERR_STREAM_RATE_LIMITED');
    }
    expect(later).toBeDefined();
    await later!.write(Buffer.from('after the flood'));
    later!.end();
    expect(await within(later!.closed, 5000, 'the echo')).toBeUndefined();
    expect(later!.data().toString()).toBe('after the flood');
    expect(c.session.closed).toBe(false);
  });

  it('a peer RESET takes a token: the OPEN after it pays for it', async () => {
    // A burst of 2 at 1/s (a token back per second; this takes milliseconds): one OPEN and its RESET spend it.
    const gw = await gateway({ opensPerSecond: 1, opensBurst: 2 });
    const c = await mux(gw);
    const first = c.open('echo');
    await within(first.opened, 5000, 'the first OPEN');
    first.stream.reset();
    const second = c.open('echo');
    expect((await within(second.closed, 5000, 'the answer to the second OPEN'))?.code).toBe('SOCKGATE_ERR_STREAM_RATE_LIMITED');
  });

  it('an OPEN+RESET flood is held to the rate (backend connects bounded), then the session is closed with 1008', async () => {
    const flood = await tcpBackend(echoHandler);
    cleanups.push(() => flood.close());
    const gw = await startGateway({ routes: { echo: { target: flood.target } }, limits: { opensPerSecond: 5, opensBurst: 5 } });
    cleanups.push(() => gw.close());
    const c = await mux(gw);
    const codes = new Map<string, number>();
    let sent = 0;
    for (let i = 0; i < 500 && !c.session.closed; i++) {
      const s = c.open('echo');
      void s.closed.then((e) => codes.set(e?.code ?? 'none', (codes.get(e?.code ?? 'none') ?? 0) + 1));
      s.stream.reset(); // rapid reset: open and cancel at once
      sent++;
      if (i % 50 === 49) await new Promise((r) => setImmediate(r));
    }
    const closed = await within(c.closed, 5000, 'the flood to close the session');
    expect(closed.code).toBe(1008);
    expect(closed.reason).toContain('OPEN flood');
    // The gateway connected at most the burst plus what the rate refilled meanwhile, not one per OPEN.
    expect(sent).toBeGreaterThan(20);
    expect(flood.accepted.length).toBeLessThanOrEqual(10);
    await waitFor(() => flood.connections.size === 0, 5000, 'the flood backend connections to close');
    await expectMuxEcho(`${gw.wsUrl}/mux`);
  });
});

describe('streams per session', () => {
  it('an OPEN past maxStreamsPerSession is refused with TOO_MANY; the open streams and the session go on', async () => {
    const gw = await gateway({ maxStreamsPerSession: 2 });
    const c = await mux(gw);
    const [a, b] = [c.open('echo'), c.open('echo')];
    await within(Promise.all([a.opened, b.opened]), 5000, 'two streams');
    const third = c.open('echo');
    expect((await within(third.closed, 5000, 'OPEN_FAIL'))?.code).toBe('SOCKGATE_ERR_STREAM_TOO_MANY');
    await a.write(Buffer.from('a'));
    a.end();
    expect(await within(a.closed, 5000, 'the first stream')).toBeUndefined();
    // A slot freed: the next OPEN on the same session works.
    await muxEcho(c);
    b.stream.reset();
  });
});

describe('session slots', () => {
  it('too many sessions from one address: 429, and a slot frees when a session closes', async () => {
    const gw = await gateway({ maxSessionsPerIp: 2, maxSessions: 100 });
    const a = await mux(gw);
    const b = await tryUpgrade(`${gw.wsUrl}/raw/echo`); // raw connections count too
    expect(b.ws).toBeDefined();
    await expectRefused(`${gw.wsUrl}/mux`, 429, 'SOCKGATE_ERR_LIMIT_SESSIONS_PER_IP', { protocols: [SUBPROTOCOL] });
    await expectRefused(`${gw.wsUrl}/raw/echo`, 429, 'SOCKGATE_ERR_LIMIT_SESSIONS_PER_IP');
    // The sessions already open are untouched.
    await muxEcho(a);
    await closeSocket(b.ws!);
    await expectServedOnceFree(`${gw.wsUrl}/raw/echo`);
  });

  it('too many sessions in total: 503, and a slot frees when a session closes', async () => {
    const gw = await gateway({ maxSessions: 2, maxSessionsPerIp: 100 });
    const a = await mux(gw);
    const b = await mux(gw);
    await expectRefused(`${gw.wsUrl}/mux`, 503, 'SOCKGATE_ERR_LIMIT_SESSIONS', { protocols: [SUBPROTOCOL] });
    await muxEcho(b);
    await a.close();
    await expectServedOnceFree(`${gw.wsUrl}/raw/echo`);
  });

  it('refused upgrades never hold a slot', async () => {
    const gw = await startGateway({
      routes: { echo: { target: echo.target } },
      auth: { tokens: [{ name: 'ops', token: 'slot-test-token-0123456789abcdef', routes: ['*'] }] },
      limits: { maxSessions: 1, maxSessionsPerIp: 1 },
    });
    cleanups.push(() => gw.close());
    for (let i = 0; i < 20; i++) await expectRefused(`${gw.wsUrl}/raw/echo`, 401, 'SOCKGATE_ERR_AUTH_MISSING');
    for (let i = 0; i < 5; i++) await expectRefused(`${gw.wsUrl}/raw/nope`, 404, 'SOCKGATE_ERR_ROUTE_UNKNOWN', { headers: { authorization: 'Bearer slot-test-token-0123456789abcdef' } });
    await expectRawEcho(`${gw.wsUrl}/raw/echo`, { headers: { authorization: 'Bearer slot-test-token-0123456789abcdef' } });
  });
});

describe('handshake and idle timeouts', () => {
  it('drops a client that sends a partial request line and stalls (slowloris), and serves others', async () => {
    const gw = await gateway({ handshakeTimeoutMs: 300 });
    const slow = await Promise.all(
      ['GET /mux HT', 'GET /raw/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n'].map(async (partial) => {
        const socket = net.connect(gw.port, '127.0.0.1');
        await new Promise<void>((r) => socket.once('connect', () => r()));
        socket.write(partial);
        let answer = '';
        socket.on('data', (d: Buffer) => (answer += d.toString()));
        socket.on('error', () => {});
        return { socket, answer: () => answer };
      }),
    );
    // Meanwhile a good client is served.
    await expectMuxEcho(`${gw.wsUrl}/mux`);
    for (const s of slow) {
      await within(new Promise<void>((r) => (s.socket.closed ? r() : s.socket.once('close', () => r()))), 10_000, 'the slow client to be dropped');
      expect(s.answer()).toMatch(/^(HTTP\/1\.1 408|$)/);
    }
    await expectRawEcho(`${gw.wsUrl}/raw/echo`);
  });

  it('closes an idle mux session with 4002, streams and backend included', async () => {
    const idle = await tcpBackend(echoHandler);
    cleanups.push(() => idle.close());
    const gw = await startGateway({ routes: { echo: { target: idle.target } }, limits: { idleTimeoutMs: 300 } });
    cleanups.push(() => gw.close());
    const c = await mux(gw);
    const s = c.open('echo');
    await within(s.opened, 5000, 'OPEN_OK');
    const closed = await within(c.closed, 5000, 'the idle close');
    expect(closed.code).toBe(4002);
    expect((await s.closed)?.code).toBe('SOCKGATE_ERR_SESSION_IDLE_TIMEOUT');
    await waitFor(() => idle.connections.size === 0, 5000, 'the backend connection to close');
    await expectMuxEcho(`${gw.wsUrl}/mux`);
  });

  it('closes an idle raw connection with 4002 and ends its backend', async () => {
    const idle = await tcpBackend(echoHandler);
    cleanups.push(() => idle.close());
    const gw = await startGateway({ routes: { echo: { target: idle.target } }, limits: { idleTimeoutMs: 300 } });
    cleanups.push(() => gw.close());
    const r = await tryUpgrade(`${gw.wsUrl}/raw/echo`);
    await waitFor(() => idle.connections.size === 1, 5000, 'the backend connection');
    const closed = await closeOf(r.ws!);
    expect(closed.code).toBe(4002);
    expect(closed.reason).toBe('idle timeout');
    await waitFor(() => idle.connections.size === 0, 5000, 'the backend connection to close');
    await expectRawEcho(`${gw.wsUrl}/raw/echo`);
  });
});

/**
 * The gateway frees a slot when the server side of the closed connection closes, which may come a moment after
 * the client saw its own close: retry a bounded number of times while the answer is a limit refusal.
 */
async function expectServedOnceFree(url: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const r = await tryUpgrade(url);
    if (r.ws) {
      await closeSocket(r.ws);
      await expectRawEcho(url);
      return;
    }
    expect([429, 503]).toContain(r.status);
    await new Promise((res) => setTimeout(res, 20));
  }
  throw new Error('no slot freed after the session closed');
}
