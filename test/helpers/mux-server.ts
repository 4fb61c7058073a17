/**
 * An in-process mux endpoint for SDK tests: a real `ws` WebSocketServer on 127.0.0.1 running a server-role
 * engine Session per connection, with test behaviours as routes (no gateway, no backend sockets). It also serves
 * the built browser bundle and demo page so the SDK can be tested in Chromium without the gateway.
 *
 * Routes (the route name picks the behaviour, see `serveStream`):
 *   echo          writes back what it reads, honouring backpressure; FIN after the client's FIN
 *   late-echo     echo, but accepted only after 100 ms (tests writes before OPEN_OK)
 *   sink          reads and hashes everything; at the client's FIN records { bytes, sha256 } and ends
 *   source-<N>    sends N bytes of patternBytes (honouring credit), then FIN; drops what it reads
 *   hold          accepts, never reads, never sends (the client's writes run out of credit)
 *   refused       OPEN_FAIL SOCKGATE_ERR_BACKEND_REFUSED with an errno reason
 *   reset         accepts; on the first DATA resets with SOCKGATE_ERR_BACKEND_RESET
 *   anything else OPEN_FAIL SOCKGATE_ERR_ROUTE_UNKNOWN
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer, type WebSocket } from 'ws';
import { MAX_FRAME_BYTES, SUBPROTOCOL } from '../../shared/constants.js';
import { SockgateError } from '../../shared/errors.js';
import { Session, type Stream } from '../../shared/session.js';
import { patternBytes } from './backends.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface SinkResult {
  bytes: number;
  sha256: string;
}

export interface ServerStream {
  route: string;
  stream: Stream;
}

export interface ServeContext {
  /** Results of `sink` streams, in the order they finished. */
  sinkResults: SinkResult[];
  /** Every stream the server side accepted or refused, in order. */
  streams: ServerStream[];
}

export function newServeContext(): ServeContext {
  return { sinkResults: [], streams: [] };
}

/** Engine `onStream` for the routes above; works over a real WebSocket or sessionPair(). */
export function serveStream(ctx: ServeContext, stream: Stream, route: string, poke: () => void = () => {}): void {
  ctx.streams.push({ route, stream });
  const source = /^source-(\d+)$/.exec(route);
  switch (route) {
    case 'echo':
      echo(stream, poke);
      stream.accept();
      return;
    case 'late-echo':
      echo(stream, poke);
      setTimeout(() => stream.accept(), 100);
      return;
    case 'sink': {
      const hash = createHash('sha256');
      let bytes = 0;
      stream.onData = (chunk) => {
        hash.update(chunk);
        bytes += chunk.length;
        stream.consume(chunk.length);
      };
      stream.onEnd = () => {
        ctx.sinkResults.push({ bytes, sha256: hash.digest('hex') });
        stream.end();
        poke();
      };
      stream.accept();
      return;
    }
    case 'hold':
      stream.accept();
      return;
    case 'refused':
      stream.reject(new SockgateError('SOCKGATE_ERR_BACKEND_REFUSED', 'ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9'));
      return;
    case 'reset':
      stream.onData = () => stream.reset(new SockgateError('SOCKGATE_ERR_BACKEND_RESET', 'ECONNRESET: read ECONNRESET'));
      stream.accept();
      return;
  }
  if (source) {
    stream.onData = (chunk) => stream.consume(chunk.length);
    stream.accept();
    produce(stream, Number(source[1]), poke);
    return;
  }
  stream.reject(new SockgateError('SOCKGATE_ERR_ROUTE_UNKNOWN', `no route ${route}`));
}

/** Echo as the gateway does: credit goes back only once the echoed bytes were accepted for sending. */
function echo(stream: Stream, poke: () => void): void {
  let owed = 0;
  stream.onData = (chunk) => {
    // The engine's view is only ours until the callback returns; the write may be queued past it.
    const ok = stream.write(chunk.slice());
    poke();
    if (ok) stream.consume(chunk.length);
    else owed += chunk.length;
  };
  stream.onDrain = () => {
    const n = owed;
    owed = 0;
    stream.consume(n);
  };
  stream.onEnd = () => {
    stream.end();
    poke();
  };
}

/** Send `total` pattern bytes, one write at a time, pausing until onDrain when the engine says so. */
function produce(stream: Stream, total: number, poke: () => void): void {
  let sent = 0;
  const pump = (): void => {
    while (sent < total && !stream.isClosed) {
      const n = Math.min(64 * 1024, total - sent);
      const piece = patternAt(sent, n);
      sent += n;
      const ok = stream.write(piece);
      poke();
      if (!ok) return;
    }
    if (sent >= total) {
      stream.end();
      poke();
    }
  };
  stream.onDrain = pump;
  pump();
}

let patternCache: Buffer | undefined;
/** Bytes [at, at + n) of the infinite patternBytes stream (patternBytes(m) for m >= at + n). */
export function patternAt(at: number, n: number): Uint8Array {
  if (!patternCache || patternCache.length < at + n) patternCache = patternBytes(Math.max(at + n, 2 * (patternCache?.length ?? 0)));
  return patternCache.subarray(at, at + n);
}

