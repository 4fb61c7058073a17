/**
 * Prometheus metrics (prom-client) for one gateway, in a Registry of its own so that several gateways in one
 * process (tests, an app embedding two) never clash. Node's process metrics (prom-client's default set: CPU,
 * memory, event-loop lag, GC, handles) are collected once per process, in a registry of their own, and appended
 * to every scrape. docs/OPERATIONS.md lists every metric with its labels.
 *
 * Nothing here runs per chunk. The adapters already count each stream's bytes (the engine's Stream.bytesIn and
 * bytesOut, raw mode's totals); a stream is registered once when it opens, and its bytes reach the counter when
 * it closes and, while it is open, at each scrape (the counter's collect()), so a long-lived stream is never
 * missing from a graph and a short one costs two counter increments.
 *
 * Labels never hold client text: a route name the config does not have is counted as UNKNOWN_ROUTE_LABEL, and
 * error codes come from the registry (shared/errors.ts), so the number of series is bounded by the config.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ErrorCode } from '../shared/errors.js';

/** raw and mux: client sessions; agent: reverse-tunnel agents connected to `GET /agent` (PROTOCOL 11). */
export type SessionMode = 'raw' | 'mux' | 'agent';

/** The `route` label for a route name the config does not have (route names cannot contain parentheses). */
export const UNKNOWN_ROUTE_LABEL = '(unknown)';

