/**
 * A ready-to-run gateway: a Fastify app with sockgatePlugin registered, listening on `config.listen`.
 * The CLI is a thin shell around this; embedders who have their own app register the plugin instead.
 */
import type { AddressInfo } from 'node:net';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { redactHeaders, redactUrl } from './auth.js';
import { formatListen, resolveConfig, type ConfigInput, type GatewayConfig } from './config.js';
import { handshakeHttpOptions } from './limits.js';
import { sockgatePlugin } from './plugin.js';

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
}

export interface Gateway {
  readonly app: FastifyInstance;
  readonly config: GatewayConfig;
  /** Listen on config.listen. Rejects with a one-line message (`cannot listen on HOST:PORT: address in use`). */
  listen(): Promise<ListeningAddress>;
  /** Close WebSockets (1001), backend sockets and built-in servers, then the server. */
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
      disableRequestLogging: (req) => req.headers.upgrade !== undefined || req.url === '/healthz',
    }),
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

  return {
    app,
    config,
    async listen() {
      const { host, port } = config.listen;
      try {
        await app.listen({ host, port });
      } catch (err) {
        throw listenError(err, formatListen(config.listen));
      }
      const actual = (app.server.address() as AddressInfo).port;
      const url = `http://${formatListen({ host, port: actual })}`;
      return { host, port: actual, url };
    },
    close: () => app.close(),
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
