/**
 * Graceful shutdown of the sessions (gateway.drain(), SIGTERM in the CLI; docs/OPERATIONS.md):
 *
 * 1. `begin()`: the gateway is draining. `/readyz` answers 503 and new upgrades are refused with 503, so load
 *    balancers and clients go elsewhere; the caller then closes the listening port.
 * 2. Every mux session gets GOAWAY (PROTOCOL 6.2): its streams go on, new OPENs are refused with
 *    SOCKGATE_ERR_STREAM_SHUTTING_DOWN. A session with nothing under way (no stream, no backend connection still
 *    flushing) is closed at once with 1001, and so is each one whose last stream finishes later: a client whose
 *    transfer is done does not wait for the deadline, and no byte of a finished stream is lost (the close frame
 *    follows the last DATA and FIN, and a backend connection still flushing keeps its session open).
 * 3. At the deadline (limits.drainTimeoutMs) what is left is closed: mux sessions with 4003
 *    SOCKGATE_ERR_SESSION_DRAIN_TIMEOUT, raw connections with 1001. Peers that do not finish the closing
 *    handshake within the grace period are terminated.
 *
 * Raw connections carry one stream each and have no GOAWAY; they end by themselves or at the deadline.
 */

/** One live WebSocket session, as the drain sees it. */
export interface Drainable {
  readonly mode: 'raw' | 'mux';
  /** Announce that no new stream will be accepted (mux: GOAWAY); raw: nothing. */
  goAway(): void;
  /** Streams or backend connections of this session are still under way. Raw connections always are. */
  readonly busy: boolean;
  /**
   * Close the session: `finished` when nothing is under way any more (1001), `deadline` when the drain deadline
   * passed (mux 4003, raw 1001). Called at most once for each.
   */
  close(why: 'finished' | 'deadline'): void;
  /** End the connection without a closing handshake (the peer did not answer the close). */
  terminate(): void;
}

/** Returned by Drainer.add(): how a session reports its progress. */
export interface DrainHandle {
  /** A stream or a backend connection of the session finished: while draining, it is closed if nothing is left. */
  settled(): void;
  /** The session's WebSocket closed. */
  closed(): void;
}

export interface DrainResult {
  /** Sessions closed because everything under way had finished (or that ended by themselves). */
  readonly finished: number;
  /** Sessions still busy at the deadline, closed with 4003 (mux) or 1001 (raw). */
  readonly atDeadline: number;
}

export class Drainer {
  readonly #sessions = new Set<Drainable>();
  readonly #closing = new Set<Drainable>();
  #draining = false;
  #emptyWaiters: (() => void)[] = [];
  #result: Promise<DrainResult> | undefined;

  /** Called when draining starts (for metrics). */
  onBegin: (() => void) | undefined;

  /** True from begin() on: new sessions are refused and /readyz answers 503. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Sessions open now. */
  get size(): number {
    return this.#sessions.size;
  }

  /** Track a session from its upgrade to its close. A session added while draining gets GOAWAY at once. */
  add(session: Drainable): DrainHandle {
    this.#sessions.add(session);
    if (this.#draining) {
      session.goAway();
      this.#closeIfIdle(session);
    }
    return {
      settled: () => {
        // Deferred: this runs inside the engine's stream callbacks, which must not see their session close.
        if (this.#draining) queueMicrotask(() => this.#closeIfIdle(session));
      },
      closed: () => {
        this.#sessions.delete(session);
        this.#closing.delete(session);
        if (this.#sessions.size === 0) {
          const waiters = this.#emptyWaiters;
          this.#emptyWaiters = [];
          for (const w of waiters) w();
        }
      },
    };
  }

  /** Start draining: from now on new sessions are refused. Returns false if it had already started. */
  begin(): boolean {
    if (this.#draining) return false;
    this.#draining = true;
    this.onBegin?.();
    return true;
  }

  /**
   * Drain every session (see the file comment): GOAWAY, wait up to `deadlineMs` for what is under way, close
   * what is left, and wait up to `graceMs` for those closes before terminating. Resolves once every session is
   * closed. Calling it again returns the same drain.
   */
  drain(deadlineMs: number, graceMs: number): Promise<DrainResult> {
    this.#result ??= this.#run(deadlineMs, graceMs);
    return this.#result;
  }

  async #run(deadlineMs: number, graceMs: number): Promise<DrainResult> {
    this.begin();
    const before = this.#sessions.size;
    for (const s of [...this.#sessions]) s.goAway();
    for (const s of [...this.#sessions]) this.#closeIfIdle(s);
    let atDeadline = 0;
    if (!(await this.#waitEmpty(deadlineMs))) {
      const left = [...this.#sessions];
      atDeadline = left.filter((s) => !this.#closing.has(s)).length;
      for (const s of left) {
        if (this.#closing.has(s)) continue;
        this.#closing.add(s);
        s.close('deadline');
      }
    }
    if (!(await this.#waitEmpty(graceMs))) {
      for (const s of [...this.#sessions]) s.terminate();
      // terminate() closes the socket at once; its 'close' event follows within a tick or two.
      await this.#waitEmpty(graceMs);
    }
    return { finished: Math.max(0, before - atDeadline), atDeadline };
  }

  #closeIfIdle(session: Drainable): void {
    if (!this.#sessions.has(session) || this.#closing.has(session) || session.busy) return;
    this.#closing.add(session);
    session.close('finished');
  }

  /** Resolves true when no session is left, false after `ms`. */
  #waitEmpty(ms: number): Promise<boolean> {
    if (this.#sessions.size === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.#emptyWaiters = this.#emptyWaiters.filter((w) => w !== done);
        resolve(false);
      }, ms);
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.#emptyWaiters.push(done);
    });
  }
}
