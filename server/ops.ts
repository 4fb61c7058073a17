/**
 * Operations, wired into the plugin in one place: metrics (server/metrics.ts), keepalive (server/keepalive.ts),
 * graceful drain (server/drain.ts), config reload (server/reload.ts) and the admin listener (server/admin.ts).
 * The plugin hands every session it accepts to trackRaw() / trackMux(); the app gets `app.sockgate`, the
 * control surface createGateway() and the CLI drive (docs/OPERATIONS.md).
 */
import type { FastifyBaseLogger } from 'fastify';
import { WebSocket } from 'ws';
import { ERRORS, SockgateError } from '../shared/errors.js';
import { AdminServer, type AdminAddress, type OpsState } from './admin.js';
import { isLoopbackHost, type GatewayConfig } from './config.js';
import { Drainer, type DrainResult } from './drain.js';
import { startKeepalive, terminateAfter } from './keepalive.js';
import { GatewayMetrics } from './metrics.js';
import type { MuxSessionHandle } from './mux.js';
import type { LiveConfig, ReloadResult, SessionCredential } from './reload.js';
import { closeReasonBytes } from './ws-util.js';

/**
 * After the gateway sends a close frame (keepalive, drain), the peer gets this long (ms) to answer before the
 * connection is terminated; the same bound as the plugin's SHUTDOWN_GRACE_MS.
 */
export const CLOSE_GRACE_MS = 2000;

/** `app.sockgate`: what an app (createGateway(), the CLI, an embedder) can do with a running gateway. */
export interface SockgateControl {
  /** The configuration in force; a reload replaces it. */
  readonly config: GatewayConfig;
  /** True once a drain started: /readyz answers 503 and new upgrades are refused with 503. */
  readonly draining: boolean;
  /** WebSocket sessions open now (raw and mux). */
  readonly sessions: number;
  readonly metrics: GatewayMetrics;
  /**
   * Swap in a new configuration for new sessions and OPENs (server/reload.ts). Rejects with the config's error
   * and keeps the running one when the new one is invalid.
   */
  reload(input: unknown): Promise<ReloadResult>;
  /** Start draining without waiting: /readyz 503, new upgrades refused. drain() does this first. */
  beginDrain(): void;
  /**
   * Drain the sessions (server/drain.ts): GOAWAY to mux sessions, wait up to `deadlineMs` (default
   * limits.drainTimeoutMs) for streams under way, close the rest (mux 4003, raw 1001). The listeners stay open:
   * createGateway()'s drain() closes them.
   */
  drain(deadlineMs?: number): Promise<DrainResult>;
  /** Start the admin listener (config `admin`); undefined without one. Started on the app's onListen too. */
  listenAdmin(): Promise<AdminAddress | undefined>;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** sockgate's operations: reload, drain, metrics, admin listener (server/ops.ts). */
    sockgate: SockgateControl;
  }
}

export interface OperationsOptions {
  live: LiveConfig;
  log: FastifyBaseLogger;
  /** Run before a reload's swap with the new config (start what its routes need); a throw refuses the reload. */
  prepareReload?: (config: GatewayConfig) => Promise<void>;
}

export class Operations implements OpsState {
  readonly metrics: GatewayMetrics;
  readonly drainer = new Drainer();
  readonly #live: LiveConfig;
  readonly #log: FastifyBaseLogger;
  readonly #prepareReload: ((config: GatewayConfig) => Promise<void>) | undefined;
  /** The admin address as configured at start: it cannot change without a restart. */
  readonly #adminAt: GatewayConfig['admin'];
  readonly #handshakeTimeoutMs: number;
  #admin: AdminServer | undefined;
  #adminListening: Promise<AdminAddress | undefined> | undefined;