export interface MuxServerOptions {
  /** The subprotocol the server selects; null selects none. Default sockgate.v1. */
  subprotocol?: string | null;
  /** Refuse every upgrade with this HTTP status. */
  rejectStatus?: number;
}

export interface MuxServer {
  /** ws://127.0.0.1:PORT/mux */
  url: string;
  /** http://127.0.0.1:PORT (serves `/` demo page, `/sockgate.js`, `/blank`) */
  httpUrl: string;
  ctx: ServeContext;
  /** Server-role engine sessions, one per connection, in order. */
  sessions: Session[];
  /** The server side's WebSocket of each session, in order. */
  websockets: WebSocket[];
  /** The request URL of every upgrade attempt (path and query). */
  requests: string[];
  close(): Promise<void>;
}

/** Serve the built SDK bundle and demo page; missing files answer 500 naming `npm run build`. */
function serveStatic(req: http.IncomingMessage, res: http.ServerResponse): void {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  const files: Record<string, [string, string]> = {
    '/': ['dist/demo/index.html', 'text/html; charset=utf-8'],
    '/sockgate.js': ['dist/browser/sockgate.js', 'text/javascript; charset=utf-8'],
  };
  if (path === '/blank') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!doctype html><title>blank</title>');
    return;
  }
  const file = files[path];
  if (!file) {
    res.writeHead(404).end('not found');
    return;
  }
  const full = join(root, file[0]);
  if (!existsSync(full)) {
    res.writeHead(500).end(`${file[0]} is missing: run npm run build`);
    return;
  }
  res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-store' }).end(readFileSync(full));
}

export async function startMuxServer(opts: MuxServerOptions = {}): Promise<MuxServer> {
  const ctx = newServeContext();
  const sessions: Session[] = [];
  const requests: string[] = [];
  const websockets: WebSocket[] = [];
  const sockets = new Set<Socket>();
  const server = http.createServer(serveStatic);
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const selected = opts.subprotocol === undefined ? SUBPROTOCOL : opts.subprotocol;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_FRAME_BYTES,
    // Select what the test asked for, offered or not, to test the client's checks.
    handleProtocols: () => selected ?? false,
  });
  server.on('upgrade', (req, socket, head) => {
    requests.push(req.url ?? '');
    if (opts.rejectStatus !== undefined) {
      socket.end(`HTTP/1.1 ${opts.rejectStatus} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    if (new URL(req.url ?? '/', 'http://x').pathname !== '/mux') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => attach(ws));
  });

  function attach(ws: WebSocket): void {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const session: Session = new Session({
      role: 'server',
      transport: {
        send: (m) => ws.send(m),
        get bufferedAmount() {
          return ws.bufferedAmount;
        },
        close: (code, reason) => ws.close(code, reason),
      },
      onStream: (stream, route) => serveStream(ctx, stream, route, poke),
      onClose: () => clearTimeout(timer),
    });
    // ws has no drain event for WebSocket messages either: poll while the engine waits, as the SDK does.
    function poke(): void {
      if (timer !== undefined || session.closed || !session.wantsDrain) return;
      timer = setTimeout(() => {
        timer = undefined;
        session.transportDrained();
        poke();
      }, 5);
    }
    sessions.push(session);
    websockets.push(ws);
    ws.on('message', (data: Buffer, isBinary) => {
      if (!isBinary) session.receiveText();
      else session.receive(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      poke();
    });
    ws.on('close', (code, reason) => session.transportClosed(code, reason.toString()));
    ws.on('error', () => {});
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}/mux`,
    httpUrl: `http://127.0.0.1:${port}`,
    ctx,
    sessions,
    websockets,
    requests,
    async close() {
      for (const client of wss.clients) client.terminate();
      for (const s of sockets) s.destroy();
      wss.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---- Web Streams helpers for SDK tests ---------------------------------------------------------------------

/** Read a stream to its end (bounded: at most maxChunks reads) and join the chunks. */
export async function readAll(readable: ReadableStream<Uint8Array>, maxChunks = 1_000_000): Promise<Uint8Array> {
  const reader = readable.getReader();
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < maxChunks; i++) {
    const { done, value } = await reader.read();
    if (done) return concat(chunks);
    chunks.push(value);
  }
  throw new Error(`readAll: more than ${maxChunks} chunks`);
}

/** Write data in pieces of `chunkBytes` (awaiting each write), then close the writable unless told not to. */
export async function writeAll(writable: WritableStream<Uint8Array>, data: Uint8Array, chunkBytes = 16 * 1024, close = true): Promise<void> {
  const writer = writable.getWriter();
  for (let at = 0; at < data.length; at += chunkBytes) await writer.write(data.subarray(at, at + chunkBytes));
  if (close) await writer.close();
  else writer.releaseLock();
}

export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Random-looking but repeatable bytes (xorshift), for payloads a pattern bug could not fake. */
export function noiseBytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** The error a promise rejects with (fails if it resolves). */
export async function rejectionOf(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected a rejection, but the promise resolved');
}
