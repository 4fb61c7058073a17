/**
 * Local port forwarding (server/forward.ts) end to end: local TCP and Unix clients -> forward -> one mux session ->
 * a real gateway on 127.0.0.1 -> real backends. Bytes are checked by sha256; half-close both ways.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { startForward, type ForwardHandle, type ListenTarget } from '../../server/forward.js';
import { createLogger } from '../../server/log.js';
import { type Backend, echoHandler, sha256, tcpBackend, waitFor } from '../helpers/backends.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { within } from '../helpers/mux-client.js';

const MiB = 1024 * 1024;
const CLIENT_TOKEN = 'forward-client-token-0123456789ab';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function gateway(routes: Record<string, string>, auth?: object, limits?: object): Promise<TestGateway> {
  const gw = await startGateway({
    routes: Object.fromEntries(Object.entries(routes).map(([name, target]) => [name, { target }])),
    ...(auth && { auth }),
    ...(limits && { limits }),
  });
  cleanups.push(() => gw.close());
  return gw;
}

async function backend(handler: Parameters<typeof tcpBackend>[0]): Promise<Backend> {
  const b = await tcpBackend(handler);
  cleanups.push(() => b.close());
  return b;
}

async function forward(
  gw: TestGateway,
  route: string,
  opts: { listen?: ListenTarget; token?: string; opensPerSecond?: number; opensBurst?: number } = {},
): Promise<ForwardHandle> {
  const handle = await startForward({
    gateway: gw.wsUrl,
    route,
    listen: opts.listen ?? { host: '127.0.0.1', port: 0 },
    token: opts.token,
    opensPerSecond: opts.opensPerSecond,
    opensBurst: opts.opensBurst,
    connectTimeoutMs: 5000,
    log: createLogger({ level: 'silent' }),
  });
  cleanups.push(() => handle.close());
  return handle;
}

function connectTo(address: ListenTarget): net.Socket {
  return 'path' in address ? net.connect({ path: address.path, allowHalfOpen: true }) : net.connect({ host: address.host, port: address.port, allowHalfOpen: true });
}

/** Send `data`, half-close, and read until the peer's EOF: what came back. Bounded by `ms`. */
async function roundTrip(address: ListenTarget, data: Buffer, ms = 20_000): Promise<Buffer> {
  const socket = connectTo(address);
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((resolve, reject) => {
    socket.once('end', () => resolve());
    socket.once('error', reject);
    socket.once('close', () => resolve());
  });
  socket.end(data);
  await within(ended, ms, 'the forwarded connection to end');
  socket.destroy();
  return Buffer.concat(chunks);
}

