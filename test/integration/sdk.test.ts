/**
 * The Node SDK through the real gateway to real loopback backends (TCP and Unix): bytes intact, half-close both
 * ways, error codes from the registry, toDuplex.
 */
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterEach, describe, expect, it } from 'vitest';
import { openSession, toDuplex, type SockgateSession } from '../../client/node.js';
import {
  echoHandler,
  patternBytes,
  refusedPort,
  sha256,
  sinkHandler,
  sourceHandler,
  tcpBackend,
  unixBackend,
  waitFor,
  type Backend,
} from '../helpers/backends.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { noiseBytes, readAll, rejectionOf, writeAll } from '../helpers/mux-server.js';

const MiB = 1024 * 1024;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function backend(b: Promise<Backend>): Promise<Backend> {
  const started = await b;
  cleanups.push(() => started.close());
  return started;
}

/** A gateway with the given routes (anonymous access on: auth is tested by the gateway's own tests). */
async function gateway(routes: Record<string, string>): Promise<TestGateway> {
  const gw = await startGateway({
    allowAnonymous: true,
    routes: Object.fromEntries(Object.entries(routes).map(([name, target]) => [name, { target }])),
  });
  cleanups.push(() => gw.close());
  return gw;
}

async function session(gw: TestGateway): Promise<SockgateSession> {
  const s = await openSession(`${gw.wsUrl}/mux`);
  cleanups.push(() => s.close());
  return s;
}

