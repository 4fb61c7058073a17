/**
 * A session: one WebSocket to a gateway's /mux, running the shared engine as the client. openSession() does the
 * handshake; SockgateSession hands out sockets and reports the session's life as typed events.
 */
import { BEARER_SUBPROTOCOL_PREFIX, INITIAL_WINDOW, MAX_WINDOW, SUBPROTOCOL } from '../shared/constants.js';
import { SockgateError, closeCodeOf } from '../shared/errors.js';
import { Session } from '../shared/session.js';
import { toSockgateError } from './errors.js';
import { SessionCloseEvent, SessionErrorEvent, SessionGoAwayEvent, TypedEventTarget, type SessionEventMap } from './events.js';
import { SockgateSocket, type SocketHost } from './socket.js';
import { openReconnecting, type ReconnectOptions, type ReconnectingSession } from './reconnect.js';
import {
  DrainPoller,
  WebSocketTransport,
  closeWebSocket,
  messageData,
  type CloseEventLike,
  type ErrorEventLike,
  type MessageEventLike,
  type WebSocketConstructor,
  type WebSocketLike,
} from './transport.js';

export interface OpenSessionOptions {
  /**
   * The WebSocket class to use. Default: globalThis.WebSocket (browsers). The Node entry of `sockgate/client`
   * uses the `ws` package instead, also where Node has a global WebSocket (client/node.ts says why).
   */
  WebSocket?: WebSocketConstructor;
  /**
   * A bearer token. Browsers cannot set headers on a WebSocket, so by default it travels as an extra offered
   * subprotocol `sockgate.bearer.<base64url(token)>`, which the gateway never selects and never logs (PROTOCOL 1.2).
   */
  token?: string;
  /**
   * How the token travels: 'protocol' (default, above) or 'query' (`?access_token=`, RFC 6750; query strings end
   * up in proxy logs, so use short-lived tokens there).
   */
  tokenCarrier?: 'protocol' | 'query';
  /** Aborts the handshake (openSession rejects with signal.reason); after it, closes the session (1000). */
  signal?: AbortSignal;
  /** Give up the handshake after this many milliseconds (SOCKGATE_ERR_SDK_HANDSHAKE). Default 10,000. */
  openTimeoutMs?: number;
  /** Largest receive window per socket, in bytes (INITIAL_WINDOW..MAX_WINDOW); bounds memory per socket. Default 4 MiB. */
  maxWindowBytes?: number;
  /**
   * The receive windows of the sockets receiving data, together, in bytes (at least INITIAL_WINDOW): a socket's
   * window grows only to its share, this over the sockets that received data in the last second, never below
   * 256 KiB (PROTOCOL 5.7). Keeps busy sockets of one session even. Default 4 x maxWindowBytes (16 MiB).
   */
  maxSessionWindowBytes?: number;
  /**
   * Stay connected (see reconnect.ts and docs/SDK.md): openSession then resolves to a ReconnectingSession that
   * replaces its connection after a loss or a GOAWAY. `true` uses the defaults (250 ms initial, 30 s max, unbounded).
   */
  reconnect?: boolean | ReconnectOptions;
  /** With reconnect: PING every this many ms (refreshes `rtt`); no PONG within keepaliveTimeoutMs counts as a loss. Default 15,000; 0 turns it off. */
  keepaliveIntervalMs?: number;
  /** With keepaliveIntervalMs: how long to wait for the PONG, in ms. Default min(keepaliveIntervalMs, 10,000). */
  keepaliveTimeoutMs?: number;
}

/** 'reconnecting' only for a ReconnectingSession (openSession with `reconnect`). */
export type SessionState = 'open' | 'reconnecting' | 'closed';

const DEFAULT_OPEN_TIMEOUT_MS = 10_000;

/** How often, at most, a session receiving data refreshes its RTT for window auto-tuning (PROTOCOL 5.5). */
const RTT_PROBE_INTERVAL_MS = 200;

