/**
 * Operations against a real gateway on 127.0.0.1: Prometheus metrics counting real traffic, /readyz, the admin
 * listener, keepalive dropping dead peers, graceful drain (GOAWAY, early close, the deadline) and config reload.
 */
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { SUBPROTOCOL } from '../../shared/constants.js';
import { createGateway, type Gateway, type ListeningAddress } from '../../server/gateway.js';
import { type Backend, echoHandler, patternBytes, refusedPort, sha256, tcpBackend, waitFor } from '../helpers/backends.js';
import { metricValue, scrape, scrapeUntil } from '../helpers/metrics.js';
import { type CloseEvent, connectMux, within } from '../helpers/mux-client.js';

let echo: Backend;
let deadPort: number;
const open: Gateway[] = [];

beforeAll(async () => {
  echo = await tcpBackend(echoHandler);
  deadPort = await refusedPort();
});

afterAll(async () => {
  await echo.close();
});

afterEach(async () => {
  for (const gw of open.splice(0)) await gw.close();
});

/** A gateway on 127.0.0.1 (any `listen` given is replaced), anonymous, with routes `echo` and `dead`. */
async function start(config: Record<string, unknown> = {}): Promise<{ gw: Gateway; at: ListeningAddress; ws: string }> {
  const gw = await createGateway(
    {
      routes: { echo: { target: echo.target }, dead: { target: `tcp://127.0.0.1:${deadPort}` } },
      ...config,
      listen: '127.0.0.1:0',
    },
    { logger: false },
  );
  open.push(gw);
  const at = await gw.listen();
  return { gw, at, ws: at.url.replace(/^http/, 'ws') };
}

/** A raw-mode WebSocket, open. */
async function rawSocket(url: string, opts: { autoPong?: boolean } = {}): Promise<{ ws: WebSocket; closed: Promise<CloseEvent> }> {
  const ws = new WebSocket(url, opts);
  const closed = new Promise<CloseEvent>((resolve) => ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })));
  await within(
    new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    }),
    5000,
    `open ${url}`,
  );
  ws.on('error', () => {});
  return { ws, closed };
}

/** Send `data` over a raw connection to the echo route and wait for all of it to come back. */
async function rawEcho(ws: WebSocket, data: Buffer): Promise<Buffer> {
  const got: Buffer[] = [];
  let n = 0;
  const onMessage = (d: Buffer): void => {
    got.push(d);
    n += d.length;
  };
  ws.on('message', onMessage);
  for (let at = 0; at < data.length; at += 64 * 1024) ws.send(data.subarray(at, at + 64 * 1024));
  await waitFor(() => n >= data.length, 10_000, 'the raw echo');
  ws.off('message', onMessage);
  return Buffer.concat(got);
}

