/**
 * The gateway as a Fastify plugin: `app.register(sockgatePlugin, { config })` in any Fastify 5 app. It is not
 * encapsulated (like fastify-plugin), so its routes and the `websocketServer` decorator land in the app that
 * registers it. The CLI and createGateway() are thin shells around it.
 *
 * Routes: `GET /healthz`, `GET /readyz`, `GET /metrics` (server/admin.ts), `GET /raw/:route` (raw mode,
 * server/raw.ts), `GET /mux` (the sockgate protocol, server/mux.ts), `GET /agent` (reverse-tunnel agents,
 * server/agent-endpoint.ts) and, with `demo: true`, the demo page at `/` and the SDK bundle at `/sockgate.js`.
 * Metrics, keepalive, drain, reload and the admin listener are wired in server/ops.ts and exposed as
 * `app.sockgate`; every session reads the config in force (server/reload.ts).
 * Every upgrade passes server/admission.ts's checks first (Host and Origin, credential, raw route permission,
 * session slots) in a preValidation hook; refusals are HTTP answers before the upgrade, as JSON
 * `{ code, message }`. Inside a user's app the plugin also tightens the server's `headersTimeout` to
 * `limits.handshakeTimeoutMs`; the app's own `trustProxy` decides the client address.
 */
import { readFile, readdir } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import net, { type OnReadOpts } from 'node:net';
import { extname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import fastifyWebsocket from '@fastify/websocket';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { WebSocket } from 'ws';
import { AGENT_PATH, SUBPROTOCOL } from '../shared/constants.js';
import { SockgateError, type ErrorCode } from '../shared/errors.js';
import { registerOpsRoutes } from './admin.js';
import { connectAgent, registerAgentEndpoint } from './agent-endpoint.js';
import { LocalAgentRegistry, type AgentRegistry } from './agent-registry.js';
import { isBearerProtocol } from './auth.js';
import { connectBackend } from './backend.js';
import { formatListen, resolveConfig, type ConfigInput, type GatewayConfig } from './config.js';
import { packageRoot } from './demo-config.js';
import { applyHandshakeTimeout } from './limits.js';
import { handleMuxSession, type MuxContext } from './mux.js';
import { Operations } from './ops.js';
import { handleRawConnection, type RawContext } from './raw.js';
import { LiveConfig, type LiveAdmitted } from './reload.js';
import { admitUpgrade } from './admission.js';
import type { Target } from './routes.js';
import { offeredSubprotocols, onWebSocketError, releaseUpgradeRequest, sendError } from './ws-util.js';

export interface SockgatePluginOptions {
  /** A config from resolveConfig()/loadConfigFile(), or a plain object that is resolved (and checked) here. */
  config: GatewayConfig | ConfigInput;
  /**
   * Which reverse-tunnel agent serves which service (PROTOCOL 11). Default: a LocalAgentRegistry of this gateway's
   * own agents; a shared one lets several replicas reach each other's agents.
   */
  agentRegistry?: AgentRegistry;
}

/** The subprotocol noVNC offers for raw mode (websockify's binary mode). */
export const RAW_SUBPROTOCOL = 'binary';

/**
 * On shutdown, open WebSockets are closed with 1001 and get this long (ms) to finish the closing handshake;
 * then they are terminated, so a client that never answers cannot hold the shutdown up.
 */
export const SHUTDOWN_GRACE_MS = 2000;

/** Files the demo may serve from dist/demo/: a plain name, no path. */
const DEMO_FILE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

async function sockgate(app: FastifyInstance, opts: SockgatePluginOptions): Promise<void> {
  // Checked up front: a bad config fails app.ready() with the key named, before anything listens.
  const config = resolveConfig(opts?.config);
  const { limits } = config;
  if (app.hasDecorator('websocketServer')) {
    // A second @fastify/websocket would not get our maxPayload and subprotocol choice, and Fastify refuses it.
    throw new Error('sockgatePlugin registers @fastify/websocket itself: register it in a context without one');
  }

  /** Every backend socket (and agent stream) open now, raw and mux, so that nothing outlives app.close(). */
  const backends = new Set<Duplex>();
  const agents = opts.agentRegistry ?? new LocalAgentRegistry();
  const builtins = new BuiltinServers();
  app.addHook('onClose', async () => {
    for (const socket of backends) socket.destroy();
    backends.clear();
    await builtins.close();
  });
  if ([...config.routes.values()].some((r) => r.target.kind === 'builtin')) await builtins.startEcho();

  const connect = async (target: Target, onread?: OnReadOpts): Promise<Duplex> => {
    const socket =
      target.kind === 'agent'
        ? // A stream on the agent's session, as a Duplex (server/stream-socket.ts), once the agent accepted it.
          await connectAgent(agents, target.service, live.config.limits.openTimeoutMs)
        : await connectBackend(target, {
            timeoutMs: live.config.limits.openTimeoutMs,
            onread,
            // undefined when not running: connectBackend then fails with SOCKGATE_ERR_ROUTE_UNAVAILABLE.
            resolveBuiltin: (name) => builtins.address(name) as { host: string; port: number },
          });
    backends.add(socket);
    socket.once('close', () => backends.delete(socket));
    return socket;
  };

  // The config in force from here on is live.config: a reload (app.sockgate.reload) replaces it for new sessions
  // and OPENs. `config` and `limits` above are the start-up values, for what cannot change without a restart.
  const live = await LiveConfig.create(config);
  const ops = new Operations({
    live,
    log: app.log,
    prepareReload: async (next) => {
      if (!builtins.address('echo') && [...next.routes.values()].some((r) => r.target.kind === 'builtin')) await builtins.startEcho();
    },
  });
  app.decorate('sockgate', ops.control());
  app.addHook('onClose', () => ops.close());
  // The admin listener follows the app's: started when it listens (createGateway().listen() waits for it).
  app.addHook('onListen', (done) => {
    ops.listenAdmin().catch((err: unknown) => app.log.error({ err }, 'admin listener failed to start'));
    done();
  });
  warnAboutExposure(app, config);
  // Slowloris: bound the time to send the upgrade request head. createGateway sets it when it creates the
  // server (with a tight checking interval); inside a user's app it is only ever tightened here.
  const server = app.server as { headersTimeout?: number };
  if (typeof server.headersTimeout === 'number' && !(server.headersTimeout > 0 && server.headersTimeout <= limits.handshakeTimeoutMs)) {
    applyHandshakeTimeout(server as { headersTimeout: number }, limits.handshakeTimeoutMs);
  }

  await app.register(fastifyWebsocket, {
    options: { maxPayload: limits.maxMessageBytes, handleProtocols: chooseSubprotocol },
    preClose: closeWebSockets,
    // A handler that throws; errors on an established WebSocket go to the listener releaseUpgradeRequest installs.
    errorHandler: (err: Error, socket: WebSocket, req: FastifyRequest) => onWebSocketError(err, socket, req.log),
  });

  /** What admission decided for each upgrade request that passed, read back by the WebSocket handler. */
  const admitted = new WeakMap<IncomingMessage, LiveAdmitted>();

  /** preValidation for both WebSocket routes: admit the upgrade, or answer it with a refusal. */
  async function gate(req: FastifyRequest, reply: FastifyReply, route?: string): Promise<FastifyReply | undefined> {
    // A plain GET (no upgrade) is answered 404 by @fastify/websocket and never becomes a session.
    if (!req.ws) return undefined;
    return admitUpgrade(req, reply, {
      refusal: ops.refuseWhileDraining(),
      admit: () => live.admit(req.raw, req.ip, route),
      admitted,
      onRefused: (err) => ops.metrics.upgradeRefused(err.code),
      logMessage: 'upgrade refused',
      logFields: route !== undefined ? { raw: clip(route) } : undefined,
    });
  }

  /**
   * Raw mode, after gate() admitted the upgrade: a route to an agent that is not connected is refused before the
   * upgrade (503 SOCKGATE_ERR_ROUTE_UNAVAILABLE, PROTOCOL 11.5), and its session slot given back.
   */
  async function agentAvailable(req: FastifyRequest, reply: FastifyReply, name: string): Promise<FastifyReply | undefined> {
    const target = live.config.routes.get(name)?.target;
    if (!req.ws || target?.kind !== 'agent' || (await agents.lookup(target.service))) return undefined;
    admitted.get(req.raw)?.release();
    admitted.delete(req.raw);
    const err = new SockgateError('SOCKGATE_ERR_ROUTE_UNAVAILABLE', `no agent serves ${JSON.stringify(target.service)}`);
    ops.metrics.upgradeRefused(err.code);
    req.log.info({ err: err.code, reason: err.message, remote: req.ip, raw: clip(name) }, 'upgrade refused');
    return sendError(reply, 503, err);
  }

  app.get('/healthz', async () => ({ status: 'ok' }));
  registerOpsRoutes(app, ops);

  app.get<{ Params: { route: string } }>(
    '/raw/:route',
    {
      websocket: true,
      preValidation: async (req, reply) => (await gate(req, reply, req.params.route)) ?? (await agentAvailable(req, reply, req.params.route)),
    },
    (socket, req) => {
      releaseUpgradeRequest(socket, req);
      const entry = admitted.get(req.raw);
      const route = live.config.routes.get(req.params.route);
      if (!entry || !route) return socket.terminate(); // not admitted (or a reload removed the route meanwhile)
      const ctx: RawContext = { connect, limits: live.config.limits, log: req.log, metrics: ops.metrics };
      ops.trackRaw(socket, route.name, req.log.child({ raw: route.name, remote: req.ip }));
      handleRawConnection(socket, route, ctx, { remoteAddress: req.ip, principal: entry.principal.name });
    },
  );

  app.get(
    '/mux',
    {
      websocket: true,
      preValidation: async (req, reply) => {
        if (req.ws && !offeredSubprotocols(req.raw).has(SUBPROTOCOL)) {
          return refuse(reply, 400, 'SOCKGATE_ERR_PROTOCOL', `offer the WebSocket subprotocol ${SUBPROTOCOL} (PROTOCOL 1.2)`);
        }
        return gate(req, reply);
      },
    },
    (socket, req) => {
      releaseUpgradeRequest(socket, req);
      const entry = admitted.get(req.raw);
      if (!entry) return socket.terminate();
      // The credential is checked again at each config reload; every OPEN asks the rules in force.
      const credential = live.track(entry, req.raw.socket.localAddress ?? '');
      const ctx: MuxContext = {
        resolveRoute: (name) => live.config.routes.get(name),
        authorize: (route) => live.authorize(credential, route),
        connect,
        limits: live.config.limits,
        log: req.log,
        metrics: ops.metrics,
      };
      const handle = handleMuxSession(socket, ctx, { remoteAddress: req.ip, principal: entry.principal.name, socket: req.raw.socket });
      if (handle) ops.trackMux(socket, handle, credential, req.log.child({ remote: req.ip }));
      else live.untrack(credential);
    },
  );

  // Reverse-tunnel agents dial in here (PROTOCOL 11); clients reach them through routes with agent: targets.
  registerAgentEndpoint(app, {
    registry: agents,
    admission: () => live.admission,
    limits: () => live.config.limits,
    refuse: () => ops.refuseWhileDraining(),
    onRefused: (err) => ops.metrics.upgradeRefused(err.code),
    onSession: () => ops.metrics.sessionOpened('agent'),
    onKeepaliveTimeout: () => ops.metrics.keepaliveTimeout('agent'),
  });

  if (config.demo) registerDemo(app);
}

/**
 * ws's handleProtocols: exactly `sockgate.v1` on /mux (PROTOCOL 1.2; the route refuses upgrades without it),
 * `binary` on /raw when offered, else none. Decided by path because one ws server serves both. A
 * `sockgate.bearer.*` entry carries a credential, not a protocol: it is never selected, so never echoed back.
 */
function chooseSubprotocol(offered: Set<string>, req: IncomingMessage): string | false {
  const path = (req.url ?? '').split('?', 1)[0]!;
  const wanted = path.endsWith('/mux') || path.endsWith(AGENT_PATH) ? SUBPROTOCOL : path.includes('/raw/') ? RAW_SUBPROTOCOL : undefined;
  for (const protocol of offered) {
    if (!isBearerProtocol(protocol) && protocol === wanted) return protocol;
  }
  return false;
}

/** One warning line at start for every way the gateway is open wider than credentials alone would allow. */
function warnAboutExposure(app: FastifyInstance, config: GatewayConfig): void {
  const where = formatListen(config.listen);
  if (config.anonymous === 'loopback') {
    app.log.warn(
      { listen: where, allowedHosts: config.allowedHosts },
      'no credentials configured (auth): every client on this machine is anonymous and may open every route; ' +
        'configure auth before exposing the gateway (docs/SECURITY.md)',
    );
  } else if (config.anonymous === 'on') {
    app.log.warn({ listen: where }, 'allowAnonymous: clients without credentials may open every route');
  }
  if (config.origins.includes('*')) {
    app.log.warn('origins lists "*": any web page may open sessions with its visitors\' network position');
  }
}

/** preClose for @fastify/websocket: 1001 to every client, a bounded wait, then terminate the rest. */
async function closeWebSockets(this: FastifyInstance): Promise<void> {
  const wss = this.websocketServer;
  const clients = [...wss.clients];
  for (const ws of clients) ws.close(1001, 'gateway shutting down');
  const open = clients.filter((ws) => ws.readyState !== WebSocket.CLOSED);
  if (open.length > 0) {
    await new Promise<void>((resolve) => {
      let left = open.length;
      const timer = setTimeout(resolve, SHUTDOWN_GRACE_MS);
      for (const ws of open) {
        ws.once('close', () => {
          if (--left === 0) {
            clearTimeout(timer);
            resolve();
          }
        });
      }
    });
  }
  for (const ws of clients) if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
  await new Promise<void>((resolve) => wss.close(() => resolve()));
}

function refuse(reply: FastifyReply, status: number, code: ErrorCode, detail: string): FastifyReply {
  return sendError(reply, status, new SockgateError(code, detail));
}

/** A client-supplied name cut short for logs and error bodies. */
function clip(text: string): string {
  return text.length > 255 ? `${text.slice(0, 255)}...` : text;
}

/**
 * The demo page (dist/demo/, copied there by scripts/bundle.mjs) and the SDK's browser bundle
 * (dist/browser/sockgate.js). Read per request: they are small, and a rebuild shows without a restart.
 */
function registerDemo(app: FastifyInstance): void {
  const dist = join(packageRoot(), 'dist');
  const send = async (reply: FastifyReply, dir: string, name: string): Promise<FastifyReply> => {
    let body: Buffer;
    try {
      body = await readFile(join(dist, dir, name));
    } catch {
      return reply
        .code(404)
        .type('text/plain; charset=utf-8')
        .send(`sockgate: dist/${dir}/${name} is missing; run \`npm run build\` to build the demo and the SDK bundle\n`);
    }
    return reply
      .type(CONTENT_TYPES[extname(name)] ?? 'application/octet-stream')
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .send(body);
  };
  app.get('/', (_req, reply) => send(reply, 'demo', 'index.html'));
  app.get('/sockgate.js', (_req, reply) => send(reply, 'browser', 'sockgate.js'));
  app.get('/sockgate.js.map', (_req, reply) => send(reply, 'browser', 'sockgate.js.map'));
  // Other demo assets (styles, scripts) by plain file name, only if the build put them in dist/demo/.
  app.get<{ Params: { file: string } }>('/:file', async (req: FastifyRequest<{ Params: { file: string } }>, reply) => {
    const { file } = req.params;
    const listed = DEMO_FILE_PATTERN.test(file) && (await readdir(join(dist, 'demo')).catch((): string[] => [])).includes(file);
    if (!listed) return reply.callNotFound();
    return send(reply, 'demo', file);
  });
}

/** In-process servers behind `builtin:` targets, on 127.0.0.1 and an ephemeral port, owned by the plugin. */
class BuiltinServers {
  private echo: net.Server | undefined;
  private echoAddress: { host: string; port: number } | undefined;
  private readonly sockets = new Set<net.Socket>();

  /** Echo: writes back what it reads, honouring backpressure (pipe); ends its side after the peer's EOF. */
  async startEcho(): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => socket.destroy());
      socket.setNoDelay(true);
      socket.pipe(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.echo = server;
    this.echoAddress = { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port };
  }

  address(name: 'echo'): { host: string; port: number } | undefined {
    return name === 'echo' ? this.echoAddress : undefined;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    const server = this.echo;
    this.echo = undefined;
    this.echoAddress = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/**
 * The plugin, marked as fastify-plugin marks plugins (skip-override: not encapsulated), so that a user's app can
 * register it and see its decorators.
 */
export const sockgatePlugin = Object.assign(sockgate, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'sockgate',
  [Symbol.for('plugin-meta')]: { name: 'sockgate', fastify: '5.x' },
});
