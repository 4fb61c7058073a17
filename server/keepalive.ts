/**
 * Keepalive (limits.keepaliveIntervalMs, keepaliveTimeoutMs): the gateway pings every session and closes a peer
 * that sends nothing back in time with 4001 SOCKGATE_ERR_SESSION_PING_TIMEOUT (PROTOCOL 6.1, 7.2). Without it a
 * peer that vanished (a laptop asleep, a NAT that forgot the mapping) keeps its session slot and its backends for
 * the operating system's TCP timeouts, which can be hours.
 *
 * Every interval a session gets a WebSocket ping frame; a mux session also gets an app-level PING, which only a
 * running session engine answers (browsers answer WebSocket pings in their network stack, even when the page's
 * script is stuck). The answer that counts is:
 * - raw mode: the WebSocket pong, or any message;
 * - mux mode: any message (the PONG is one; WINDOW and DATA frames prove life as well as a PONG does). The
 *   gateway reads most of a mux session's messages beside ws (client/frame-reader.ts), so there the transport
 *   reports them (`messages`), not ws's 'message' event.
 *
 * The timeout counts from when the ping left for the network (ws's write callback), not from when it was queued:
 * behind a megabyte of output on a slow link the ping waits its turn, and that wait is not the peer's fault. A
 * ping that cannot leave for a whole interval (nothing drains: the peer reads nothing) starts its timeout then.
 * While the gateway itself does not read the WebSocket (raw mode pauses it while a backend is slow), the peer's
 * answer cannot be seen, so the verdict waits. Timers are unref'd and released when the WebSocket closes.
 */
import { WebSocket } from 'ws';

export interface KeepaliveOptions {
  /** Milliseconds between pings; 0 disables keepalive (startKeepalive returns undefined). */
  intervalMs: number;
  /** Milliseconds the peer has to answer, from when the ping left. */
  timeoutMs: number;
  /** Mux mode: send an app-level PING with each ping; a WebSocket pong then no longer counts as an answer. */
  appPing?: () => void;
  /** The peer did not answer in time. Keepalive has stopped; close the session (4001). */
  onTimeout: () => void;
  /**
   * Where the peer's messages are heard: called once with the listener to call for each message (a mux session's
   * WsTransport.onMessage). Not given: ws's 'message' event.
   */
  messages?: (listener: () => void) => void;
}

/** Start pinging `ws`; undefined when intervalMs is 0. Stops by itself when the WebSocket closes. */
export function startKeepalive(ws: WebSocket, options: KeepaliveOptions): Keepalive | undefined {
  return options.intervalMs > 0 ? new Keepalive(ws, options) : undefined;
}

export class Keepalive {
  readonly #ws: WebSocket;
  readonly #options: KeepaliveOptions;
  readonly #interval: ReturnType<typeof setInterval>;
  #deadline: ReturnType<typeof setTimeout> | undefined;
  /** A ping is out and nothing has come back since it was sent. */
  #waiting = false;
  #stopped = false;
  readonly #answered = (): void => {
    if (!this.#waiting) return;
    this.#waiting = false;
    this.#clearDeadline();
  };
  readonly #stop = (): void => this.stop();

  constructor(ws: WebSocket, options: KeepaliveOptions) {
    this.#ws = ws;
    this.#options = options;
    if (options.messages) options.messages(this.#answered);
    else ws.on('message', this.#answered);
    if (!options.appPing) ws.on('pong', this.#answered);
    ws.once('close', this.#stop);
    this.#interval = setInterval(() => this.#tick(), options.intervalMs);
    this.#interval.unref();
  }

  /** Stop pinging and release the timers. Idempotent. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#interval);
    this.#clearDeadline();
    this.#ws.off('message', this.#answered);
    this.#ws.off('pong', this.#answered);
    this.#ws.off('close', this.#stop);
  }

  /** True while a ping is unanswered (for tests). */
  get waiting(): boolean {
    return this.#waiting;
  }

  #tick(): void {
    if (this.#ws.readyState !== WebSocket.OPEN) return;
    if (this.#waiting) {
      // The last ping has not even left in a whole interval: the peer reads nothing. Its timeout starts now.
      this.#arm();
      return;
    }
    this.#waiting = true;
    this.#options.appPing?.();
    // ws calls back once the frame was written to the socket, in order: the app PING sent just before has left too.
    this.#ws.ping(undefined, undefined, (err?: Error) => {
      if (!err) this.#arm();
    });
  }

  #arm(): void {
    if (this.#stopped || !this.#waiting || this.#deadline !== undefined) return;
    this.#deadline = setTimeout(() => this.#expire(), this.#options.timeoutMs);
    this.#deadline.unref();
  }

  #expire(): void {
    this.#deadline = undefined;
    if (this.#stopped || !this.#waiting) return;
    if (this.#ws.isPaused) {
      // We are not reading the WebSocket (raw mode waits for a slow backend): an answer could not be seen yet.
      this.#arm();
      return;
    }
    this.stop();
    this.#options.onTimeout();
  }

  #clearDeadline(): void {
    if (this.#deadline !== undefined) clearTimeout(this.#deadline);
    this.#deadline = undefined;
  }
}

/**
 * After a close frame was sent to a peer that may be gone: terminate the connection if the closing handshake has
 * not finished within `graceMs`, rather than ws's own 30 s.
 */
export function terminateAfter(ws: WebSocket, graceMs: number): void {
  if (ws.readyState === WebSocket.CLOSED) return;
  const timer = setTimeout(() => ws.terminate(), graceMs);
  timer.unref();
  ws.once('close', () => clearTimeout(timer));
}
