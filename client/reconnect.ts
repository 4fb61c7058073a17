/**
 * A session that stays connected: openSession(url, { reconnect }) returns a ReconnectingSession. It holds one
 * SockgateSession at a time and replaces it after a loss or a GOAWAY, with exponential backoff and full jitter.
 * Streams never move between connections: a stream on a lost connection ends with that connection's error (no
 * replay); after GOAWAY, streams on the old connection finish there while new ones go to the new connection.
 */
import { SockgateError } from '../shared/errors.js';
import { toSockgateError } from './errors.js';
import { SessionCloseEvent, SessionErrorEvent, SessionGoAwayEvent, TypedEventTarget, type SessionEventMap } from './events.js';
import type { OpenSessionOptions, SockgateSession } from './session.js';
import { SockgateSocket, type SocketOpenInfo } from './socket.js';

export interface ReconnectOptions {
  /** Upper bound of the first retry's random delay, in ms. Default 250. */
  initialDelayMs?: number;
  /** Cap of the backoff, in ms: attempt n waits random(0, min(max, initial * 2^(n-1))). Default 30,000. */
  maxDelayMs?: number;
  /** Attempts per outage before the session closes for good. Default Infinity (retry until close()). */
  maxRetries?: number;
}

export type ReconnectingState = 'open' | 'reconnecting' | 'closed';

/** The link is down; attempt `attempt` starts in `delayMs`. `error` is why the last connection or attempt failed. */
/** connect() calls that may wait for a reconnection at once; more are refused with SOCKGATE_ERR_SDK_NOT_CONNECTED. */
const MAX_WAITING_CONNECTS = 1024;

export class SessionReconnectingEvent extends Event {
  constructor(
    readonly attempt: number,
    readonly delayMs: number,
    readonly error: SockgateError | undefined,
  ) {
    super('reconnecting');
  }
}

/** A new connection is open; `connect()` calls made while reconnecting now proceed on it. */
export class SessionReconnectedEvent extends Event {
  constructor(readonly attempt: number) {
    super('reconnected');
  }
}

export interface ReconnectingSessionEventMap extends SessionEventMap {
  reconnecting: SessionReconnectingEvent;
  reconnected: SessionReconnectedEvent;
}

/** The public surface of a socket; what ReconnectingSession.connect() returns (a SockgateSocket when connected). */
export type SocketLike = Pick<SockgateSocket, 'route' | 'readable' | 'writable' | 'opened' | 'closed' | 'close' | 'reset' | 'bufferedAmount'>;

type OpenOnce = (url: string | URL, options: OpenSessionOptions) => Promise<SockgateSession>;

const DEFAULT_INITIAL_DELAY_MS = 250;
const DEFAULT_MAX_DELAY_MS = 30_000;
const DEFAULT_OPEN_TIMEOUT_MS = 10_000;
/** A dead link (no FIN, no RST: a sleeping laptop, a NAT that forgot us) is found within interval + timeout. */
const DEFAULT_KEEPALIVE_INTERVAL_MS = 15_000;

/** A handshake refused for credentials will be refused again: ws says "Unexpected server response: 401". */
function isAuthRefusal(err: unknown): boolean {
  return err instanceof SockgateError && err.code === 'SOCKGATE_ERR_SDK_HANDSHAKE' && /\b40[13]\b/.test(err.message);
}

interface Waiter {
  resolve: (s: SockgateSession) => void;
  reject: (err: SockgateError) => void;
}

interface BrowserTarget {
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
}

/** @internal Use openSession(url, { reconnect }). Resolves once the first connection is open. */
export async function openReconnecting(url: string | URL, options: OpenSessionOptions, openOnce: OpenOnce): Promise<ReconnectingSession> {
  const { reconnect: _r, keepaliveIntervalMs: _k, ...once } = options;
  const first = await openOnce(url, once);
  return new ReconnectingSession(url, options, once, openOnce, first);
}

export class ReconnectingSession extends TypedEventTarget<ReconnectingSessionEventMap> {
  /** The mux URL, with any access token masked. */
  readonly url: string;