/**
 * Open a session to a gateway's mux endpoint (`ws://`, `wss://`; `http(s)://` and, in a page, relative URLs are
 * accepted too). Resolves once the WebSocket is open with subprotocol `sockgate.v1`; rejects with
 * SOCKGATE_ERR_SDK_HANDSHAKE when the upgrade fails (the message has the HTTP status where the platform gives
 * it), or with signal.reason when aborted.
 */
export function openSession(url: string | URL, options: OpenSessionOptions & { reconnect: true | ReconnectOptions }): Promise<ReconnectingSession>;
export function openSession(url: string | URL, options?: OpenSessionOptions): Promise<SockgateSession>;
export function openSession(url: string | URL, options: OpenSessionOptions = {}): Promise<SockgateSession | ReconnectingSession> {
  if (options.reconnect) return openReconnecting(url, options, (u, o) => openSession(u, o));
  const signal = options.signal;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const Ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (!Ctor) {
    return Promise.reject(
      new SockgateError('SOCKGATE_ERR_SDK_HANDSHAKE', 'no WebSocket class: pass options.WebSocket, or import sockgate/client in Node for ws'),
    );
  }
  const maxWindow = options.maxWindowBytes;
  if (maxWindow !== undefined && !(maxWindow >= INITIAL_WINDOW && maxWindow <= MAX_WINDOW)) {
    return Promise.reject(new RangeError(`maxWindowBytes ${maxWindow} outside ${INITIAL_WINDOW}..${MAX_WINDOW}`));
  }
  const sessionWindow = options.maxSessionWindowBytes;
  if (sessionWindow !== undefined && !(sessionWindow >= INITIAL_WINDOW)) {
    return Promise.reject(new RangeError(`maxSessionWindowBytes ${sessionWindow} below ${INITIAL_WINDOW}`));
  }
  let ws: WebSocketLike;
  let target: string;
  try {
    const inQuery = options.tokenCarrier === 'query';
    target = muxUrl(url, inQuery ? options.token : undefined);
    const protocols = options.token !== undefined && !inQuery ? [SUBPROTOCOL, bearerSubprotocol(options.token)] : [SUBPROTOCOL];
    ws = new Ctor(target, protocols);
  } catch (err) {
    return Promise.reject(new SockgateError('SOCKGATE_ERR_SDK_HANDSHAKE', `cannot open ${String(url)}: ${String(err)}`, { cause: err }));
  }
  const session = new SockgateSession(ws, target, options);
  return session.ready;
}

/** Resolve relative and http(s) URLs and add the token; the token never appears in errors. */
function muxUrl(url: string | URL, token: string | undefined): string {
  const base = (globalThis as { location?: { href: string } }).location?.href;
  const u = new URL(String(url), base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (token !== undefined) u.searchParams.set('access_token', token);
  return u.href;
}

/** PROTOCOL 1.2: `sockgate.bearer.` + base64url of the token's UTF-8 bytes (no padding). */
function bearerSubprotocol(token: string): string {
  let binary = '';
  for (const byte of new TextEncoder().encode(token)) binary += String.fromCharCode(byte);
  return BEARER_SUBPROTOCOL_PREFIX + btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.searchParams.has('access_token')) u.searchParams.set('access_token', '***');
  return u.href;
}

export class SockgateSession extends TypedEventTarget<SessionEventMap> {
  /** The mux URL, with any access token masked. */
  readonly url: string;

  /** @internal Resolves when the handshake succeeds (what openSession returns). */
  readonly ready: Promise<SockgateSession>;