describe('sockgate forward', () => {
  it('carries 20 concurrent connections over one shared session, each byte-exact (sha256)', async () => {
    const echo = await backend(echoHandler);
    const gw = await gateway({ echo: echo.target });
    const fwd = await forward(gw, 'echo');
    const sizes = Array.from({ length: 20 }, (_, i) => (i === 0 ? 1 : Math.floor(16 * 1024 * Math.pow(64, i / 19)))); // 1 B .. 1 MiB
    const runs = sizes.map(async (size) => {
      const payload = randomBytes(size);
      const back = await roundTrip(fwd.address, payload);
      return { size, got: back.length, same: sha256(back) === sha256(payload) };
    });
    const results = await Promise.all(runs);
    for (const r of results) expect(r, `connection of ${r.size} bytes`).toEqual({ size: r.size, got: r.size, same: true });
    expect(fwd.sessionsOpened).toBe(1);
    expect(echo.accepted).toHaveLength(20);
    await waitFor(() => echo.connections.size === 0 && fwd.connections === 0, 5000, 'connections released');
  });

  it("paces its OPENs to the gateway's rate limit: a burst of local connections waits instead of getting the session closed", async () => {
    const echo = await backend(echoHandler);
    // A strict gateway: 10 OPENs at once, then 40 a second; a session that keeps opening past that is closed (1008).
    const limits = { opensPerSecond: 40, opensBurst: 10 };
    const gw = await gateway({ echo: echo.target }, undefined, limits);
    const fwd = await forward(gw, 'echo', limits);
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const payload = Buffer.from(`connection ${i}`);
        const back = await roundTrip(fwd.address, payload).catch((err: Error) => Buffer.from(`failed: ${err.message}`));
        return back.equals(payload) ? undefined : `${i}: ${back.toString()}`;
      }),
    );
    expect(results.filter((failure) => failure !== undefined)).toEqual([]);
    expect(fwd.sessionsOpened).toBe(1);
    expect(echo.accepted).toHaveLength(50);
    expect(fwd.waiting).toBe(0);
  });

  it('half-closes both ways: the backend sees EOF and answers after it; its EOF ends the local socket', async () => {
    const seen: number[] = [];
    const svc = await backend((socket) => {
      let bytes = 0;
      socket.on('data', (c: Buffer) => (bytes += c.length));
      socket.on('end', () => {
        seen.push(bytes);
        socket.write('after your EOF: ');
        setTimeout(() => socket.end(`${bytes} bytes\n`), 50);
      });
    });
    const gw = await gateway({ svc: svc.target });
    const fwd = await forward(gw, 'svc');
    const back = await roundTrip(fwd.address, randomBytes(2 * MiB + 3));
    expect(back.toString()).toBe(`after your EOF: ${2 * MiB + 3} bytes\n`);
    expect(seen).toEqual([2 * MiB + 3]);
  });

  it('listens on a Unix socket and sends the token in the Authorization header', async () => {
    const echo = await backend(echoHandler);
    const gw = await gateway({ echo: echo.target }, { tokens: [{ name: 'fwd', token: CLIENT_TOKEN, routes: ['echo'] }] });
    const seenAuth: (string | undefined)[] = [];
    gw.gateway.app.websocketServer.on('connection', (_ws: WebSocket, req: IncomingMessage) => seenAuth.push(req.headers.authorization));
    const dir = mkdtempSync(join(tmpdir(), 'sockgate-fwd-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const fwd = await forward(gw, 'echo', { listen: { path: join(dir, 'fwd.sock') }, token: CLIENT_TOKEN });
    expect(fwd.address).toEqual({ path: join(dir, 'fwd.sock') });
    expect((await roundTrip(fwd.address, Buffer.from('over unix'))).toString()).toBe('over unix');
    expect(seenAuth).toEqual([`Bearer ${CLIENT_TOKEN}`]);
  });

  it('reopens the shared session lazily after it is lost', async () => {
    const echo = await backend(echoHandler);
    const gw = await gateway({ echo: echo.target });
    const fwd = await forward(gw, 'echo');
    expect(fwd.sessionsOpened).toBe(0); // lazily: nothing until a connection needs it
    expect((await roundTrip(fwd.address, Buffer.from('one'))).toString()).toBe('one');
    const clients = [...gw.gateway.app.websocketServer.clients];
    expect(clients).toHaveLength(1);
    clients[0]!.terminate();
    await waitFor(() => gw.gateway.app.websocketServer.clients.size === 0, 5000, 'the session to go');
    // The forwarder learns of the loss from its own socket: a connection right after may still race it, so retry a few times.
    let back = '';
    for (let i = 0; i < 20 && back !== 'two'; i++) {
      back = (await roundTrip(fwd.address, Buffer.from('two')).catch(() => Buffer.alloc(0))).toString();
      if (back !== 'two') await new Promise((r) => setTimeout(r, 50));
    }
    expect(back).toBe('two');
    expect(fwd.sessionsOpened).toBe(2);
  });

  it('closes the local connection when the gateway refuses the route or cannot be reached', async () => {
    const gw = await gateway({});
    const fwd = await forward(gw, 'nope');
    // Closed with nothing read back: an EOF, or a reset (the kernel resets a socket closed with unread input).
    const nothing = (p: Promise<Buffer>): Promise<number> =>
      p.then(
        (b) => b.length,
        (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? 0 : Promise.reject(err)),
      );
    expect(await nothing(roundTrip(fwd.address, Buffer.from('x')))).toBe(0);
    await gw.close();
    expect(await nothing(roundTrip(fwd.address, Buffer.from('y')))).toBe(0);
    await waitFor(() => fwd.connections === 0, 5000, 'local connections released');
  });
});
