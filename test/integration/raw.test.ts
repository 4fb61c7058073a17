/**
 * Raw mode (PROTOCOL 10) end to end: a real gateway on 127.0.0.1, real `ws` clients, real TCP and Unix backends.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  type Backend,
  echoHandler,
  patternBytes,
  refusedPort,
  sha256,
  sinkHandler,
  sourceHandler,
  tcpBackend,
  unixBackend,
  waitFor,
} from '../helpers/backends.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const MiB = 1024 * 1024;

interface Client {
  ws: WebSocket;
  opened: Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
  chunks: Buffer[];
  bytes: () => number;
  text: () => string;
}

/** A ws client with every listener attached before anything can happen. */
function client(url: string, protocols?: string | string[]): Client {
  const ws = new WebSocket(url, protocols);
  const chunks: Buffer[] = [];
  let bytes = 0;
  ws.on('message', (data: Buffer) => {
    chunks.push(data);
    bytes += data.length;
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }));
  });
  opened.catch(() => {});
  return { ws, opened, closed, chunks, bytes: () => bytes, text: () => Buffer.concat(chunks).toString() };
}

/** Await p, failing after ms: every wait in these tests is bounded. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Send `data` in chunks, waiting while the client's own queue is over 1 MiB (bounded loop). */
async function sendPaced(ws: WebSocket, data: Buffer, chunk = 64 * 1024): Promise<void> {
  for (let at = 0; at < data.length; at += chunk) {
    ws.send(data.subarray(at, at + chunk));
    for (let i = 0; i < 1000 && ws.bufferedAmount > MiB; i++) await new Promise((r) => setTimeout(r, 5));
  }
}

const backends: Backend[] = [];
async function backend(kind: 'tcp' | 'unix', handler: Parameters<typeof tcpBackend>[0]): Promise<Backend> {
  const b = kind === 'tcp' ? await tcpBackend(handler) : await unixBackend(handler);
  backends.push(b);
  return b;
}

let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close();
  gw = undefined;
  for (const b of backends.splice(0)) await b.close();
});