  private current: SockgateSession | undefined;
  /** Connections that received GOAWAY: they close when their last socket ends. */
  private readonly draining = new Set<SockgateSession>();
  private readonly waiters = new Set<Waiter>();
  private isClosed = false;
  private attempt = 0;
  private delayTimer: ReturnType<typeof setTimeout> | undefined;
  private wakeDelay: (() => void) | undefined;
  private offline = false;
  private keepaliveTimer: ReturnType<typeof setInterval> | undefined;
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly maxRetries: number;
  private readonly openTimeoutMs: number;
  private readonly keepaliveIntervalMs: number;
  private readonly keepaliveTimeoutMs: number;
  private readonly win: BrowserTarget | undefined;
  private readonly doc: (BrowserTarget & { visibilityState?: string }) | undefined;
  private closedPromise: Promise<void> | undefined;

  /** @internal */
  constructor(
    private readonly target: string | URL,
    options: OpenSessionOptions,
    private readonly onceOptions: OpenSessionOptions,
    private readonly openOnce: OpenOnce,
    first: SockgateSession,
  ) {
    super();
    const r = typeof options.reconnect === 'object' ? options.reconnect : {};
    this.initialDelayMs = r.initialDelayMs ?? DEFAULT_INITIAL_DELAY_MS;
    this.maxDelayMs = r.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    this.maxRetries = r.maxRetries ?? Infinity;
    this.openTimeoutMs = options.openTimeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS;
    this.keepaliveIntervalMs = options.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS;
    this.keepaliveTimeoutMs = options.keepaliveTimeoutMs ?? Math.min(this.keepaliveIntervalMs, 10_000);
    this.url = first.url;
    const g = globalThis as { window?: BrowserTarget; document?: BrowserTarget & { visibilityState?: string } };
    // Node has neither window nor document: only browsers get the online/offline/visibility hooks.
    this.win = typeof g.window?.addEventListener === 'function' ? g.window : undefined;
    this.doc = typeof g.document?.addEventListener === 'function' ? g.document : undefined;
    this.win?.addEventListener('offline', this.onOffline);
    this.win?.addEventListener('online', this.onOnline);
    this.doc?.addEventListener('visibilitychange', this.onVisibility);
    options.signal?.addEventListener('abort', () => void this.close(), { once: true });
    this.attach(first);
    if (this.keepaliveIntervalMs > 0) {
      this.keepaliveTimer = setInterval(() => this.checkLink(), this.keepaliveIntervalMs);
    }
  }

  /** 'open' while connected, 'reconnecting' during an outage, 'closed' after close() or a final failure. */
  get state(): ReconnectingState {
    if (this.isClosed) return 'closed';
    return this.current?.state === 'open' ? 'open' : 'reconnecting';
  }

  /** Latest PING round-trip time of the current connection, in ms. */
  get rtt(): number | undefined {
    return this.current?.rtt;
  }

  get bufferedAmount(): number {
    let n = this.current?.bufferedAmount ?? 0;
    for (const s of this.draining) n += s.bufferedAmount;
    return n;
  }

  get socketCount(): number {
    let n = this.current?.socketCount ?? 0;
    for (const s of this.draining) n += s.socketCount;
    return n;
  }

  /**
   * A socket to a named route on the current connection. While reconnecting, the socket waits for the new
   * connection; its `opened` rejects with SOCKGATE_ERR_SDK_NOT_CONNECTED after openTimeoutMs, when the retries
   * run out, or when the session is closed.
   */
  connect(route: string): SocketLike {
    if (this.isClosed) return new SockgateSocket(route, new SockgateError('SOCKGATE_ERR_SDK_NOT_CONNECTED'));
    if (this.current?.state === 'open') return this.track(this.current, this.current.connect(route));
    return new PendingSocket(route, this.waitForConnection().then((s) => this.track(s, s.connect(route))));
  }

  /** PING the current connection (rejects with SOCKGATE_ERR_SDK_NOT_CONNECTED while reconnecting). */
  ping(): Promise<number> {
    if (!this.current || this.current.state !== 'open') return Promise.reject(new SockgateError('SOCKGATE_ERR_SDK_NOT_CONNECTED'));
    return this.current.ping();
  }

  /** Close for good: no more reconnects; open sockets end with SOCKGATE_ERR_SESSION_CLOSED. */
  close(): Promise<void> {
    this.closedPromise ??= this.finish(undefined);
    return this.closedPromise;
  }