describe('metrics', () => {
  it('counts sessions, streams, failures by code, bytes by route and direction, and connect times', async () => {
    const { at, ws } = await start();
    const metricsUrl = `${at.url}/metrics`;
    const N = 300_000;
    const M = 200_000;

    // A mux stream moving N bytes each way, measured while it is still open (a long-lived stream).
    const client = await connectMux(`${ws}/mux`);
    const s = client.open('echo', { keep: false });
    await s.opened;
    await s.write(patternBytes(N));
    await waitFor(() => s.received >= N, 10_000, 'the mux echo');
    const during = await scrape(metricsUrl);
    expect(metricValue(during, 'sockgate_bytes_total', { route: 'echo', direction: 'to_backend' })).toBeGreaterThanOrEqual(N);
    expect(metricValue(during, 'sockgate_bytes_total', { route: 'echo', direction: 'to_client' })).toBeGreaterThanOrEqual(N);
    expect(metricValue(during, 'sockgate_streams_open', { route: 'echo' })).toBe(1);
    expect(metricValue(during, 'sockgate_sessions_open', { mode: 'mux', route: '' })).toBe(1);
    s.end();
    await within(s.closed, 5000, 'the mux stream close');

    // An unknown route (counted without the client's text) and a refused backend.
    const unknown = client.open('no-such-route');
    await expect(unknown.opened).rejects.toMatchObject({ code: 'SOCKGATE_ERR_ROUTE_UNKNOWN' });
    const refused = client.open('dead');
    await expect(refused.opened).rejects.toMatchObject({ code: 'SOCKGATE_ERR_BACKEND_REFUSED' });

    // A raw connection moving M bytes each way.
    const raw = await rawSocket(`${ws}/raw/echo`);
    const back = await rawEcho(raw.ws, patternBytes(M));
    expect(sha256(back)).toBe(sha256(patternBytes(M)));
    expect(metricValue(await scrape(metricsUrl), 'sockgate_sessions_open', { mode: 'raw', route: 'echo' })).toBe(1);
    raw.ws.close();
    await within(raw.closed, 5000, 'the raw close');
    await client.close();

    // Everything closed: the gauges are back to 0 (the server sees the closes a moment after the clients) and the
    // counters hold the totals.
    const after = await scrapeUntil(
      metricsUrl,
      (x) => metricValue(x, 'sockgate_sessions_open', { mode: 'raw', route: 'echo' }) === 0 && metricValue(x, 'sockgate_sessions_open', { mode: 'mux', route: '' }) === 0,
    );
    expect(metricValue(after, 'sockgate_sessions_open', { mode: 'raw', route: 'echo' })).toBe(0);
    expect(metricValue(after, 'sockgate_sessions_open', { mode: 'mux', route: '' })).toBe(0);
    expect(metricValue(after, 'sockgate_streams_open', { route: 'echo' })).toBe(0);
    expect(metricValue(after, 'sockgate_sessions_opened_total', { mode: 'mux' })).toBe(1);
    expect(metricValue(after, 'sockgate_sessions_opened_total', { mode: 'raw' })).toBe(1);
    expect(metricValue(after, 'sockgate_bytes_total', { route: 'echo', direction: 'to_backend' })).toBeGreaterThanOrEqual(N + M);
    expect(metricValue(after, 'sockgate_bytes_total', { route: 'echo', direction: 'to_client' })).toBeGreaterThanOrEqual(N + M);
    expect(metricValue(after, 'sockgate_streams_opened_total', { route: 'echo' })).toBe(2);
    expect(metricValue(after, 'sockgate_streams_failed_total', { route: '(unknown)', code: 'SOCKGATE_ERR_ROUTE_UNKNOWN' })).toBe(1);
    expect(metricValue(after, 'sockgate_streams_failed_total', { route: 'dead', code: 'SOCKGATE_ERR_BACKEND_REFUSED' })).toBe(1);
    expect(metricValue(after, 'sockgate_backend_connect_seconds_count', { route: 'echo' })).toBe(2);
    // Client text never becomes a label.
    expect(after.some((x) => Object.values(x.labels).includes('no-such-route'))).toBe(false);
    // prom-client's process metrics come along.
    expect(after.some((x) => x.name === 'process_cpu_user_seconds_total')).toBe(true);
    expect(after.some((x) => x.name === 'nodejs_eventloop_lag_seconds')).toBe(true);
  });

  it('counts refused upgrades by code and engine-refused OPENs', async () => {
    const { at, ws } = await start({ limits: { maxStreamsPerSession: 1 } });
    await expect(rawSocket(`${ws}/raw/nope`)).rejects.toThrow(/404/);
    const client = await connectMux(`${ws}/mux`);
    const first = client.open('echo');
    await first.opened;
    const second = client.open('echo');
    await expect(second.opened).rejects.toMatchObject({ code: 'SOCKGATE_ERR_STREAM_TOO_MANY' });
    const samples = await scrape(`${at.url}/metrics`);
    expect(metricValue(samples, 'sockgate_upgrades_refused_total', { code: 'SOCKGATE_ERR_ROUTE_UNKNOWN' })).toBe(1);
    expect(metricValue(samples, 'sockgate_streams_failed_total', { route: 'echo', code: 'SOCKGATE_ERR_STREAM_TOO_MANY' })).toBe(1);
    await client.close();
  });

  it('keeps the registries of two gateways in one process apart', async () => {
    const a = await start();
    const b = await start();
    const raw = await rawSocket(`${a.ws}/raw/echo`);
    await rawEcho(raw.ws, Buffer.from('only on a'));
    expect(metricValue(await scrape(`${a.at.url}/metrics`), 'sockgate_sessions_opened_total', { mode: 'raw' })).toBe(1);
    expect(metricValue(await scrape(`${b.at.url}/metrics`), 'sockgate_sessions_opened_total', { mode: 'raw' })).toBe(0);
    raw.ws.close();
    await raw.closed;
  });
});