/** Backend connect latency buckets, in seconds: loopback and LAN connects up to the default openTimeoutMs. */
export const CONNECT_SECONDS_BUCKETS = Object.freeze([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);

/** The bytes a stream has carried so far each way, read when it closes and at each scrape. */
export interface ByteCounts {
  /** From the client to the backend. */
  readonly toBackend: number;
  /** From the backend to the client. */
  readonly toClient: number;
}

/** What the adapters (server/raw.ts, server/mux.ts) report per stream; a raw connection is one stream. */
export interface StreamMetrics {
  /**
   * A stream's backend connection is open; `connectMs` is how long the connect took. Call the returned function
   * when the stream closes (once is enough; more calls do nothing).
   */
  opened(route: string, bytes: ByteCounts, connectMs: number): () => void;
  /** A stream was refused (OPEN_FAIL) or its backend connect failed, with the code the client was given. */
  failed(route: string, code: ErrorCode): void;
}

interface LiveStream {
  readonly route: string;
  readonly bytes: ByteCounts;
  /** What has been added to the counter already. */
  toBackend: number;
  toClient: number;
}

let processRegistry: Registry | undefined;

/** The process-wide default metrics, started on first use: their collectors (GC observer, event-loop histogram) are per process. */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

export interface GatewayMetricsOptions {
  /** Whether the config has a route of this name now; other names are counted as UNKNOWN_ROUTE_LABEL. */
  knownRoute(name: string): boolean;
  /** Append Node's process metrics to every scrape (default true). */
  processMetrics?: boolean;
}

export class GatewayMetrics implements StreamMetrics {
  readonly registry = new Registry();
  readonly #live = new Set<LiveStream>();
  readonly #knownRoute: (name: string) => boolean;
  readonly #withProcess: boolean;

  readonly #sessionsOpen = new Gauge({
    name: 'sockgate_sessions_open',
    help: 'WebSocket sessions open now, by mode (raw|mux|agent) and route (raw mode; empty for mux and agents).',
    labelNames: ['mode', 'route'] as const,
    registers: [this.registry],
  });
  readonly #sessionsOpened = new Counter({
    name: 'sockgate_sessions_opened_total',
    help: 'WebSocket sessions accepted, by mode.',
    labelNames: ['mode'] as const,
    registers: [this.registry],
  });
  readonly #streamsOpen = new Gauge({
    name: 'sockgate_streams_open',
    help: 'Streams with a backend connection open now, by route (a raw connection is one stream).',
    labelNames: ['route'] as const,
    registers: [this.registry],
  });
  readonly #streamsOpened = new Counter({
    name: 'sockgate_streams_opened_total',
    help: 'Streams whose backend connection opened, by route.',
    labelNames: ['route'] as const,
    registers: [this.registry],
  });
  readonly #streamsFailed = new Counter({
    name: 'sockgate_streams_failed_total',
    help: 'Streams refused or whose backend connect failed, by route and error code.',
    labelNames: ['route', 'code'] as const,
    registers: [this.registry],
  });
  readonly #bytes = new Counter({
    name: 'sockgate_bytes_total',
    help: 'Stream bytes carried, by route and direction (to_backend, to_client).',
    labelNames: ['route', 'direction'] as const,
    registers: [this.registry],
    collect: () => {
      for (const s of this.#live) this.#flush(s);
    },
  });
  readonly #connectSeconds = new Histogram({
    name: 'sockgate_backend_connect_seconds',
    help: 'Time to open a backend connection, in seconds, by route (successful connects).',
    labelNames: ['route'] as const,
    buckets: [...CONNECT_SECONDS_BUCKETS],
    registers: [this.registry],
  });
  readonly #upgradesRefused = new Counter({
    name: 'sockgate_upgrades_refused_total',
    help: 'WebSocket upgrades refused before the upgrade, by error code.',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly #keepaliveTimeouts = new Counter({
    name: 'sockgate_keepalive_timeouts_total',
    help: 'Sessions closed because the peer did not answer a keepalive ping in time (4001), by mode.',
    labelNames: ['mode'] as const,
    registers: [this.registry],
  });
  readonly #reloads = new Counter({
    name: 'sockgate_config_reloads_total',
    help: 'Configuration reloads, by result (ok, error).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly #draining = new Gauge({
    name: 'sockgate_draining',
    help: '1 while the gateway drains for shutdown (new sessions refused), else 0.',
    registers: [this.registry],
  });

  constructor(options: GatewayMetricsOptions) {
    this.#knownRoute = options.knownRoute;
    this.#withProcess = options.processMetrics !== false;
    this.#draining.set(0);
    for (const result of ['ok', 'error']) this.#reloads.labels(result).inc(0);
  }

  /** A session was accepted; call the returned function when it closes (once is enough). */
  sessionOpened(mode: SessionMode, route = ''): () => void {
    this.#sessionsOpen.labels(mode, route).inc();
    this.#sessionsOpened.labels(mode).inc();
    let open = true;
    // Looked up again at close rather than kept: a labelled child carries five bound functions, and an idle
    // session would hold them for its whole life.
    return () => {
      if (!open) return;
      open = false;
      this.#sessionsOpen.labels(mode, route).dec();
    };
  }

  opened(route: string, bytes: ByteCounts, connectMs: number): () => void {
    const live: LiveStream = { route, bytes, toBackend: 0, toClient: 0 };
    this.#live.add(live);
    this.#streamsOpen.labels(route).inc();
    this.#streamsOpened.labels(route).inc();
    this.#connectSeconds.labels(route).observe(connectMs / 1000);
    return () => {
      if (!this.#live.delete(live)) return;
      this.#flush(live);
      this.#streamsOpen.labels(route).dec();
    };
  }

  failed(route: string, code: ErrorCode): void {
    this.#streamsFailed.labels(this.routeLabel(route), code).inc();
  }

  upgradeRefused(code: ErrorCode): void {
    this.#upgradesRefused.labels(code).inc();
  }

  keepaliveTimeout(mode: SessionMode): void {
    this.#keepaliveTimeouts.labels(mode).inc();
  }

  reloaded(ok: boolean): void {
    this.#reloads.labels(ok ? 'ok' : 'error').inc();
  }

  setDraining(draining: boolean): void {
    this.#draining.set(draining ? 1 : 0);
  }

  /** A route name as a label: the name when the config has it, else UNKNOWN_ROUTE_LABEL. */
  routeLabel(name: string): string {
    return this.#knownRoute(name) ? name : UNKNOWN_ROUTE_LABEL;
  }

  /** The Prometheus text exposition content type. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Everything, in the Prometheus text format: this gateway's metrics, then the process's. */
  async render(): Promise<string> {
    const own = await this.registry.metrics();
    if (!this.#withProcess) return own;
    const proc = await processMetrics().metrics();
    return `${own.endsWith('\n') ? own : `${own}\n`}${proc}`;
  }

  #flush(s: LiveStream): void {
    const { toBackend, toClient } = s.bytes;
    if (toBackend > s.toBackend) {
      this.#bytes.labels(s.route, 'to_backend').inc(toBackend - s.toBackend);
      s.toBackend = toBackend;
    }
    if (toClient > s.toClient) {
      this.#bytes.labels(s.route, 'to_client').inc(toClient - s.toClient);
      s.toClient = toClient;
    }
  }
}