  private async finish(err: SockgateError | undefined): Promise<void> {
    this.isClosed = true;
    this.cancelDelay();
    if (this.keepaliveTimer !== undefined) clearInterval(this.keepaliveTimer);
    this.win?.removeEventListener('offline', this.onOffline);
    this.win?.removeEventListener('online', this.onOnline);
    this.doc?.removeEventListener('visibilitychange', this.onVisibility);
    const notConnected = new SockgateError('SOCKGATE_ERR_SDK_NOT_CONNECTED', err?.message, err ? { cause: err } : undefined);
    for (const w of this.waiters) w.reject(notConnected);
    this.waiters.clear();
    const sessions = [...this.draining, ...(this.current ? [this.current] : [])];
    this.current = undefined;
    this.draining.clear();
    await Promise.all(sessions.map((s) => s.close()));
    if (err) this.emit(new SessionErrorEvent(err));
    this.emit(new SessionCloseEvent(err ? 1006 : 1000, err?.message ?? '', err));
  }

  private attach(s: SockgateSession): void {
    this.current = s;
    s.addEventListener('goaway', (event) => {
      if (this.current !== s) return;
      this.emit(new SessionGoAwayEvent(event.error));
      // Old streams finish on s; new ones wait for (or go to) the next connection.
      this.current = undefined;
      this.draining.add(s);
      this.closeIfIdle(s);
      this.reconnect(event.error, true);
    });
    s.addEventListener('close', (event) => {
      this.draining.delete(s);
      if (this.current !== s || this.isClosed) return;
      this.current = undefined;
      this.reconnect(event.error ?? new SockgateError('SOCKGATE_ERR_SESSION_LOST', `closed with ${event.code} ${event.reason}`), false);
    });
  }

  private track(s: SockgateSession, socket: SockgateSocket): SockgateSocket {
    // A draining connection closes when its last socket ends.
    const check = (): void => this.closeIfIdle(s);
    socket.closed.then(check, check);
    return socket;
  }

  private closeIfIdle(s: SockgateSession): void {
    if (this.draining.has(s) && s.socketCount === 0) void s.close();
  }

