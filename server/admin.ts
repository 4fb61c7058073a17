/**
 * Health and metrics endpoints (docs/OPERATIONS.md):
 *
 * - `GET /healthz`: live. 200 while the process serves HTTP at all.
 * - `GET /readyz`: ready. 200 while new sessions are accepted, 503 from the moment a drain starts.
 * - `GET /metrics`: Prometheus text (server/metrics.ts).
 *
 * They can have a listener of their own (`admin: { listen }`), a plain Node HTTP server serving only these three
 * paths, so that metrics, which name every route, need not be reachable where clients connect. The main listener
 * keeps `/healthz` and `/readyz` either way (container health checks use them) and serves `/metrics` only when
 * `metrics.public` is true, or when there is no admin listener and the request arrived on a loopback address.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { formatListen, isLoopbackHost, type GatewayConfig, type ListenAddress } from './config.js';
import { handshakeHttpOptions } from './limits.js';
import type { GatewayMetrics } from './metrics.js';

/** What the endpoints read: the config in force, the drain state and the metrics. */
export interface OpsState {
  readonly config: GatewayConfig;
  readonly draining: boolean;
  readonly metrics: GatewayMetrics;
}

export interface AdminAddress {
  host: string;
  /** The real port, also when `admin.listen` asked for port 0. */
  port: number;
  /** `http://HOST:PORT` */
  url: string;
}

/** Whether the main listener serves /metrics for this request (see the file comment). */
export function metricsOnMainListener(config: GatewayConfig, req: FastifyRequest): boolean {
  if (config.metrics.public) return true;
  if (config.admin) return false;
  return isLoopbackHost(req.raw.socket.localAddress ?? '');
}

/** `/readyz` and `/metrics` on the main listener (the plugin registers `/healthz` itself). */
export function registerOpsRoutes(app: FastifyInstance, ops: OpsState): void {
  app.get('/readyz', async (_req, reply) => {
    if (ops.draining) return reply.code(503).send({ status: 'draining' });
    return { status: 'ready' };
  });
  app.get('/metrics', async (req, reply) => {
    if (!metricsOnMainListener(ops.config, req)) return reply.callNotFound();
    const body = await ops.metrics.render();
    return reply.type(ops.metrics.contentType).header('cache-control', 'no-store').send(body);
  });
}

/** The admin listener: `/healthz`, `/readyz` and `/metrics`, nothing else. */
export class AdminServer {
  readonly #server: http.Server;
  #address: AdminAddress | undefined;

  constructor(ops: OpsState, handshakeTimeoutMs: number) {
    // The same slowloris bound as the main listener.
    const timeouts = handshakeHttpOptions(handshakeTimeoutMs);
    this.#server = http.createServer(timeouts, (req, res) => {
      void serveAdmin(ops, req, res);
    });
    this.#server.requestTimeout = timeouts.requestTimeout;
  }

  get address(): AdminAddress | undefined {
    return this.#address;
  }

  /** Listen; rejects with `cannot listen on admin address HOST:PORT: ...` (errno as `code`). */
  async listen(where: ListenAddress): Promise<AdminAddress> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const text = err.code === 'EADDRINUSE' ? 'address in use' : err.message;
        reject(Object.assign(new Error(`cannot listen on admin address ${formatListen(where)}: ${text}`, { cause: err }), { code: err.code }));
      };
      this.#server.once('error', onError);
      this.#server.listen(where.port, where.host, () => {
        this.#server.off('error', onError);
        resolve();
      });
    });
    const port = (this.#server.address() as AddressInfo).port;
    this.#address = { host: where.host, port, url: `http://${formatListen({ host: where.host, port })}` };
    return this.#address;
  }

  /** Close the listener and every connection to it (scrapes are short; nothing to wait for). */
  async close(): Promise<void> {
    if (!this.#server.listening) return;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }
}

async function serveAdmin(ops: OpsState, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0];
  const send = (status: number, type: string, body: string): void => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  const json = (status: number, value: unknown): void => send(status, 'application/json; charset=utf-8', JSON.stringify(value));
  if (path !== '/healthz' && path !== '/readyz' && path !== '/metrics') return json(404, { status: 'not found' });
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    return json(405, { status: 'method not allowed' });
  }
  if (path === '/healthz') return json(200, { status: 'ok' });
  if (path === '/readyz') return ops.draining ? json(503, { status: 'draining' }) : json(200, { status: 'ready' });
  try {
    send(200, ops.metrics.contentType, await ops.metrics.render());
  } catch (err) {
    json(500, { status: 'error', message: err instanceof Error ? err.message : String(err) });
  }
}