describe('raw mode: round trips', () => {
  it('answers /healthz', async () => {
    gw = await startGateway({});
    const res = await fetch(`${gw.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('echoes through a TCP backend with no subprotocol, and releases the backend on close', async () => {
    const echo = await backend('tcp', echoHandler);
    gw = await startGateway({ routes: { echo: { target: echo.target } } });
    const c = client(`${gw.wsUrl}/raw/echo`);
    await within(c.opened, 5000, 'open');
    expect(c.ws.protocol).toBe('');
    c.ws.send(Buffer.from('hello, '));
    c.ws.send(Buffer.from('raw mode'));
    await waitFor(() => c.text() === 'hello, raw mode', 5000, 'echo');
    c.ws.close(1000);
    expect((await within(c.closed, 5000, 'close')).code).toBe(1000);
    await waitFor(() => echo.connections.size === 0, 5000, 'backend connection released');
    expect(echo.accepted).toHaveLength(1);
  });

  it('echoes through a Unix backend and selects `binary` when offered (noVNC)', async () => {
    const echo = await backend('unix', echoHandler);
    gw = await startGateway({ routes: { vnc: { target: echo.target } } });
    const c = client(`${gw.wsUrl}/raw/vnc`, ['binary']);
    await within(c.opened, 5000, 'open');
    expect(c.ws.protocol).toBe('binary');
    c.ws.send(Buffer.from([0, 1, 2, 255]));
    await waitFor(() => c.bytes() === 4, 5000, 'echo');
    expect(Buffer.concat(c.chunks)).toEqual(Buffer.from([0, 1, 2, 255]));
    c.ws.close();
    await within(c.closed, 5000, 'close');
  });

  it('reaches the built-in echo server', async () => {
    gw = await startGateway({ routes: { echo: { target: 'builtin:echo' } } });
    const c = client(`${gw.wsUrl}/raw/echo`);
    await within(c.opened, 5000, 'open');
    c.ws.send(Buffer.from('ping'));
    await waitFor(() => c.text() === 'ping', 5000, 'echo');
    c.ws.close();
    await within(c.closed, 5000, 'close');
  });

  it('carries 16 MiB client -> backend intact (sha256)', async () => {
    const results: { bytes: number; sha256: string }[] = [];
    const sink = await backend('tcp', sinkHandler(results));
    gw = await startGateway({ routes: { sink: { target: sink.target } } });
    const data = patternBytes(16 * MiB);
    const c = client(`${gw.wsUrl}/raw/sink`);
    await within(c.opened, 5000, 'open');
    await within(sendPaced(c.ws, data), 20_000, 'send 16 MiB');
    // The WebSocket's close ends the backend socket after the data: the sink sees EOF and reports.
    c.ws.close(1000);
    await waitFor(() => results.length === 1, 20_000, 'sink EOF');
    expect(results[0]).toEqual({ bytes: data.length, sha256: sha256(data) });
  });

  it('carries 16 MiB backend -> client intact (sha256), then closes 1000 at the backend EOF', async () => {
    const total = 16 * MiB;
    const source = await backend('tcp', sourceHandler(total));
    gw = await startGateway({ routes: { source: { target: source.target } } });
    const c = client(`${gw.wsUrl}/raw/source`);
    const hash = createHash('sha256');
    c.ws.on('message', (d: Buffer) => hash.update(d));
    const { code } = await within(c.closed, 20_000, 'close after 16 MiB');
    expect(code).toBe(1000);
    expect(c.bytes()).toBe(total);
    expect(hash.digest('hex')).toBe(sha256(patternBytes(total)));
  });
});

describe('raw mode: backend reads through recycled buffers (server/read-buffer.ts)', () => {
  it('never mixes bytes between concurrent connections, even when one stalls and resumes', async () => {
    // Every connection gets its own random bytes, so a recycled buffer handed out twice, or released while ws
    // still held it, shows up as a wrong hash. Large reads (pooled buffers) and small ones (exact copies) mix.
    // The stalled one (the first) offers more than kernel buffers and the gateway's window can hold.
    const payloads = Array.from({ length: 6 }, (_, i) => randomBytes(i === 0 ? 16 * MiB : 3 * MiB));
    let next = 0;
    const handler = (socket: import('node:net').Socket): void => {
      const data = payloads[next++ % payloads.length]!;
      socket.on('error', () => {});
      let at = 0;
      let writes = 0;
      const pump = (): void => {
        while (at < data.length) {
          // Alternate bulk writes with a few tiny ones, so both read paths carry this connection's bytes.
          const n = writes++ % 7 === 3 ? 17 : 200_000;
          const piece = data.subarray(at, at + n);
          at += piece.length;
          if (!socket.write(piece)) return void socket.once('drain', pump);
        }
        socket.end();
      };
      pump();
    };
    const tcp = await backend('tcp', handler);
    const unix = await backend('unix', handler);
    gw = await startGateway({ routes: { tcp: { target: tcp.target }, unix: { target: unix.target } } });
    // Connect one at a time so connection i reads payloads[i].
    const clients: Client[] = [];
    for (let i = 0; i < payloads.length; i++) {
      const c = client(`${gw.wsUrl}/raw/${i % 2 ? 'unix' : 'tcp'}`);
      await within(c.opened, 5000, 'open');
      await waitFor(() => next === i + 1, 5000, 'backend accepted');
      if (i === 0) c.ws.pause(); // a stalled reader: the others must go on, its own bytes must stay intact
      clients.push(c);
    }
    await within(Promise.all(clients.slice(1).map((c) => c.closed)), 30_000, 'the running transfers');
    expect(clients[0]!.bytes()).toBeLessThan(payloads[0]!.length);
    clients[0]!.ws.resume();
    await within(clients[0]!.closed, 30_000, 'the stalled transfer after resuming');
    for (const [i, c] of clients.entries()) {
      expect(c.bytes(), `connection ${i}`).toBe(payloads[i]!.length);
      expect(sha256(Buffer.concat(c.chunks)), `connection ${i}`).toBe(sha256(payloads[i]!));
    }
  });

  it('delivers a trickle of tiny backend writes exactly and promptly (no read is held back for more)', async () => {
    const lines = Array.from({ length: 20 }, (_, i) => `line ${i}\n`);
    const trickle = await backend('tcp', (socket) => {
      socket.on('error', () => {});
      socket.once('data', () => {
        let i = 0;
        const timer = setInterval(() => {
          socket.write(lines[i++]!);
          if (i === lines.length) {
            clearInterval(timer);
            socket.end();
          }
        }, 5);
      });
    });
    gw = await startGateway({ routes: { t: { target: trickle.target } } });
    const c = client(`${gw.wsUrl}/raw/t`);
    await within(c.opened, 5000, 'open');
    c.ws.send(Buffer.from('go'));
    expect((await within(c.closed, 10_000, 'close')).code).toBe(1000);
    expect(c.text()).toBe(lines.join(''));
    // Each write arrived as its own message (Nagle is off both ways and nothing waits to fill a buffer).
    expect(c.chunks.length).toBeGreaterThan(lines.length / 2);
  });
});

describe('raw mode: closing and errors', () => {
  it('refuses an unknown route with HTTP 404 before the upgrade', async () => {
    gw = await startGateway({ routes: {} });
    const ws = new WebSocket(`${gw.wsUrl}/raw/nope`);
    const res = await within(
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        ws.once('open', () => reject(new Error('upgraded')));
        ws.once('unexpected-response', (_req, r: IncomingMessage) => {
          let body = '';
          r.on('data', (d: Buffer) => (body += d.toString()));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
        });
        ws.once('error', () => {});
      }),
      5000,
      'unexpected-response',
    );
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body)).toMatchObject({ code: 'SOCKGATE_ERR_ROUTE_UNKNOWN' });
    expect(JSON.parse(res.body).message).toContain('nope');
  });

  it('closes 1003 on a text message and ends the backend', async () => {
    const echo = await backend('tcp', echoHandler);
    gw = await startGateway({ routes: { echo: { target: echo.target } } });
    const c = client(`${gw.wsUrl}/raw/echo`);
    await within(c.opened, 5000, 'open');
    c.ws.send('text is not allowed');
    expect((await within(c.closed, 5000, 'close')).code).toBe(1003);
    await waitFor(() => echo.connections.size === 0, 5000, 'backend released');
  });

  it('closes 1009 on a message over limits.maxMessageBytes', async () => {
    const echo = await backend('tcp', echoHandler);
    gw = await startGateway({ routes: { echo: { target: echo.target } }, limits: { maxMessageBytes: 100_000 } });
    const c = client(`${gw.wsUrl}/raw/echo`);
    await within(c.opened, 5000, 'open');
    c.ws.send(Buffer.alloc(100_001));
    expect((await within(c.closed, 5000, 'close')).code).toBe(1009);
  });

  it('closes 1011 with ECONNREFUSED when the backend refuses', async () => {
    const port = await refusedPort();
    gw = await startGateway({ routes: { down: { target: `tcp://127.0.0.1:${port}` } } });
    const c = client(`${gw.wsUrl}/raw/down`);
    const { code, reason } = await within(c.closed, 5000, 'close');
    expect(code).toBe(1011);
    expect(reason).toMatch(/^ECONNREFUSED: /);
  });

  it('closes 1011 with ENOENT when the Unix socket does not exist', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sockgate-raw-'));
    rmSync(dir, { recursive: true });
    gw = await startGateway({ routes: { gone: { target: `unix:${join(dir, 'missing.sock')}` } } });
    const c = client(`${gw.wsUrl}/raw/gone`);
    const { code, reason } = await within(c.closed, 5000, 'close');
    expect(code).toBe(1011);
    expect(reason).toContain('ENOENT');
  });

  it('closes 1000 after the data when the backend closes', async () => {
    const bye = await backend('tcp', (socket) => socket.end('bye'));
    gw = await startGateway({ routes: { bye: { target: bye.target } } });
    const c = client(`${gw.wsUrl}/raw/bye`);
    const { code } = await within(c.closed, 5000, 'close');
    expect(code).toBe(1000);
    expect(c.text()).toBe('bye');
    await waitFor(() => bye.connections.size === 0, 5000, 'backend released');
  });

  it('ends the backend socket (EOF) when the WebSocket closes', async () => {
    let sawEof = false;
    const b = await backend('tcp', (socket) => {
      socket.on('data', () => {});
      socket.on('end', () => {
        sawEof = true;
        socket.end();
      });
    });
    gw = await startGateway({ routes: { b: { target: b.target } } });
    const c = client(`${gw.wsUrl}/raw/b`);
    await within(c.opened, 5000, 'open');
    await waitFor(() => b.connections.size === 1, 5000, 'backend connected');
    c.ws.close(1000);
    await within(c.closed, 5000, 'close');
    await waitFor(() => sawEof, 5000, 'backend EOF');
    await waitFor(() => b.connections.size === 0, 5000, 'backend released');
  });

  it('closes open raw connections with 1001 when the gateway closes', async () => {
    const echo = await backend('tcp', echoHandler);
    const g = await startGateway({ routes: { echo: { target: echo.target } } });
    const c = client(`${g.wsUrl}/raw/echo`);
    await within(c.opened, 5000, 'open');
    await waitFor(() => echo.connections.size === 1, 5000, 'backend connected');
    await within(g.close(), 10_000, 'gateway close');
    expect((await within(c.closed, 5000, 'close')).code).toBe(1001);
    await waitFor(() => echo.connections.size === 0, 5000, 'backend released');
  });
});