  constructor(options: OperationsOptions) {
    this.#live = options.live;
    this.#log = options.log;
    this.#prepareReload = options.prepareReload;
    this.#adminAt = options.live.config.admin;
    this.#handshakeTimeoutMs = options.live.config.limits.handshakeTimeoutMs;
    this.metrics = new GatewayMetrics({ knownRoute: (name) => this.#live.config.routes.has(name) });
    this.drainer.onBegin = () => this.metrics.setDraining(true);
  }

  get config(): GatewayConfig {
    return this.#live.config;
  }

  get draining(): boolean {
    return this.drainer.draining;
  }

  /** The refusal for an upgrade while draining (503), else undefined. */
  refuseWhileDraining(): SockgateError | undefined {
    if (!this.drainer.draining) return undefined;
    return new SockgateError('SOCKGATE_ERR_SESSION_GOING_AWAY', 'the gateway is draining for shutdown');
  }

  /** A raw connection was accepted: count it, ping it, and let a drain close it at the deadline. */
  trackRaw(ws: WebSocket, route: string, log: FastifyBaseLogger): void {
    const closeSession = this.metrics.sessionOpened('raw', route);
    const { keepaliveIntervalMs, keepaliveTimeoutMs } = this.#live.config.limits;
    const keepalive = startKeepalive(ws, {
      intervalMs: keepaliveIntervalMs,
      timeoutMs: keepaliveTimeoutMs,
      onTimeout: () => {
        this.metrics.keepaliveTimeout('raw');
        log.info({ keepaliveTimeoutMs }, 'raw connection closed: no answer to a keepalive ping');
        closeWs(ws, ERRORS.SOCKGATE_ERR_SESSION_PING_TIMEOUT.closeCode, ERRORS.SOCKGATE_ERR_SESSION_PING_TIMEOUT.message);
      },
    });
    const drain = this.drainer.add({
      mode: 'raw',
      goAway: () => {},
      busy: true,
      close: () => closeWs(ws, 1001, 'gateway shutting down'),
      terminate: () => ws.terminate(),
    });
    ws.once('close', () => {
      keepalive?.stop();
      closeSession();
      drain.closed();
    });
  }

  /** A mux session started: count it, ping it (app PING too), and drain it with GOAWAY. */
  trackMux(ws: WebSocket, handle: MuxSessionHandle, credential: SessionCredential | undefined, log: FastifyBaseLogger): void {
    const closeSession = this.metrics.sessionOpened('mux');
    const { session } = handle;
    const { keepaliveIntervalMs, keepaliveTimeoutMs } = this.#live.config.limits;
    const keepalive = startKeepalive(ws, {
      intervalMs: keepaliveIntervalMs,
      timeoutMs: keepaliveTimeoutMs,
      // Rejected when the session ends, or with too many PINGs unanswered: the timeout judges those.
      appPing: () => void session.ping().catch(() => {}),
      messages: (heard) => (handle.transport.onMessage = heard),
      onTimeout: () => {
        this.metrics.keepaliveTimeout('mux');
        log.info({ keepaliveTimeoutMs }, 'mux session closed: no answer to a keepalive PING');
        session.close(new SockgateError('SOCKGATE_ERR_SESSION_PING_TIMEOUT', `no answer within ${keepaliveTimeoutMs} ms`));
        terminateAfter(ws, CLOSE_GRACE_MS);
      },
    });
    const drain = this.drainer.add({
      mode: 'mux',
      goAway: () => session.goAway(),
      get busy() {
        return handle.busy;
      },
      close: (why) => {
        session.close(
          why === 'finished'
            ? new SockgateError('SOCKGATE_ERR_SESSION_GOING_AWAY', 'gateway shutting down')
            : new SockgateError('SOCKGATE_ERR_SESSION_DRAIN_TIMEOUT', 'streams still open at the drain deadline'),
        );
        terminateAfter(ws, CLOSE_GRACE_MS);
      },
      terminate: () => ws.terminate(),
    });
    handle.onSettled = drain.settled;
    ws.once('close', () => {
      keepalive?.stop();
      closeSession();
      drain.closed();
      if (credential) this.#live.untrack(credential);
    });
  }

  async reload(input: unknown): Promise<ReloadResult> {
    let result: ReloadResult;
    try {
      result = await this.#live.reload(input, this.#prepareReload);
    } catch (err) {
      this.metrics.reloaded(false);
      throw err;
    }
    this.metrics.reloaded(true);
    const fields = { routes: [...result.config.routes.keys()], generation: this.#live.generation, revoked: result.revoked };
    if (result.restartNeeded.length > 0) {
      this.#log.warn(
        { ...fields, restartNeeded: result.restartNeeded },
        `configuration reloaded; ${result.restartNeeded.join(', ')} changed and need a restart: the running values stay`,
      );
    } else {
      this.#log.info(fields, 'configuration reloaded');
    }
    return result;
  }

  beginDrain(): void {
    if (this.drainer.begin()) this.#log.info({ sessions: this.drainer.size }, 'draining: new sessions are refused');
  }

  async drain(deadlineMs = this.#live.config.limits.drainTimeoutMs): Promise<DrainResult> {
    this.beginDrain();
    const result = await this.drainer.drain(deadlineMs, CLOSE_GRACE_MS);
    this.#log.info({ ...result, deadlineMs }, 'drained');
    return result;
  }

  listenAdmin(): Promise<AdminAddress | undefined> {
    const at = this.#adminAt;
    if (!at) return Promise.resolve(undefined);
    this.#adminListening ??= (async () => {
      const server = new AdminServer(this, this.#handshakeTimeoutMs);
      this.#admin = server;
      const address = await server.listen(at.listen);
      this.#log.info({ url: address.url }, `admin listening on ${address.url} (/metrics, /healthz, /readyz)`);
      if (!isLoopbackHost(at.listen.host)) {
        this.#log.warn({ url: address.url }, 'the admin listener is not on loopback and has no credentials: /metrics names every route');
      }
      return address;
    })();
    return this.#adminListening;
  }

  /** Close the admin listener (the plugin's onClose). */
  async close(): Promise<void> {
    await this.#admin?.close();
  }

  /** The control surface for `app.sockgate`. */
  control(): SockgateControl {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const ops = this;
    return {
      get config() {
        return ops.config;
      },
      get draining() {
        return ops.draining;
      },
      get sessions() {
        return ops.drainer.size;
      },
      metrics: ops.metrics,
      reload: (input) => ops.reload(input),
      beginDrain: () => ops.beginDrain(),
      drain: (deadlineMs) => ops.drain(deadlineMs),
      listenAdmin: () => ops.listenAdmin(),
    };
  }
}

/** Close a WebSocket the gateway gives up on, and terminate it if the peer does not answer the close in time. */
function closeWs(ws: WebSocket, code: number, reason: string): void {
  if (ws.readyState === WebSocket.OPEN) {
    ws.close(code, closeReasonBytes(reason));
    // Raw mode may have paused reading (a slow backend): the peer's close frame must still be read.
    ws.resume();
  }
  terminateAfter(ws, CLOSE_GRACE_MS);
}
