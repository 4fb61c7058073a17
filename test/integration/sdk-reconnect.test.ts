/**
 * openSession(url, { reconnect }) against real gateways on 127.0.0.1: a restart on the same port, GOAWAY
 * (gateway.drain()) with an old stream finishing on the old connection, and a 401 that stops the retries.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { openSession, type ReconnectingSession } from '../../client/node.js';
import { createGateway, type Gateway } from '../../server/gateway.js';
import { echoHandler, patternBytes, tcpBackend, waitFor, type Backend } from '../helpers/backends.js';
import { readAll, rejectionOf, writeAll } from '../helpers/mux-server.js';

const TOKEN = 'token-one-abcdefghijklmnop';
const OTHER = 'token-two-abcdefghijklmnop';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function echoBackend(): Promise<Backend> {
  const b = await tcpBackend(echoHandler);
  cleanups.push(() => b.close());
  return b;
}

/** A gateway on 127.0.0.1:port (0: ephemeral), closed after the test. */
async function gatewayAt(port: number, echo: Backend, auth?: unknown): Promise<{ gw: Gateway; port: number }> {
  const config = {
    listen: `127.0.0.1:${port}`,
    routes: { echo: { target: echo.target } },
    ...(auth ? { auth } : { allowAnonymous: true }),
  };
  const gw = await createGateway(config, { logger: false });
  cleanups.push(() => gw.close());
  const listening = await gw.listen();
  return { gw, port: listening.port };
}

async function echoOnce(socket: ReturnType<ReconnectingSession['connect']>, data: Uint8Array): Promise<Uint8Array> {
  const { readable, writable } = await socket.opened;
  const [, got] = await Promise.all([writeAll(writable, data), readAll(readable)]);
  return got;
}

/**
 * A TCP proxy on 127.0.0.1 in front of the gateway whose current connections can be frozen: bytes stop flowing
 * both ways but nothing closes, as on a dead link. Connections made after freeze() flow normally.
 */
