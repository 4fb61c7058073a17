/**
 * The gateway's HTTP surface and lifecycle: health, subprotocol checks before the upgrade, the demo files, the
 * plugin inside a user's own Fastify app, shutdown and logging. Raw mode itself is in raw.test.ts.
 */
import { existsSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyWebsocket from '@fastify/websocket';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { SUBPROTOCOL } from '../../shared/constants.js';
import type { ConfigInput } from '../../server/config.js';
import { createGateway, type Gateway } from '../../server/gateway.js';
import { sockgatePlugin } from '../../server/plugin.js';
import { closeSocket, tryUpgrade } from '../helpers/attack.js';
import { waitFor } from '../helpers/backends.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Open a WebSocket; resolves with it, or with the HTTP status and body of a refused upgrade. */
function upgrade(url: string, protocols?: string[]): Promise<{ ws?: WebSocket; status?: number; body?: string }> {
  return new Promise((resolvePromise, reject) => {
    const ws = new WebSocket(url, protocols);
    const timer = setTimeout(() => reject(new Error(`no answer from ${url}`)), 5000);
    ws.once('open', () => {
      clearTimeout(timer);
      resolvePromise({ ws });
    });
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        clearTimeout(timer);
        resolvePromise({ status: res.statusCode, body });
      });
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function closeWs(ws: WebSocket): Promise<number> {
  return new Promise((r) => {
    ws.once('close', (code: number) => r(code));
    ws.close();
  });
}

let gw: TestGateway | undefined;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await gw?.close();
  gw = undefined;
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('gateway HTTP surface', () => {
  it('answers GET /healthz with 200 { status: ok }', async () => {
    gw = await startGateway();
    const res = await fetch(`${gw.url}/healthz`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('refuses /mux without the sockgate.v1 subprotocol with HTTP 400 before the upgrade', async () => {
    gw = await startGateway();
    for (const protocols of [undefined, ['binary'], ['sockgate.v2']]) {
      const r = await upgrade(`${gw.wsUrl}/mux`, protocols);
      expect(r.status).toBe(400);
      expect(JSON.parse(r.body!)).toMatchObject({ code: 'SOCKGATE_ERR_PROTOCOL' });
      expect(JSON.parse(r.body!).message).toContain(SUBPROTOCOL);
    }
  });

  it('selects exactly sockgate.v1 on /mux', async () => {
    gw = await startGateway();
    const r = await upgrade(`${gw.wsUrl}/mux`, ['binary', SUBPROTOCOL]);
    expect(r.ws).toBeDefined();
    expect(r.ws!.protocol).toBe(SUBPROTOCOL);
    await closeWs(r.ws!);
  });

  it('does not serve the demo unless demo: true', async () => {
    gw = await startGateway({ routes: { echo: { target: 'builtin:echo' } } });
    expect((await fetch(`${gw.url}/`)).status).toBe(404);
    expect((await fetch(`${gw.url}/sockgate.js`)).status).toBe(404);
  });

  it('serves the demo page and the SDK bundle with demo: true (or says to build them)', async () => {
    gw = await startGateway({ demo: true, routes: { echo: { target: 'builtin:echo' } } });
    const page = await fetch(`${gw.url}/`);
    const bundle = await fetch(`${gw.url}/sockgate.js`);
    if (existsSync(join(root, 'dist/demo/index.html'))) {
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    } else {
      expect(page.status).toBe(404);
      expect(await page.text()).toContain('npm run build');
    }
    if (existsSync(join(root, 'dist/browser/sockgate.js'))) {
      expect(bundle.status).toBe(200);
      expect(bundle.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    } else {
      expect(bundle.status).toBe(404);
    }
    // Only plain file names from dist/demo/: no way out of it.
    for (const path of ['/..%2Fpackage.json', '/%2e%2e%2fpackage.json', '/package.json', '/.env']) {
      expect((await fetch(`${gw.url}${path}`)).status, path).toBe(404);
    }
  });
});

describe('lifecycle', () => {
  it('registers into a user Fastify app next to its own routes, and releases everything on close', async () => {
    const app = Fastify();
    cleanups.push(() => app.close());
    app.get('/mine', async () => 'user route');
    await app.register(sockgatePlugin, { config: { routes: { echo: { target: 'builtin:echo' } } } });
    await app.listen({ host: '127.0.0.1', port: 0 });
    // Not encapsulated: the websocket decorator is visible to the user's app.
    expect(app.websocketServer).toBeDefined();
    const port = (app.server.address() as net.AddressInfo).port;
    expect(await (await fetch(`http://127.0.0.1:${port}/mine`)).text()).toBe('user route');

    const r = await upgrade(`ws://127.0.0.1:${port}/raw/echo`);
    let got = '';
    r.ws!.on('message', (d: Buffer) => (got += d.toString()));
    const closed = new Promise<number>((res) => r.ws!.once('close', (code: number) => res(code)));
    r.ws!.send(Buffer.from('hi'));
    await waitFor(() => got === 'hi', 5000, 'echo');
    await app.close();
    expect(await closed).toBe(1001);
  });

  it('fails registration with the bad key named', async () => {
    const app = Fastify();
    cleanups.push(() => app.close());
    const config = { limits: { openTimeoutMs: 'soon' } } as unknown as ConfigInput;
    await expect(app.register(sockgatePlugin, { config }).ready()).rejects.toMatchObject({
      code: 'SOCKGATE_ERR_CONFIG_INVALID',
      message: expect.stringContaining('limits.openTimeoutMs'),
    });
    await expect(createGateway({ routes: { x: { target: 'nope' } } })).rejects.toThrow(/routes\.x\.target/);
  });

  it('says so when the app already has @fastify/websocket', async () => {
    const app = Fastify();
    cleanups.push(() => app.close());
    await app.register(fastifyWebsocket);
    await expect(app.register(sockgatePlugin, { config: {} }).ready()).rejects.toThrow(/registers @fastify\/websocket itself/);
  });

  it('reports a busy port as "cannot listen on HOST:PORT: address in use"', async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => busy.close(() => r())));
    const port = (busy.address() as net.AddressInfo).port;
    const g: Gateway = await createGateway({ listen: `127.0.0.1:${port}` });
    cleanups.push(() => g.close());
    await expect(g.listen()).rejects.toMatchObject({
      message: `cannot listen on 127.0.0.1:${port}: address in use`,
      code: 'EADDRINUSE',
    });
  });

  it('logs one line per raw connection open and close with route, remote address, bytes and duration', async () => {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const g = await createGateway(
      { listen: '127.0.0.1:0', routes: { echo: { target: 'builtin:echo' } } },
      { logger: { level: 'info', stream } },
    );
    cleanups.push(() => g.close());
    const { url } = await g.listen();
    const r = await upgrade(`${url.replace(/^http/, 'ws')}/raw/echo`);
    let got = 0;
    r.ws!.on('message', (d: Buffer) => (got += d.length));
    r.ws!.send(Buffer.alloc(1000));
    await waitFor(() => got === 1000, 5000, 'echo');
    await closeWs(r.ws!);
    await waitFor(() => lines.some((l) => l.msg === 'raw connection closed'), 5000, 'close line');
    const open = lines.filter((l) => l.msg === 'raw connection open');
    const closed = lines.filter((l) => l.msg === 'raw connection closed');
    expect(open).toHaveLength(1);
    expect(closed).toHaveLength(1);
    expect(open[0]).toMatchObject({ raw: 'echo', remote: '127.0.0.1', target: 'builtin:echo' });
    expect(closed[0]).toMatchObject({ raw: 'echo', remote: '127.0.0.1', bytesIn: 1000, bytesOut: 1000, code: 1005 });
    expect(typeof closed[0]!.ms).toBe('number');
    // Upgrades are not logged twice by Fastify's own request lines.
    expect(lines.filter((l) => l.msg === 'incoming request')).toHaveLength(0);
  });
});

describe('memory held per idle session', () => {
  /** The collector: vitest.config.ts starts test processes with --expose-gc. */
  function collector(): () => void {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) throw new Error('globalThis.gc is missing: run the tests with node --expose-gc (vitest.config.ts does)');
    return gc;
  }

  it('an open raw, mux or agent session does not keep the HTTP request of its upgrade alive', async () => {
    const token = 'memory-test-agent-token-0123456789';
    const services = ['s0', 's1', 's2', 's3', 's4'];
    gw = await startGateway({ routes: { echo: { target: 'builtin:echo' } }, allowAnonymous: true, auth: { agents: [{ name: 'a', token, services }] } });
    const refs: WeakRef<IncomingMessage>[] = [];
    gw.gateway.app.server.on('upgrade', (req: IncomingMessage) => refs.push(new WeakRef(req)));
    const sockets: WebSocket[] = [];
    for (const [path, protocols, headers] of [
      ['/raw/echo', ['binary']],
      ['/mux', [SUBPROTOCOL]],
      ['/agent?services=', [SUBPROTOCOL], { authorization: `Bearer ${token}` }],
    ] as const) {
      for (let i = 0; i < 5; i++) {
        const r = await tryUpgrade(`${gw.wsUrl}${path}${path.endsWith('=') ? services[i] : ''}`, { protocols: [...protocols], headers });
        expect(r.ws, `${path}: HTTP ${r.status} ${r.body}`).toBeDefined();
        sockets.push(r.ws!);
      }
    }
    expect(refs).toHaveLength(15);
    const gc = collector();
    // deref() keeps its target alive until the current job ends: collect only in turns where nothing was deref'd.
    const alive = async (): Promise<number[]> => {
      await new Promise((r) => setTimeout(r, 10));
      gc();
      await new Promise((r) => setTimeout(r, 10));
      return refs.flatMap((r, i) => (r.deref() !== undefined ? [i] : []));
    };
    let left = await alive();
    for (let round = 0; round < 4 && left.length > 0; round++) left = await alive();
    expect(left).toEqual([]);
    // Still open on both ends: only the requests went.
    expect(gw.gateway.app.websocketServer.clients.size).toBe(15);
    for (const ws of sockets) expect(ws.readyState).toBe(WebSocket.OPEN);
    await Promise.all(sockets.map((ws) => closeSocket(ws)));
  });

  it("keeps an embedding app's own 'error' listeners on the WebSocket, and replaces only the library's", async () => {
    gw = await startGateway({ routes: { echo: { target: 'builtin:echo' } }, allowAnonymous: true });
    const mine = (): void => {};
    gw.gateway.app.websocketServer.on('connection', (ws: WebSocket) => ws.on('error', mine));
    const r = await tryUpgrade(`${gw.wsUrl}/raw/echo`, { protocols: ['binary'] });
    const [server] = [...gw.gateway.app.websocketServer.clients] as WebSocket[];
    const listeners = server!.listeners('error');
    expect(listeners).toHaveLength(3); // the app's, the gateway's instead of @fastify/websocket's, raw mode's own
    expect(listeners[0]).toBe(mine);
    // @fastify/websocket's own (which holds the request) is gone: it is the one that calls its errorHandler.
    expect(listeners.filter((l) => String(l).includes('errorHandler.call'))).toEqual([]);
    await closeSocket(r.ws!);
  });
});
