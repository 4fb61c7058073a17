/**
 * A small Node test client for mux mode: a `ws` WebSocket offering `sockgate.v1` and a client-role engine
 * Session over the same WsTransport the gateway uses. Streams hash what they receive and consume it as read
 * (unless paused), and writes respect write()/onDrain. A test tool, not the public SDK.
 */
import { createHash } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyWebsocket from '@fastify/websocket';
import { WebSocket } from 'ws';
import { MAX_FRAME_BYTES, SUBPROTOCOL } from '../../shared/constants.js';
import type { SockgateError } from '../../shared/errors.js';
import { Session, type Stream } from '../../shared/session.js';
import { connectBackend } from '../../server/backend.js';
import { WsTransport, handleMuxSession, type MuxLimits, type MuxSessionHandle } from '../../server/mux.js';
import { parseTarget, type Route } from '../../server/routes.js';
import { startGateway } from './gateway.js';

/** Reject with a clear message when p does not settle within ms: every wait in a test is bounded. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export interface CloseEvent {
  code: number;
  reason: string;
}

export interface MuxClient {
  readonly ws: WebSocket;
  readonly session: Session;
  /** Settles once the WebSocket closed, with its close code and reason. */
  readonly closed: Promise<CloseEvent>;
  /** Anything the engine threw from a ws event (a bug); tests expect it empty. */
  readonly internalErrors: unknown[];
  open(route: string, opts?: StreamOptions): ClientStream;
  /** Close normally (1000) and wait for the close to finish. */
  close(): Promise<CloseEvent>;
}

export interface StreamOptions {
  /** Keep received chunks for data() (default true); with false only the byte count and hash are kept. */
  keep?: boolean;
}

/** One client stream: receives into a running sha256, consumes as it reads unless paused. */
export class ClientStream {
  readonly stream: Stream;
  /** Bytes received so far. */
  received = 0;
  /** Received but not yet consumed (while paused). */
  unconsumed = 0;
  paused = false;
  ended = false;
  isClosed = false;
  /** Resolves on OPEN_OK; rejects with the OPEN_FAIL (or close) error. */
  readonly opened: Promise<void>;
  /** Resolves on the peer's FIN. */
  readonly ended$: Promise<void>;
  /** Resolves with the close error (undefined for a clean close). */
  readonly closed: Promise<SockgateError | undefined>;
  private readonly chunks: Buffer[] | undefined;
  private readonly hash = createHash('sha256');
  private drainWaiters: (() => void)[] = [];

  constructor(stream: Stream, opts: StreamOptions = {}) {
    this.stream = stream;
    this.chunks = opts.keep === false ? undefined : [];
    let opened!: () => void;
    let openFailed!: (e: unknown) => void;
    let ended!: () => void;
    let closed!: (e: SockgateError | undefined) => void;
    this.opened = new Promise((res, rej) => ((opened = res), (openFailed = rej)));
    this.opened.catch(() => {}); // awaited only by tests that expect the open to succeed
    this.ended$ = new Promise((res) => (ended = res));
    this.closed = new Promise((res) => (closed = res));
    stream.onOpen = () => opened();
    stream.onData = (chunk) => {
      this.received += chunk.length;
      this.hash.update(chunk);
      // The view stays valid: ws gives each message a fresh buffer.
      this.chunks?.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      if (this.paused) this.unconsumed += chunk.length;
      else stream.consume(chunk.length);
    };
    stream.onEnd = () => {
      this.ended = true;
      ended();
    };
    stream.onDrain = () => this.wake();
    stream.onClose = (err) => {
      this.isClosed = true;
      openFailed(err ?? new Error('closed before OPEN_OK'));
      closed(err);
      this.wake();
    };
  }

  get id(): number {
    return this.stream.id;
  }

  /** Write all of data in chunks, waiting for onDrain whenever write() returns false. Throws if the stream closes. */
  async write(data: Uint8Array, chunkBytes = 64 * 1024): Promise<void> {
    for (let at = 0; at < data.length; at += chunkBytes) {
      if (this.isClosed) throw new Error(`stream ${this.id} closed while writing`);
      if (!this.stream.write(data.subarray(at, at + chunkBytes))) {
        await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
      }
    }
    if (this.isClosed) throw new Error(`stream ${this.id} closed while writing`);
  }

  end(): void {
    this.stream.end();
  }

  /** Stop consuming: the peer gets no more credit for this stream. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    const n = this.unconsumed;
    this.unconsumed = 0;
    this.stream.consume(n);
  }

  data(): Buffer {
    if (!this.chunks) throw new Error('opened with keep: false');
    return Buffer.concat(this.chunks);
  }

  /** sha256 of everything received; call once, after the end. */
  digest(): string {
    return this.hash.digest('hex');
  }

  private wake(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }
}