async function freezableProxy(targetPort: number): Promise<{ port: number; freeze(): void; close(): Promise<void> }> {
  const live = new Set<{ a: net.Socket; b: net.Socket }>();
  const server = net.createServer((a) => {
    const b = net.connect(targetPort, '127.0.0.1');
    const pair = { a, b };
    live.add(pair);
    a.pipe(b);
    b.pipe(a);
    const end = (): void => {
      live.delete(pair);
      a.destroy();
      b.destroy();
    };
    a.on('error', end).on('close', end);
    b.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const frozen: net.Socket[] = [];
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze() {
      for (const { a, b } of live) {
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
        frozen.push(a, b);
      }
      live.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of frozen) s.destroy();
        for (const { a, b } of live) {
          a.destroy();
          b.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

function record(s: ReconnectingSession): string[] {
  const events: string[] = [];
  s.addEventListener('reconnecting', (e) => events.push(`reconnecting:${e.attempt}`));
  s.addEventListener('reconnected', () => events.push('reconnected'));
  s.addEventListener('goaway', () => events.push('goaway'));
  s.addEventListener('close', () => events.push('close'));
  return events;
}

describe('SDK reconnect', () => {
  it('survives a gateway restart: open streams end with a code, a connect() made during the outage succeeds', async () => {
    const echo = await echoBackend();
    const first = await gatewayAt(0, echo);
    const s = await openSession(`ws://127.0.0.1:${first.port}/mux`, { reconnect: { initialDelayMs: 20, maxDelayMs: 100 }, openTimeoutMs: 5000 });
    cleanups.push(() => s.close());
    const events = record(s);
    expect(s.state).toBe('open');

    const open = s.connect('echo');
    await open.opened;
    await first.gw.close();
    await expect(rejectionOf(open.closed)).resolves.toMatchObject({ code: expect.stringMatching(/^SOCKGATE_ERR_SESSION_/) });
    await waitFor(() => s.state === 'reconnecting', 2000, 'reconnecting');

    const during = s.connect('echo'); // waits for the new connection
    await waitFor(() => events.filter((e) => e.startsWith('reconnecting')).length >= 2, 3000, 'a failed attempt');
    await gatewayAt(first.port, echo);

    const data = patternBytes(50_000);
    expect(Buffer.from(await echoOnce(during, data)).equals(Buffer.from(data))).toBe(true);
    expect(s.state).toBe('open');
    const reconnects = events.filter((e) => e.startsWith('reconnecting'));
    expect(reconnects[0]).toBe('reconnecting:1');
    expect(events.slice(0, reconnects.length + 1)).toEqual([...reconnects, 'reconnected']);

    await s.close();
    expect(s.state).toBe('closed');
    expect(events.at(-1)).toBe('close');
    await expect(rejectionOf(s.connect('echo').opened)).resolves.toMatchObject({ code: 'SOCKGATE_ERR_SDK_NOT_CONNECTED' });
  });

  it('after GOAWAY, new streams go to a new connection while an old stream finishes on the old one', async () => {
    const echo = await echoBackend();
    const first = await gatewayAt(0, echo);
    const s = await openSession(`ws://127.0.0.1:${first.port}/mux`, { reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
    cleanups.push(() => s.close());
    const events = record(s);

    const old = s.connect('echo');
    const { readable, writable } = await old.opened;
    const writer = writable.getWriter();
    await writer.write(new Uint8Array([1, 2, 3]));

    const drained = first.gw.drain(10_000); // GOAWAY; the listener closes, so the port is free for the next one
    await waitFor(() => events.includes('goaway'), 2000, 'goaway');
    await gatewayAt(first.port, echo);
    await waitFor(() => events.includes('reconnected'), 5000, 'reconnected');

    const fresh = s.connect('echo');
    expect(await echoOnce(fresh, new Uint8Array([9, 9]))).toEqual(new Uint8Array([9, 9]));
    expect(s.socketCount).toBe(1); // the old one, still open on the draining connection

    await writer.write(new Uint8Array([4]));
    await writer.close();
    expect(await readAll(readable)).toEqual(new Uint8Array([1, 2, 3, 4]));
    await old.closed;
    const result = await drained; // the old connection closed once its last stream ended
    expect(result).toBeDefined();
    expect(events.indexOf('goaway')).toBeLessThan(events.indexOf('reconnected'));
  });

  it('stops retrying on a 401 and closes with SOCKGATE_ERR_SDK_HANDSHAKE', async () => {
    const echo = await echoBackend();
    const auth = (token: string) => ({ tokens: [{ name: 'one', token, routes: ['echo'] }] });
    const first = await gatewayAt(0, echo, auth(TOKEN));
    const s = await openSession(`ws://127.0.0.1:${first.port}/mux`, { token: TOKEN, reconnect: { initialDelayMs: 20, maxDelayMs: 50 } });
    cleanups.push(() => s.close());
    const events = record(s);
    const closed = new Promise<{ error?: { code: string } }>((resolve) => s.addEventListener('close', (e) => resolve(e), { once: true }));

    await first.gw.close();
    await gatewayAt(first.port, echo, auth(OTHER)); // our token is no longer accepted
    const event = await closed;
    expect(event.error?.code).toBe('SOCKGATE_ERR_SDK_HANDSHAKE');
    expect(s.state).toBe('closed');
    const attempts = events.filter((e) => e.startsWith('reconnecting')).length;
    // Attempts that met the closed port are fine; the 401 ended it.
    await new Promise((r) => setTimeout(r, 200));
    expect(events.filter((e) => e.startsWith('reconnecting')).length).toBe(attempts);
  });

  it('keepalive: refreshes rtt, and a link that stops answering PINGs is replaced', async () => {
    const echo = await echoBackend();
    const { port } = await gatewayAt(0, echo);
    const proxy = await freezableProxy(port);
    cleanups.push(() => proxy.close());
    const s = await openSession(`ws://127.0.0.1:${proxy.port}/mux`, {
      reconnect: { initialDelayMs: 20, maxDelayMs: 50 },
      keepaliveIntervalMs: 50,
      keepaliveTimeoutMs: 200,
    });
    cleanups.push(() => s.close());
    const reasons: (string | undefined)[] = [];
    s.addEventListener('reconnecting', (e) => reasons.push(e.error?.code));
    await waitFor(() => s.rtt !== undefined, 3000, 'a keepalive PING answered');

    const open = s.connect('echo');
    await open.opened;
    proxy.freeze();
    await expect(rejectionOf(open.closed)).resolves.toMatchObject({ code: 'SOCKGATE_ERR_SESSION_PING_TIMEOUT' });
    expect(reasons[0]).toBe('SOCKGATE_ERR_SESSION_PING_TIMEOUT');
    await waitFor(() => s.state === 'open', 5000, 'reconnected through a fresh proxied connection');
    expect(await echoOnce(s.connect('echo'), new Uint8Array([7]))).toEqual(new Uint8Array([7]));
  });
});