describe('health endpoints and the admin listener', () => {
  it('serves /metrics on the admin listener only, /healthz and /readyz on both', async () => {
    const { at } = await start({ admin: { listen: '127.0.0.1:0' } });
    expect(at.admin).toBeDefined();
    expect(at.admin!.port).not.toBe(at.port);
    const admin = at.admin!.url;
    expect((await fetch(`${at.url}/metrics`)).status).toBe(404);
    const metrics = await fetch(`${admin}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await metrics.text()).toContain('sockgate_sessions_open');
    for (const base of [at.url, admin]) {
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ status: 'ready' });
    }
    // The admin listener serves those three paths and nothing else.
    expect((await fetch(`${admin}/mux`)).status).toBe(404);
    expect((await fetch(`${admin}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('also serves /metrics on the main listener with metrics.public', async () => {
    const { at } = await start({ admin: { listen: '127.0.0.1:0' }, metrics: { public: true } });
    expect((await fetch(`${at.url}/metrics`)).status).toBe(200);
  });

  it('refuses a busy admin address with a clear error', async () => {
    const first = await start({ admin: { listen: '127.0.0.1:0' } });
    const gw = await createGateway({ routes: {}, listen: '127.0.0.1:0', admin: { listen: `127.0.0.1:${first.at.admin!.port}` } });
    open.push(gw);
    await expect(gw.listen()).rejects.toThrow(`cannot listen on admin address 127.0.0.1:${first.at.admin!.port}: address in use`);
  });

  it('flips /readyz to 503 while draining, and closes the port', async () => {
    const { gw, at, ws } = await start({ admin: { listen: '127.0.0.1:0' } });
    const client = await connectMux(`${ws}/mux`);
    const s = client.open('echo', { keep: false });
    await s.opened;
    const drained = gw.drain(20_000);
    const ready = await fetch(`${at.admin!.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ status: 'draining' });
    expect((await fetch(`${at.admin!.url}/healthz`)).status).toBe(200);
    expect(metricValue(await scrape(`${at.admin!.url}/metrics`), 'sockgate_draining')).toBe(1);
    // The main port no longer accepts connections.
    await expect(fetch(`${at.url}/healthz`, { signal: AbortSignal.timeout(5000) })).rejects.toThrow();
    s.end();
    await within(s.closed, 5000, 'the stream to finish');
    expect((await within(drained, 10_000, 'the drain')).atDeadline).toBe(0);
  });
});

describe('keepalive', () => {
  const limits = { keepaliveIntervalMs: 100, keepaliveTimeoutMs: 200 };

  it('closes a raw client that stops answering pings with 4001, and keeps one that answers', async () => {
    const { at, ws } = await start({ limits });
    const healthy = await rawSocket(`${ws}/raw/echo`);
    const dead = await rawSocket(`${ws}/raw/echo`, { autoPong: false });
    const closed = await within(dead.closed, 5000, 'the dead raw client to be closed');
    expect(closed.code).toBe(4001);
    // The one that answers saw several pings and is still there, and still carries bytes.
    expect(healthy.ws.readyState).toBe(WebSocket.OPEN);
    expect((await rawEcho(healthy.ws, Buffer.from('still here'))).toString()).toBe('still here');
    expect(metricValue(await scrape(`${at.url}/metrics`), 'sockgate_keepalive_timeouts_total', { mode: 'raw' })).toBe(1);
    healthy.ws.close();
    await healthy.closed;
  });

  it('closes a mux client that does not answer app PINGs with 4001 (WebSocket pongs are not enough)', async () => {
    const { at, ws } = await start({ limits });
    const healthy = await connectMux(`${ws}/mux`);
    // Speaks the subprotocol, answers WebSocket pings (ws's autoPong), but runs no session engine.
    const mute = new WebSocket(`${ws}/mux`, [SUBPROTOCOL]);
    const closed = new Promise<CloseEvent>((resolve) => mute.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })));
    mute.on('error', () => {});
    const { code, reason } = await within(closed, 5000, 'the mute mux client to be closed');
    expect(code).toBe(4001);
    expect(reason).toMatch(/ping/i);
    expect(healthy.ws.readyState).toBe(WebSocket.OPEN);
    const s = healthy.open('echo');
    await s.opened;
    await s.write(Buffer.from('alive'));
    s.end();
    await within(s.ended$, 5000, 'the echo');
    expect(s.data().toString()).toBe('alive');
    expect(metricValue(await scrape(`${at.url}/metrics`), 'sockgate_keepalive_timeouts_total', { mode: 'mux' })).toBe(1);
    await healthy.close();
  });
});

describe('drain', () => {
  it('sends GOAWAY, closes idle sessions at once, lets a stream finish intact, then closes with 1001', async () => {
    const { gw, ws } = await start();
    const idle = await connectMux(`${ws}/mux`);
    const busy = await connectMux(`${ws}/mux`);
    const s = busy.open('echo', { keep: false });
    await s.opened;
    const data = patternBytes(2 * 1024 * 1024);
    await s.write(data.subarray(0, 512 * 1024));

    const drained = gw.drain(20_000);
    // The session with nothing under way goes at once; the busy one is told.
    expect((await within(idle.closed, 5000, 'the idle session')).code).toBe(1001);
    await waitFor(() => busy.session.goingAway, 5000, 'GOAWAY');
    expect(() => busy.session.open('echo')).toThrow(/shutting down/);
    // The stream under way finishes, every byte intact.
    await s.write(data.subarray(512 * 1024));
    s.end();
    await within(s.ended$, 10_000, 'the echo to end');
    expect(await within(s.closed, 5000, 'the stream close')).toBeUndefined();
    expect(s.received).toBe(data.length);
    expect(s.digest()).toBe(sha256(data));
    // Then its session is closed right away, not at the deadline.
    expect((await within(busy.closed, 5000, 'the busy session')).code).toBe(1001);
    expect(await within(drained, 5000, 'the drain')).toEqual({ finished: 2, atDeadline: 0 });
  });

  it('closes what is left at the deadline: mux 4003, raw 1001', async () => {
    const { gw, ws } = await start();
    const client = await connectMux(`${ws}/mux`);
    const s = client.open('echo');
    await s.opened;
    const raw = await rawSocket(`${ws}/raw/echo`);
    await rawEcho(raw.ws, Buffer.from('busy'));
    const result = await within(gw.drain(300), 10_000, 'the drain');
    expect(result).toEqual({ finished: 0, atDeadline: 2 });
    const mux = await within(client.closed, 5000, 'the mux close');
    expect(mux.code).toBe(4003);
    expect(await within(s.closed, 5000, 'the stream close')).toMatchObject({ code: 'SOCKGATE_ERR_SESSION_DRAIN_TIMEOUT' });
    expect((await within(raw.closed, 5000, 'the raw close')).code).toBe(1001);
    // The backends were released.
    await waitFor(() => echo.connections.size === 0, 5000, 'backend connections to close');
  });

  it('does not wait for idle HTTP connections: a used keep-alive one and a spare one that never sent a request', async () => {
    // The default handshakeTimeoutMs (10 s) would end the spare connection eventually; close must not wait for it.
    const { gw, at } = await start({ limits: { handshakeTimeoutMs: 60_000 } });
    const sockets = await Promise.all(
      [true, false].map(async (used) => {
        const socket = net.connect({ host: '127.0.0.1', port: at.port });
        const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
        socket.on('error', () => {});
        await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
        if (used) {
          socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n');
          await new Promise<void>((resolve) => socket.once('data', () => resolve()));
        }
        return { closed }; // wrapped: an async function returning the promise itself would wait for it
      }),
    );
    await within(gw.drain(), 5000, 'the drain with idle connections open');
    await within(Promise.all(sockets.map((s) => s.closed)), 5000, 'the idle connections to be closed');
  });

  it('refuses upgrades with 503 from the moment a drain begins', async () => {
    const { gw, at, ws } = await start();
    gw.app.sockgate.beginDrain();
    expect((await fetch(`${at.url}/readyz`)).status).toBe(503);
    await expect(rawSocket(`${ws}/raw/echo`)).rejects.toThrow(/503/);
    await expect(connectMux(`${ws}/mux`)).rejects.toThrow(/503/);
    expect(metricValue(await scrape(`${at.url}/metrics`), 'sockgate_upgrades_refused_total', { code: 'SOCKGATE_ERR_SESSION_GOING_AWAY' })).toBe(2);
  });
});

describe('reload', () => {
  const T1 = 'token-one-abcdefghijklmnop';
  const T2 = 'token-two-abcdefghijklmnop';
  const auth = (routes: string[]) => ({ tokens: [{ name: 'one', token: T1, routes }] });

  it('swaps routes and credentials in for new OPENs without dropping open streams', async () => {
    const { gw, ws } = await start({ auth: auth(['echo']) });
    const client = await connectMux(`${ws}/mux`, { headers: { authorization: `Bearer ${T1}` } });
    const kept = client.open('echo', { keep: false });
    await kept.opened;
    await kept.write(patternBytes(100_000));
    await expect(client.open('echo2').opened).rejects.toMatchObject({ code: 'SOCKGATE_ERR_ROUTE_FORBIDDEN' });

    // A new route, and the token allowed to open it: the open session sees both.
    const result = await gw.reload({
      routes: { echo: { target: echo.target }, echo2: { target: echo.target } },
      auth: auth(['echo', 'echo2']),
      listen: '127.0.0.1:0',
    });
    expect(result.restartNeeded).toEqual([]);
    expect([...gw.config.routes.keys()]).toEqual(['echo', 'echo2']);
    const added = client.open('echo2');
    await added.opened;
    await added.write(Buffer.from('new route'));
    added.end();
    await within(added.ended$, 5000, 'the new route echo');
    expect(added.data().toString()).toBe('new route');

    // The token is revoked: the open session opens nothing more, its open stream goes on, new sessions are refused.
    const revoked = await gw.reload({ routes: { echo: { target: echo.target } }, auth: { tokens: [{ name: 'two', token: T2, routes: ['*'] }] } });
    expect(revoked.revoked).toBe(1);
    await expect(client.open('echo').opened).rejects.toMatchObject({ code: 'SOCKGATE_ERR_ROUTE_FORBIDDEN' });
    await expect(connectMux(`${ws}/mux`, { headers: { authorization: `Bearer ${T1}` } })).rejects.toThrow(/401/);
    const other = await connectMux(`${ws}/mux`, { headers: { authorization: `Bearer ${T2}` } });
    await other.close();
    await kept.write(patternBytes(300_000).subarray(100_000));
    kept.end();
    await within(kept.ended$, 10_000, 'the kept stream to finish');
    expect(kept.received).toBe(300_000);
    expect(kept.digest()).toBe(sha256(patternBytes(300_000)));
    await client.close();
  });

  it('keeps the running config when the new one is invalid, and keeps listen addresses (restart needed)', async () => {
    const { gw, at } = await start();
    const before = gw.config;
    await expect(gw.reload({ routes: { bad: { target: 'ftp://nope' } } })).rejects.toMatchObject({ code: 'SOCKGATE_ERR_CONFIG_INVALID' });
    await expect(gw.reload({ routes: {}, limits: { nope: 1 } })).rejects.toThrow(/limits\.nope: unknown key/);
    expect(gw.config).toBe(before);
    const samples = await scrape(`${at.url}/metrics`);
    expect(metricValue(samples, 'sockgate_config_reloads_total', { result: 'error' })).toBe(2);

    const moved = await gw.reload({ listen: '127.0.0.1:1', routes: { echo: { target: echo.target } }, limits: { maxMessageBytes: 100_000 } });
    expect(moved.restartNeeded).toEqual(['listen', 'limits.maxMessageBytes']);
    expect(gw.config.listen).toEqual(before.listen);
    expect(gw.config.limits.maxMessageBytes).toBe(before.limits.maxMessageBytes);
    expect([...gw.config.routes.keys()]).toEqual(['echo']);
    // A raw route removed by the reload is gone for new connections.
    await expect(rawSocket(`${at.url.replace(/^http/, 'ws')}/raw/dead`)).rejects.toThrow(/404/);
  });

  it('applies new session limits to new sessions only', async () => {
    const { gw, at } = await start({ limits: { maxSessions: 2 } });
    const a = await rawSocket(`${at.url.replace(/^http/, 'ws')}/raw/echo`);
    const b = await rawSocket(`${at.url.replace(/^http/, 'ws')}/raw/echo`);
    await gw.reload({ routes: { echo: { target: echo.target } }, limits: { maxSessions: 1 } });
    // Both open sessions stay; a third is refused under the new limit.
    await expect(rawSocket(`${at.url.replace(/^http/, 'ws')}/raw/echo`)).rejects.toThrow(/503/);
    expect(a.ws.readyState).toBe(WebSocket.OPEN);
    expect(b.ws.readyState).toBe(WebSocket.OPEN);
    a.ws.close();
    b.ws.close();
    await Promise.all([a.closed, b.closed]);
  });
});