  private readonly ws: WebSocketLike;
  private readonly engine: Session;
  private readonly poller: DrainPoller;
  private readonly sockets = new Set<SockgateSocket>();
  private readonly host: SocketHost;
  private isOpen = false;
  private handshakeDone = false;
  private wsClosed = false;
  private closeInfo: { code: number; reason: string } | undefined;
  private lastError: string | undefined;
  private readonly wsClosedPromise: Promise<void>;
  private resolveWsClosed!: () => void;
  private openTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly signal: AbortSignal | undefined;
  /** The signal aborted during the handshake: set in the constructor, where the handshake's settle lives. */
  private readonly onHandshakeAbort: () => void;
  /** The signal aborted once open: close the session. */
  private readonly onAbort = (): void => {
    this.engine.close();
  };

  /** @internal Use openSession(). */
  constructor(ws: WebSocketLike, url: string, options: OpenSessionOptions) {
    super();
    this.ws = ws;
    this.url = redact(url);
    this.signal = options.signal;
    const transport = new WebSocketTransport(ws);
    this.engine = new Session({
      role: 'client',
      transport,
      maxWindowBytes: options.maxWindowBytes,
      maxSessionWindowBytes: options.maxSessionWindowBytes,
      rttProbeIntervalMs: RTT_PROBE_INTERVAL_MS,
      onGoAway: (err) => this.emit(new SessionGoAwayEvent(err)),
      onClose: (err) => this.engineClosed(err),
    });
    this.poller = new DrainPoller(this.engine);
    // With `ws`, each send's callback is the drain event WebSockets lack: refill as soon as bytes leave, not at
    // the next poll (the poller stays as the fallback for browsers, whose timers are clamped to 4 ms or more).
    transport.onSent = () => {
      if (this.engine.wantsDrain) this.engine.transportDrained();
    };
    this.host = {
      poke: () => this.poller.check(),
      release: (socket) => this.sockets.delete(socket),
    };
    this.wsClosedPromise = new Promise<void>((resolve) => (this.resolveWsClosed = resolve));

    let settle!: { resolve: (s: SockgateSession) => void; reject: (e: unknown) => void };
    this.ready = new Promise<SockgateSession>((resolve, reject) => (settle = { resolve, reject }));
    this.ready.catch(() => {});
    const fail = (err: unknown): void => {
      if (this.handshakeDone) return;
      this.handshakeDone = true;
      this.stopHandshake();
      // No stream exists yet: closing the engine just closes the WebSocket (a no-op once it has closed).
      this.engine.close();
      settle.reject(err);
    };

    ws.binaryType = 'arraybuffer';
    ws.addEventListener('open', () => {
      if (this.handshakeDone) return;
      // Browsers accept a server that selects no subprotocol; we do not (PROTOCOL 1.2).
      if (ws.protocol !== SUBPROTOCOL) {
        fail(new SockgateError('SOCKGATE_ERR_SDK_HANDSHAKE', `the server selected subprotocol ${JSON.stringify(ws.protocol)}, not ${SUBPROTOCOL}`));
        return;
      }
      this.handshakeDone = true;
      this.isOpen = true;
      this.stopHandshake();
      this.signal?.addEventListener('abort', this.onAbort, { once: true });
      settle.resolve(this);
    });
    ws.addEventListener('message', (event: MessageEventLike) => this.onMessage(event.data));
    ws.takeFrames?.({
      receive: (message) => this.onMessage(message),
      receiveDataHead: (streamId, length) => this.engine.receiveDataHead(streamId, length),
      receiveDataPiece: (piece) => this.engine.receiveDataPiece(piece),
    });
    ws.addEventListener('error', (event: ErrorEventLike) => {
      // ws names the cause (e.g. "Unexpected server response: 401"); browsers say nothing. A close follows.
      const message = event.message ?? (event.error instanceof Error ? event.error.message : undefined);
      if (message) this.lastError = message;
    });
    ws.addEventListener('close', (event: CloseEventLike) => {
      this.wsClosed = true;
      this.poller.stop();
      if (!this.handshakeDone) {
        const why = this.lastError ?? `the WebSocket closed with ${event.code} before opening`;
        fail(new SockgateError('SOCKGATE_ERR_SDK_HANDSHAKE', `${this.url}: ${why}`));
      } else {
        this.closeInfo ??= { code: event.code, reason: event.reason };
        this.engine.transportClosed(event.code, event.reason);
      }
      this.resolveWsClosed();
    });

    const timeoutMs = options.openTimeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS;
    this.openTimer = setTimeout(() => {
      fail(new SockgateError('SOCKGATE_ERR_SDK_HANDSHAKE', `${this.url}: not open within ${timeoutMs} ms`));
      closeWebSocket(ws, 1000, 'open timeout');
    }, timeoutMs);
    this.onHandshakeAbort = () => {
      fail(this.signal!.reason);
      closeWebSocket(ws, 1000, 'aborted');
    };
    this.signal?.addEventListener('abort', this.onHandshakeAbort, { once: true });
  }