describe('raw mode: backpressure', () => {
  const offered = 64 * MiB;
  let source: Backend;
  let echo: Backend;

  beforeAll(async () => {
    source = await tcpBackend(sourceHandler(offered));
    echo = await tcpBackend(echoHandler);
  });
  afterAll(async () => {
    await source.close();
    await echo.close();
  });

  it('a client that stops reading stops the backend being drained, without stalling other connections', async () => {
    gw = await startGateway({ routes: { source: { target: source.target }, echo: { target: echo.target } } });
    const slow = client(`${gw.wsUrl}/raw/source`);
    const hash = createHash('sha256');
    slow.ws.on('message', (d: Buffer) => hash.update(d));
    await within(slow.opened, 5000, 'open');
    slow.ws.pause();
    await waitFor(() => source.accepted.length === 1, 5000, 'source connected');
    const s = source.accepted[0]!;
    // Bytes the source has handed to its kernel: once the gateway stops reading, this stops growing.
    const flushed = (): number => s.bytesWritten - s.writableLength;
    let last = -1;
    let stableSince = Date.now();
    for (let i = 0; i < 400 && Date.now() - stableSince < 500; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const now = flushed();
      if (now !== last) {
        last = now;
        stableSince = Date.now();
      }
    }
    expect(Date.now() - stableSince).toBeGreaterThanOrEqual(500);
    // Far below the offered total: what is left in flight is kernel buffers plus the gateway's bounded queue.
    expect(last).toBeLessThan(offered / 2);

    // Another connection through the same gateway is not held up.
    const other = client(`${gw.wsUrl}/raw/echo`);
    await within(other.opened, 5000, 'open other');
    other.ws.send(Buffer.from('still here'));
    await waitFor(() => other.text() === 'still here', 5000, 'echo on the other connection');
    other.ws.close();
    await within(other.closed, 5000, 'close other');

    // Resumed, the slow reader gets every byte, in order.
    slow.ws.resume();
    expect((await within(slow.closed, 30_000, 'slow reader finishes')).code).toBe(1000);
    expect(slow.bytes()).toBe(offered);
    expect(hash.digest('hex')).toBe(sha256(patternBytes(offered)));
  });

  it('a backend that stops reading stops the gateway reading the client', async () => {
    const results: { bytes: number; sha256: string }[] = [];
    const stalled: import('node:net').Socket[] = [];
    const sink = await backend('tcp', (socket) => {
      sinkHandler(results)(socket);
      socket.pause();
      stalled.push(socket);
    });
    gw = await startGateway({ routes: { sink: { target: sink.target } } });
    const c = client(`${gw.wsUrl}/raw/sink`);
    await within(c.opened, 5000, 'open');
    const data = patternBytes(offered);
    let sent = 0;
    const chunk = 64 * 1024;
    // Keep about 1 MiB queued in the client; what left it (sent - bufferedAmount) stops growing once the gateway
    // stops reading its WebSocket.
    let last = -1;
    let stableSince = Date.now();
    for (let i = 0; i < 5000 && Date.now() - stableSince < 500 && sent < offered; i++) {
      while (c.ws.bufferedAmount < MiB && sent < offered) {
        c.ws.send(data.subarray(sent, sent + chunk));
        sent += chunk;
      }
      await new Promise((r) => setTimeout(r, 20));
      const flushed = sent - c.ws.bufferedAmount;
      if (flushed !== last) {
        last = flushed;
        stableSince = Date.now();
      }
    }
    expect(Date.now() - stableSince).toBeGreaterThanOrEqual(500);
    expect(last).toBeLessThan(offered / 2);

    // The backend reads again: everything arrives, in order.
    stalled[0]!.resume();
    await within(sendPaced(c.ws, data.subarray(sent)), 30_000, 'send the rest');
    c.ws.close(1000);
    await waitFor(() => results.length === 1, 30_000, 'sink EOF');
    expect(results[0]).toEqual({ bytes: offered, sha256: sha256(data) });
  });
});
