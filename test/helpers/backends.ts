/**
 * Real loopback backends for integration tests: echo, sink and source servers over TCP (127.0.0.1 only) or
 * Unix sockets. Each tracks its live connections so tests can check that the gateway released them.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Backend {
  /** `tcp://127.0.0.1:PORT` or `unix:/path` */
  target: string;
  server: net.Server;
  /** Connections open now. */
  readonly connections: Set<net.Socket>;
  /** Every connection ever accepted, in order. */
  readonly accepted: net.Socket[];
  close(): Promise<void>;
}

export type Handler = (socket: net.Socket) => void;

/** Echo: writes back what it reads, honouring backpressure; ends its side after the peer's EOF. */
export const echoHandler: Handler = (socket) => {
  socket.pipe(socket);
};

/** Sink: reads and hashes everything; `sinkResults` gets { bytes, sha256 } at EOF, then it ends its side. */
export function sinkHandler(results: { bytes: number; sha256: string }[]): Handler {
  return (socket) => {
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    socket.on('end', () => {
      results.push({ bytes, sha256: hash.digest('hex') });
      socket.end();
    });
  };
}

/** Source: writes `bytes` bytes of a deterministic pattern (honouring backpressure), then ends. */
export function sourceHandler(bytes: number): Handler {
  return (socket) => {
    const chunk = patternBytes(64 * 1024);
    let left = bytes;
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!socket.write(chunk.subarray(0, n))) {
          socket.once('drain', pump);
          return;
        }
      }
      socket.end();
    };
    socket.on('error', () => {});
    pump();
  };
}

/** A repeatable byte pattern; patternBytes(n) is a prefix of patternBytes(m) for n < m. */
export function patternBytes(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >> 8)) & 0xff;
  return b;
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function track(server: net.Server, handler: Handler): { connections: Set<net.Socket>; accepted: net.Socket[] } {
  const connections = new Set<net.Socket>();
  const accepted: net.Socket[] = [];
  server.on('connection', (socket) => {
    connections.add(socket);
    accepted.push(socket);
    socket.on('close', () => connections.delete(socket));
    socket.on('error', () => {});
    handler(socket);
  });
  return { connections, accepted };
}

/** A TCP backend on 127.0.0.1 and an ephemeral port. allowHalfOpen so half-close is observable. */
export async function tcpBackend(handler: Handler): Promise<Backend> {
  const server = net.createServer({ allowHalfOpen: true });
  const t = track(server, handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return { target: `tcp://127.0.0.1:${port}`, server, ...t, close: () => closeServer(server, t.connections) };
}

/** A Unix-socket backend in a fresh temporary directory. */
export async function unixBackend(handler: Handler): Promise<Backend> {
  const dir = mkdtempSync(join(tmpdir(), 'sockgate-test-'));
  const path = join(dir, 'backend.sock');
  const server = net.createServer({ allowHalfOpen: true });
  const t = track(server, handler);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    target: `unix:${path}`,
    server,
    ...t,
    close: async () => {
      await closeServer(server, t.connections);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A TCP port on 127.0.0.1 with nothing listening (connections are refused). */
export async function refusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function closeServer(server: net.Server, connections: Set<net.Socket>): Promise<void> {
  for (const s of connections) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Wait until cond() is true, polling every 10 ms, for at most timeoutMs. Bounded in count and time. */
export async function waitFor(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000 && Date.now() < deadline; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  if (!cond()) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