  /** 'open' until the session ends (any close, from either side); then 'closed'. */
  get state(): SessionState {
    return this.isOpen && !this.engine.closed ? 'open' : 'closed';
  }

  /** Latest PING round-trip time in milliseconds (see ping()), or undefined before the first. */
  get rtt(): number | undefined {
    return this.engine.rtt;
  }

  /** Bytes waiting to go out: the WebSocket's bufferedAmount plus what every socket holds in the session. */
  get bufferedAmount(): number {
    let n = this.ws.bufferedAmount;
    for (const socket of this.sockets) n += socket.bufferedAmount;
    return n;
  }

  /** Sockets open now. */
  get socketCount(): number {
    return this.sockets.size;
  }

  /**
   * A socket to a named route. Never throws: when the session cannot open one (closed, GOAWAY received, bad
   * route name), the socket's `opened` and `closed` reject with the error.
   */
  connect(route: string): SockgateSocket {
    let socket: SockgateSocket;
    try {
      socket = new SockgateSocket(route, this.engine.open(route), this.host);
    } catch (err) {
      return new SockgateSocket(route, toSockgateError(err));
    }
    this.sockets.add(socket);
    this.poller.check();
    return socket;
  }

  /** @internal Drop the connection with an error (a dead link found by keepalive): sockets end with err. */
  abort(err: SockgateError): void {
    if (!this.wsClosed) this.engine.close(err);
  }

  /** Measure the round-trip time with a PING (PROTOCOL 6.1); also updates `rtt`. */
  ping(): Promise<number> {
    return this.engine.ping();
  }

  /**
   * Close the session now (WebSocket close 1000). Sockets still open end with SOCKGATE_ERR_SESSION_CLOSED; close
   * them first for a graceful end. Resolves when the WebSocket has closed.
   */
  close(): Promise<void> {
    if (!this.wsClosed) this.engine.close();
    return this.wsClosedPromise;
  }

  private onMessage(data: unknown): void {
    const bytes = messageData(data);
    if (typeof bytes === 'string') this.engine.receiveText();
    else if (bytes) this.engine.receive(bytes);
    else this.engine.close(new SockgateError('SOCKGATE_ERR_INTERNAL', 'binary message not delivered as an ArrayBuffer'));
    // A WINDOW may have unblocked DATA that now waits for the transport.
    this.poller.check();
  }

  private stopHandshake(): void {
    if (this.openTimer !== undefined) clearTimeout(this.openTimer);
    this.openTimer = undefined;
    this.signal?.removeEventListener('abort', this.onHandshakeAbort);
  }

  private engineClosed(err: SockgateError | undefined): void {
    this.poller.stop();
    this.signal?.removeEventListener('abort', this.onAbort);
    if (!this.isOpen) return; // a failed handshake: openSession's rejection says it all
    const info = this.closeInfo ?? { code: err ? closeCodeOf(err) : 1000, reason: err?.message ?? '' };
    this.closeInfo = info;
    if (err) this.emit(new SessionErrorEvent(err));
    this.emit(new SessionCloseEvent(info.code, info.reason, err));
  }
}