describe('SDK through the gateway', () => {
  it('authenticates with a token in either carrier; without it the handshake is refused', async () => {
    const echo = await backend(tcpBackend(echoHandler));
    const token = 'sdk-test-token-0123456789';
    const gw = await startGateway({
      routes: { echo: { target: echo.target } },
      auth: { tokens: [{ name: 'sdk', token, routes: ['echo'] }] },
    });
    cleanups.push(() => gw.close());
    for (const tokenCarrier of ['protocol', 'query'] as const) {
      const s = await openSession(`${gw.wsUrl}/mux`, { token, tokenCarrier });
      cleanups.push(() => s.close());
      const socket = s.connect('echo');
      const { readable, writable } = await socket.opened;
      const writer = writable.getWriter();
      await writer.write(new TextEncoder().encode(tokenCarrier));
      await writer.close();
      expect(new TextDecoder().decode(await readAll(readable))).toBe(tokenCarrier);
    }
    const refused = await rejectionOf(openSession(`${gw.wsUrl}/mux`));
    expect(refused.code).toBe('SOCKGATE_ERR_SDK_HANDSHAKE');
    expect(refused.message).toContain('401');
  });

  it('round-trips bytes to a TCP echo backend', async () => {
    const echo = await backend(tcpBackend(echoHandler));
    const s = await session(await gateway({ echo: echo.target }));
    const socket = s.connect('echo');
    const { readable, writable, route } = await socket.opened;
    expect(route).toBe('echo');
    const writer = writable.getWriter();
    const reader = readable.getReader();
    await writer.write(new TextEncoder().encode('hello, backend'));
    const got: number[] = [];
    for (let i = 0; i < 100 && got.length < 14; i++) got.push(...(await reader.read()).value!);
    expect(new TextDecoder().decode(new Uint8Array(got))).toBe('hello, backend');
    await writer.close();
    expect((await reader.read()).done).toBe(true);
    await socket.closed;
    await waitFor(() => echo.connections.size === 0, 5000, 'the backend connection to close');
  });

  it('carries 3 MiB each way through TCP echo, hashed', async () => {
    const echo = await backend(tcpBackend(echoHandler));
    const s = await session(await gateway({ echo: echo.target }));
    const socket = s.connect('echo');
    const data = noiseBytes(3 * MiB + 17, 21);
    const [echoed] = await Promise.all([readAll(socket.readable), writeAll(socket.writable, data, 40_000)]);
    expect(echoed.length).toBe(data.length);
    expect(sha256(echoed)).toBe(sha256(data));
    await socket.closed;
  });

  it('carries 2 MiB through a Unix-socket echo backend, hashed', async () => {
    const echo = await backend(unixBackend(echoHandler));
    const s = await session(await gateway({ echo: echo.target }));
    const socket = s.connect('echo');
    const data = noiseBytes(2 * MiB, 5);
    const [echoed] = await Promise.all([readAll(socket.readable), writeAll(socket.writable, data)]);
    expect(sha256(echoed)).toBe(sha256(data));
    await socket.closed;
  });

  it('half-closes our side: the backend sees EOF after every byte, and its FIN ends our readable', async () => {
    const results: { bytes: number; sha256: string }[] = [];
    const sink = await backend(tcpBackend(sinkHandler(results)));
    const s = await session(await gateway({ sink: sink.target }));
    const socket = s.connect('sink');
    const data = noiseBytes(MiB + 1, 8);
    await writeAll(socket.writable, data);
    expect(await readAll(socket.readable)).toHaveLength(0);
    await socket.closed;
    expect(results).toEqual([{ bytes: data.length, sha256: sha256(data) }]);
  });

  it("half-closes the backend's side: its EOF ends our readable while we can still write", async () => {
    const total = 2 * MiB;
    const source = await backend(tcpBackend(sourceHandler(total)));
    const s = await session(await gateway({ source: source.target }));
    const socket = s.connect('source');
    const { readable, writable } = await socket.opened;
    expect(sha256(await readAll(readable))).toBe(sha256(patternBytes(total)));
    const writer = writable.getWriter();
    await writer.write(new Uint8Array([1, 2, 3])); // the backend's side is closed, ours is not
    await writer.close();
    await socket.closed;
  });

  it('close() delivers everything written before it, then ends cleanly', async () => {
    const results: { bytes: number; sha256: string }[] = [];
    const sink = await backend(tcpBackend(sinkHandler(results)));
    const s = await session(await gateway({ sink: sink.target }));
    const socket = s.connect('sink');
    const data = noiseBytes(MiB, 31);
    const writer = socket.writable.getWriter();
    for (let at = 0; at < data.length; at += 100_000) void writer.write(data.subarray(at, at + 100_000));
    writer.releaseLock();
    await socket.close();
    expect(results).toEqual([{ bytes: data.length, sha256: sha256(data) }]);
  });

  it('rejects an unknown route with SOCKGATE_ERR_ROUTE_UNKNOWN', async () => {
    const s = await session(await gateway({}));
    const socket = s.connect('nope');
    expect((await rejectionOf(socket.opened)).code).toBe('SOCKGATE_ERR_ROUTE_UNKNOWN');
    expect((await rejectionOf(socket.closed)).code).toBe('SOCKGATE_ERR_ROUTE_UNKNOWN');
    expect(s.state).toBe('open');
  });

  it('rejects a refused backend with SOCKGATE_ERR_BACKEND_REFUSED, errno in the message', async () => {
    const port = await refusedPort();
    const s = await session(await gateway({ down: `tcp://127.0.0.1:${port}` }));
    const err = await rejectionOf(s.connect('down').opened);
    expect(err.code).toBe('SOCKGATE_ERR_BACKEND_REFUSED');
    expect(err.message).toContain('ECONNREFUSED');
  });

  it('reaches the builtin echo route', async () => {
    const s = await session(await gateway({ echo: 'builtin:echo' }));
    const socket = s.connect('echo');
    const data = noiseBytes(100_000, 3);
    const [echoed] = await Promise.all([readAll(socket.readable), writeAll(socket.writable, data)]);
    expect(sha256(echoed)).toBe(sha256(data));
  });

  it('measures the round-trip time to the gateway', async () => {
    const s = await session(await gateway({}));
    expect(await s.ping()).toBeGreaterThanOrEqual(0);
  });

  it('reports the gateway shutting down as a close with 1001', async () => {
    const echo = await backend(tcpBackend(echoHandler));
    const gw = await gateway({ echo: echo.target });
    const s = await session(gw);
    const closed = new Promise<number>((resolve) => s.addEventListener('close', (ev) => resolve(ev.code), { once: true }));
    await gw.close();
    expect(await closed).toBe(1001);
    expect(s.state).toBe('closed');
  });
});

describe('toDuplex through the gateway', () => {
  it('pipes 1 MiB through a Node Duplex to a TCP echo backend', async () => {
    const echo = await backend(tcpBackend(echoHandler));
    const s = await session(await gateway({ echo: echo.target }));
    const duplex = toDuplex(s.connect('echo'));
    const data = noiseBytes(MiB, 13);
    const [, received] = await Promise.all([pipeline(Readable.from([data]), duplex), buffer(duplex)]);
    expect(sha256(received)).toBe(sha256(data));
  });

  it('surfaces the registry code on the Duplex error', async () => {
    const port = await refusedPort();
    const s = await session(await gateway({ down: `tcp://127.0.0.1:${port}` }));
    const duplex = toDuplex(s.connect('down'));
    duplex.resume();
    const [err] = (await once(duplex, 'error')) as [Error & { code?: string }];
    expect(err.code).toBe('SOCKGATE_ERR_BACKEND_REFUSED');
  });
});