  private waitForConnection(): Promise<SockgateSession> {
    // connect() calls made during an outage wait here; an application looping on connect() must not grow this
    // without bound (each waiter also holds a timer and a stand-in socket).
    if (this.waiters.size >= MAX_WAITING_CONNECTS) {
      return Promise.reject(new SockgateError('SOCKGATE_ERR_SDK_NOT_CONNECTED', `${MAX_WAITING_CONNECTS} connect() calls already wait for a reconnection`));
    }
    return new Promise<SockgateSession>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new SockgateError('SOCKGATE_ERR_SDK_NOT_CONNECTED', `not reconnected within ${this.openTimeoutMs} ms`));
      }, this.openTimeoutMs);
      const waiter: Waiter = {
        resolve: (s) => {
          clearTimeout(timer);
          resolve(s);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.waiters.add(waiter);
    });
  }

  /** Start the retry loop (once per outage). `now`: skip the first delay (GOAWAY: the server asked us to move). */
  private reconnect(error: SockgateError | undefined, now: boolean): void {
    if (this.isClosed || this.attempt > 0) return;
    void this.loop(error, now);
  }

  private async loop(error: SockgateError | undefined, now: boolean): Promise<void> {
    let last = error;
    for (this.attempt = 1; this.attempt <= this.maxRetries; this.attempt++) {
      const attempt = this.attempt;
      const ceiling = Math.min(this.maxDelayMs, this.initialDelayMs * 2 ** (attempt - 1));
      const delayMs = now && attempt === 1 ? 0 : Math.floor(Math.random() * ceiling);
      this.emit(new SessionReconnectingEvent(attempt, delayMs, last));
      await this.delay(delayMs);
      // Offline (browsers): wait for 'online' rather than spend attempts on a link known to be down.
      while (this.offline && !this.isClosed) await this.delay(Infinity);
      if (this.isClosed) return;
      try {
        const s = await this.openOnce(this.target, this.onceOptions);
        if (this.isClosed) {
          void s.close();
          return;
        }
        this.attempt = 0;
        this.attach(s);
        this.emit(new SessionReconnectedEvent(attempt));
        for (const w of this.waiters) w.resolve(s);
        this.waiters.clear();
        return;
      } catch (err) {
        last = toSockgateError(err, 'SOCKGATE_ERR_SDK_HANDSHAKE');
        if (this.isClosed) return;
        if (isAuthRefusal(last)) break;
      }
    }
    this.attempt = 0;
    if (!this.isClosed) this.closedPromise ??= this.finish(last ?? new SockgateError('SOCKGATE_ERR_SDK_NOT_CONNECTED', 'retries exhausted'));
  }

  /** Sleep, cut short by cancelDelay() (online, close). */
  private delay(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wakeDelay = resolve;
      if (ms !== Infinity) this.delayTimer = setTimeout(resolve, ms);
    });
  }

  private cancelDelay(): void {
    if (this.delayTimer !== undefined) clearTimeout(this.delayTimer);
    this.delayTimer = undefined;
    const wake = this.wakeDelay;
    this.wakeDelay = undefined;
    wake?.();
  }

  /** PING the current connection; no PONG within keepaliveTimeoutMs means a dead link: drop it and reconnect. */
  private checkLink(): void {
    const s = this.current;
    if (!s || s.state !== 'open') return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.keepaliveTimeoutMs)));
    void Promise.race([s.ping().catch(() => 'failed' as const), timeout]).then((result) => {
      clearTimeout(timer);
      if (result === 'timeout' && this.current === s) s.abort(new SockgateError('SOCKGATE_ERR_SESSION_PING_TIMEOUT'));
    });
  }

  private readonly onOffline = (): void => {
    this.offline = true;
  };

  private readonly onOnline = (): void => {
    this.offline = false;
    this.cancelDelay(); // retry at once
  };

  private readonly onVisibility = (): void => {
    if (this.doc?.visibilityState === 'visible') this.checkLink();
  };
}

/**
 * A socket asked for while reconnecting: the same surface as SockgateSocket, backed by the real socket once the
 * new connection is open. Reads pull from the real socket one chunk at a time, so its flow control still holds.
 */
class PendingSocket implements SocketLike {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  readonly opened: Promise<SocketOpenInfo>;
  readonly closed: Promise<void>;
  private inner: SockgateSocket | undefined;
  private reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  private writer: WritableStreamDefaultWriter<Uint8Array> | undefined;

  constructor(
    readonly route: string,
    socket: Promise<SockgateSocket>,
  ) {
    const ready = socket.then((s) => {
      this.inner = s;
      return s;
    });
    this.readable = new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          this.reader ??= (await ready).readable.getReader();
          const { done, value } = await this.reader.read();
          if (done) controller.close();
          else controller.enqueue(value);
        },
        cancel: async (reason) => {
          const s = await ready.catch(() => undefined);
          await (this.reader ?? s?.readable)?.cancel(reason);
        },
      },
      { highWaterMark: 0 },
    );
    this.writable = new WritableStream<Uint8Array>({
      write: async (chunk) => {
        this.writer ??= (await ready).writable.getWriter();
        await this.writer.write(chunk);
      },
      close: async () => {
        this.writer ??= (await ready).writable.getWriter();
        await this.writer.close();
      },
      abort: async (reason) => {
        const s = await ready.catch(() => undefined);
        await (this.writer ?? s?.writable)?.abort(reason);
      },
    });
    this.opened = ready.then((s) => s.opened).then((info) => ({ ...info, readable: this.readable, writable: this.writable }));
    this.closed = ready.then((s) => s.closed);
    this.opened.catch(() => {});
    this.closed.catch(() => {});
  }

  get bufferedAmount(): number {
    return this.inner?.bufferedAmount ?? 0;
  }

  async close(): Promise<void> {
    const s = await this.opened.then(() => this.inner, () => undefined);
    if (!s) return this.closed;
    if (this.writer) await this.writer.close().catch(() => {});
    await s.close();
  }

  reset(reason?: string): void {
    if (this.inner) this.inner.reset(reason);
    else void this.opened.then(() => this.inner?.reset(reason), () => {});
  }
}
