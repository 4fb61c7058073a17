/**
 * A ready-to-run gateway: a Fastify app with sockgatePlugin registered, listening on `config.listen`.
 * The CLI is a thin shell around this; embedders who have their own app register the plugin instead.
 */
import type { AddressInfo } from 'node:net';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { AdminAddress } from './admin.js';
import { redactHeaders, redactUrl } from './auth.js';
import { formatListen, resolveConfig, type ConfigInput, type GatewayConfig } from './config.js';
import type { DrainResult } from './drain.js';
import { handshakeHttpOptions } from './limits.js';
import { sockgatePlugin } from './plugin.js';
import type { ReloadResult } from './reload.js';

export interface GatewayOptions {
  /**
   * Fastify's `logger` option: false (the default, as in Fastify), true, or pino options. Whatever is given, the
   * `req` serializer's output has credentials redacted (see logSerializers).
   */
  logger?: boolean | object;
}

export interface ListeningAddress {
  host: string;
  /** The real port, also when config.listen asked for port 0. */
  port: number;
  /** `http://HOST:PORT` (IPv6 in brackets); ws:// URLs are the same with the scheme swapped. */
  url: string;
  /** The admin listener (config `admin`: /metrics, /healthz, /readyz), when there is one. */
  admin?: AdminAddress;
}

export interface Gateway {
  readonly app: FastifyInstance;
  /** The configuration in force: the one given, or the last one reload() swapped in. */
  readonly config: GatewayConfig;
  /**
   * Listen on config.listen, then on admin.listen when set. Rejects with a one-line message (`cannot listen on
   * HOST:PORT: address in use`, `cannot listen on admin address HOST:PORT: ...`).
   */
  listen(): Promise<ListeningAddress>;
  /**
   * Swap in a new configuration (a plain object or a resolved config) for new sessions and OPENs, without
   * dropping anything open: routes, auth, origins, allowedHosts and most limits. Keys read only at start
   * (listen, admin.listen, trustProxy, demo, limits.maxMessageBytes, limits.handshakeTimeoutMs) keep their
   * running values and are named in `restartNeeded`. Rejects with SOCKGATE_ERR_CONFIG_INVALID (or a key file's
   * error) and keeps the running configuration when the new one is bad. docs/OPERATIONS.md.
   */
  reload(config: ConfigInput | GatewayConfig | unknown): Promise<ReloadResult>;
  /**
   * Shut down gracefully: /readyz answers 503 and new upgrades are refused, the listening port closes, mux
   * sessions get GOAWAY and streams under way may finish for up to `deadlineMs` (default limits.drainTimeoutMs);
   * then what is left is closed (mux 4003, raw 1001) and the gateway is closed as by close().
   */
  drain(deadlineMs?: number): Promise<DrainResult>;
  /** Close now: WebSockets get 1001 (SHUTDOWN_GRACE_MS to answer), backend sockets, built-in servers and listeners close. */
  close(): Promise<void>;
}

/** Fastify's log lines with the request URL redacted (its 404 line quotes the raw URL). */
class RedactingLogController extends LogController {
  override routeNotFound(request: FastifyRequest, _reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    request.log.info(`Route ${request.raw.method}:${redactUrl(request.raw.url ?? '')} not found`);
  }
}

/**
 * Build a gateway from a config object (checked here: throws SOCKGATE_ERR_CONFIG_INVALID naming the key) or a
 * resolved config. Resolves once the plugin is loaded (built-in backends started), before listening.
 */