export interface ConnectMuxOptions {
  maxTransportBufferedBytes?: number;
  maxWindowBytes?: number;
  /** Extra request headers (e.g. `authorization`). */
  headers?: Record<string, string>;
  /** Offered after `sockgate.v1` (e.g. a `sockgate.bearer.*` credential). */
  protocols?: string[];
  /** The `Origin` header, as a browser would send it. */
  origin?: string;
}

/** Connect a mux session to `ws://host:port/mux`. */
export async function connectMux(url: string, opts: ConnectMuxOptions = {}): Promise<MuxClient> {
  const ws = new WebSocket(url, [SUBPROTOCOL, ...(opts.protocols ?? [])], {
    maxPayload: MAX_FRAME_BYTES,
    perMessageDeflate: false,
    ...(opts.headers && { headers: opts.headers }),
    ...(opts.origin !== undefined && { origin: opts.origin }),
  });
  const closed = new Promise<CloseEvent>((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }));
  });
  await within(
    new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    }),
    5000,
    `WebSocket open to ${url}`,
  );
  ws.on('error', () => {}); // errors end in 'close', which tests observe
  const maxBuffered = opts.maxTransportBufferedBytes ?? 1024 * 1024;
  const internalErrors: unknown[] = [];
  const transport = new WsTransport(ws, maxBuffered, (err) => internalErrors.push(err));
  const session = new Session({ role: 'client', transport, maxTransportBufferedBytes: maxBuffered, maxWindowBytes: opts.maxWindowBytes });
  transport.bind(session);
  return {
    ws,
    session,
    closed,
    internalErrors,
    open: (route, streamOpts) => new ClientStream(session.open(route), streamOpts),
    close: () => {
      session.close();
      return within(closed, 5000, 'WebSocket close');
    },
  };
}

// ---- gateways to test against --------------------------------------------------------------------------------

/** The real gateway (createGateway via test/helpers/gateway.ts), anonymous, with `routes` as NAME -> target. */
export async function startMuxGateway(routes: Record<string, string>, opts: { limits?: Record<string, number> } = {}): Promise<MuxServer> {
  const gw = await startGateway({
    routes: Object.fromEntries(Object.entries(routes).map(([name, target]) => [name, { target }])),
    allowAnonymous: true,
    ...(opts.limits ? { limits: opts.limits } : {}),
  });
  return { url: `${gw.wsUrl}/mux`, app: gw.gateway.app, close: () => gw.close() };
}

export interface MuxServer {
  url: string;
  app: FastifyInstance;
  close(): Promise<void>;
  /** startMuxServer only: each session's handle, in the order they started. */
  sessions?: MuxSessionHandle[];
}

export const TEST_LIMITS: MuxLimits = {
  maxStreamsPerSession: 256,
  maxWindowBytes: 4 * 1024 * 1024,
  maxTransportBufferedBytes: 1024 * 1024,
  maxMessageBytes: 1024 * 1024,
  openTimeoutMs: 5000,
};

/**
 * A bare Fastify + @fastify/websocket app with only `GET /mux` wired to handleMuxSession, on 127.0.0.1 (no
 * admission checks): for testing the mux handler's own limits in isolation and for capturing logs.
 * `routes` maps names to targets (`tcp://127.0.0.1:PORT`, `unix:/path`). `logStream` receives pino's JSON lines.
 */
export async function startMuxServer(
  routes: Record<string, string>,
  opts: { limits?: Partial<MuxLimits>; logStream?: { write(line: string): void } } = {},
): Promise<MuxServer> {
  const limits = { ...TEST_LIMITS, ...opts.limits };
  const app = Fastify({ logger: opts.logStream ? { level: 'debug', stream: opts.logStream } : false });
  const table = new Map<string, Route>(Object.entries(routes).map(([name, t]) => [name, { name, target: parseTarget(t) }]));
  await app.register(fastifyWebsocket, {
    options: {
      maxPayload: limits.maxMessageBytes,
      handleProtocols: (protocols: Set<string>) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    },
  });
  const sessions: MuxSessionHandle[] = [];
  app.get('/mux', { websocket: true }, (socket, request) => {
    // Backends read and the WebSocket written as the gateway's plugin does it (server/plugin.ts).
    const handle = handleMuxSession(
      socket,
      {
        resolveRoute: (name) => table.get(name),
        connect: (target, onread) => connectBackend(target, { timeoutMs: limits.openTimeoutMs, onread }),
        limits,
        log: request.log,
      },
      { remoteAddress: request.socket.remoteAddress ?? '', socket: request.socket },
    );
    if (handle) sessions.push(handle);
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  if (!addr || typeof addr === 'string') throw new Error('no TCP address');
  return { url: `ws://127.0.0.1:${addr.port}/mux`, app, close: () => app.close(), sessions };
}