export async function createGateway(config: ConfigInput | GatewayConfig, opts?: GatewayOptions): Promise<Gateway>;
export async function createGateway(config: unknown, opts?: GatewayOptions): Promise<Gateway>;
export async function createGateway(configInput: unknown, opts: GatewayOptions = {}): Promise<Gateway> {
  const config = resolveConfig(configInput);
  // Slowloris: Node answers 408 and closes a connection whose request head takes longer than this.
  const http = handshakeHttpOptions(config.limits.handshakeTimeoutMs);
  const app = Fastify({
    logger: loggerOptions(opts.logger) as FastifyServerOptions['logger'],
    logController: new RedactingLogController({
      // Raw and mux log one line per WebSocket open and close, with route, bytes and duration; Fastify's two
      // lines per request would double them. Health checks are polled and would drown the rest.
      disableRequestLogging: (req) =>
        req.headers.upgrade !== undefined || req.url === '/healthz' || req.url === '/readyz' || req.url === '/metrics',
    }),
    // After the WebSockets are closed, close every HTTP connection too: idle keep-alive connections (a browser
    // keeps spare ones) would otherwise hold close() until they time out.
    forceCloseConnections: true,
    // request.ip (maxSessionsPerIp, logs) from X-Forwarded-For only when the config says a proxy is in front.
    trustProxy: config.trustProxy,
    http,
    requestTimeout: http.requestTimeout,
  });
  try {
    await app.register(sockgatePlugin, { config });
    await app.ready();
  } catch (err) {
    await app.close().catch(() => {});
    throw err;
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      app.sockgate.beginDrain();
      await app.close();
    })();
    return closing;
  };
  let draining: Promise<DrainResult> | undefined;
  const drain = (deadlineMs?: number): Promise<DrainResult> => {
    draining ??= (async () => {
      // readyz 503 and upgrades refused first, then the port closes: no new connection reaches a gateway that
      // is going away, while the sessions it has finish their streams.
      app.sockgate.beginDrain();
      if (app.server.listening) app.server.close();
      app.server.closeIdleConnections();
      const result = await app.sockgate.drain(deadlineMs);
      await close();
      return result;
    })();
    return draining;
  };

  return {
    app,
    get config() {
      return app.sockgate.config;
    },
    async listen() {
      const { host, port } = config.listen;
      try {
        await app.listen({ host, port });
      } catch (err) {
        throw listenError(err, formatListen(config.listen));
      }
      const actual = (app.server.address() as AddressInfo).port;
      const url = `http://${formatListen({ host, port: actual })}`;
      const admin = await app.sockgate.listenAdmin();
      return { host, port: actual, url, ...(admin && { admin }) };
    },
    reload: (input) => app.sockgate.reload(input),
    drain,
    close,
  };
}

const LISTEN_ERRNO_TEXT: Record<string, string> = {
  EADDRINUSE: 'address in use',
  EACCES: 'permission denied',
  EADDRNOTAVAIL: 'address not available on this machine',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
};

/** `cannot listen on 127.0.0.1:8080: address in use`, keeping the errno as `code` and the original as cause. */
function listenError(err: unknown, where: string): Error {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const text = (code && LISTEN_ERRNO_TEXT[code]) ?? (err instanceof Error ? err.message : String(err));
  return Object.assign(new Error(`cannot listen on ${where}: ${text}`, { cause: err }), { code });
}

/** A pino serializer's output (Fastify's `req` shape or a user's) with credentials redacted. */
function redactRequestLine(line: unknown): unknown {
  if (typeof line !== 'object' || line === null) return line;
  const out = { ...(line as Record<string, unknown>) };
  if (typeof out.url === 'string') out.url = redactUrl(out.url);
  if (typeof out.headers === 'object' && out.headers !== null) {
    out.headers = redactHeaders(out.headers as Record<string, string | string[] | undefined>);
  }
  return out;
}

/** Fastify's own `req` serializer, with the URL redacted: `?access_token=` never reaches a log line. */
function defaultRequestLine(req: FastifyRequest): Record<string, unknown> {
  return {
    method: req.method,
    url: req.url,
    host: req.host,
    remoteAddress: req.ip,
    remotePort: req.socket?.remotePort,
  };
}

/**
 * pino serializers that keep credentials out of logs (docs/SECURITY.md 2.3): `req.url` through redactUrl and
 * `req.headers`, if a serializer adds them, through redactHeaders. createGateway installs them; an app that
 * registers sockgatePlugin itself should pass them in its own logger options.
 */
export const logSerializers = Object.freeze({
  req: (req: FastifyRequest): unknown => redactRequestLine(defaultRequestLine(req)),
});

function loggerOptions(logger: GatewayOptions['logger']): false | Record<string, unknown> {
  if (!logger) return false;
  const base = logger === true ? {} : (logger as Record<string, unknown>);
  const theirs = (base.serializers ?? {}) as Record<string, (value: unknown) => unknown>;
  const req = theirs.req;
  return {
    ...base,
    serializers: {
      ...theirs,
      // A user's own req serializer is kept, and its output redacted.
      req: req ? (value: FastifyRequest) => redactRequestLine(req(value)) : logSerializers.req,
    },
  };
}
