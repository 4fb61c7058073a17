/**
 * The gateway configuration: one schema, its DEFAULTS and the checks that run before anything listens
 * (yamux's DEFAULTS + verifyConfig). Every error is SOCKGATE_ERR_CONFIG_INVALID and names the key it is about,
 * e.g. `routes.ssh.target: expected tcp://host:port...`. docs/CONFIG.md documents each key.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ROUTE_NAME_PATTERN } from '../shared/constants.js';
import { ERRORS, SockgateError } from '../shared/errors.js';
import { authConfigSchema, type AuthConfig } from './auth.js';
import { LIMIT_DEFAULTS, limitsConfigSchema, type Limits } from './limits.js';
import { LOOPBACK_HOSTS, createOriginPolicy } from './origin.js';
import { parseTarget, type Route } from './routes.js';

/** A DNS name (underscores allowed: container runtimes use them in service names), at most 253 characters. */
const HOST_NAME_PATTERN = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/;

/** Default values, with units. The limits and their bounds are server/limits.ts's (LIMIT_DEFAULTS, LIMIT_RANGES). */
export const DEFAULTS = Object.freeze({
  /** Loopback only unless told otherwise: a gateway to raw sockets must be exposed on purpose. */
  listen: '127.0.0.1:8080',
  origins: Object.freeze([] as string[]),
  allowAnonymous: false,
  trustProxy: false,
  demo: false,
  limits: LIMIT_DEFAULTS,
});

export interface ListenAddress {
  /** Host name or IP address, IPv6 without brackets. */
  readonly host: string;
  /** 0 picks an ephemeral port (tests). */
  readonly port: number;
}

/** Every limit, resolved (server/limits.ts documents the unit and the failure each prevents). */
export type GatewayLimits = Readonly<Limits>;

/**
 * Who may open a session without a credential:
 * - `off`: nobody (credentials are configured and allowAnonymous is false);
 * - `on`: anyone (allowAnonymous: true);
 * - `loopback`: no credentials are configured and allowAnonymous is false, which is only accepted with a loopback
 *   listen address: local clients are anonymous, and only over loopback connections.
 */
export type AnonymousAccess = 'off' | 'on' | 'loopback';

/** A resolved, validated, frozen configuration. Make one with resolveConfig() or loadConfigFile(). */
export interface GatewayConfig {
  readonly listen: ListenAddress;
  /** Route name -> route. Looked up by name only: nothing a client sends is joined into a target. */
  readonly routes: ReadonlyMap<string, Route>;
  /** Browser origins allowed besides the gateway's own (server/origin.ts syntax: exact, `https://*.x.y`, `null`, `*`). */
  readonly origins: readonly string[];
  readonly allowAnonymous: boolean;
  /** Take the client address from X-Forwarded-For and the scheme from X-Forwarded-Proto. */
  readonly trustProxy: boolean;
  /** The Host names an upgrade may name, in force (defaults applied); undefined: any. */
  readonly allowedHosts: readonly string[] | undefined;
  /** Credentials, validated by server/auth.ts's schema; undefined when absent. */
  readonly auth: AuthConfig | undefined;
  /** Derived from auth, allowAnonymous and listen. */
  readonly anonymous: AnonymousAccess;
  readonly limits: GatewayLimits;
  /** Serve the demo page at `/` and the SDK bundle at `/sockgate.js`. */
  readonly demo: boolean;
  /**
   * A second listener serving only `/metrics`, `/healthz` and `/readyz` (server/admin.ts), so that metrics need
   * not be exposed where clients connect; undefined: none.
   */
  readonly admin: { readonly listen: ListenAddress } | undefined;
  /**
   * `public`: also serve `/metrics` on the main listener to anyone who reaches it. Without it, the main listener
   * serves `/metrics` only when there is no admin listener, and only over loopback connections (docs/OPERATIONS.md).
   */
  readonly metrics: { readonly public: boolean };
}

const routeSchema = z.strictObject({
  target: z.string({ error: 'expected a string: tcp://host:port, unix:/path, builtin:echo or agent:SERVICE' }),
});

const configSchema = z.strictObject({
  listen: z.string({ error: 'expected "HOST:PORT" (IPv6 as "[::1]:8080")' }).default(DEFAULTS.listen),
  routes: z.record(z.string(), routeSchema, { error: 'expected an object of NAME: { target }' }).default({}),
  // Entries are checked by the origin policy itself (resolveConfig), so the syntax accepted is the one enforced.
  origins: z.array(z.string({ error: 'expected a string like https://app.example.com' }), { error: 'expected a list of origins' }).default([]),
  allowAnonymous: z.boolean({ error: 'expected true or false' }).default(DEFAULTS.allowAnonymous),
  trustProxy: z.boolean({ error: 'expected true or false' }).default(DEFAULTS.trustProxy),
  allowedHosts: z.array(z.string({ error: 'expected a host name like gw.example.com' }), { error: 'expected a list of host names' }).optional(),
  auth: authConfigSchema.optional(),
  limits: limitsConfigSchema.prefault({}),
  demo: z.boolean({ error: 'expected true or false' }).default(DEFAULTS.demo),
  admin: z
    .strictObject(
      { listen: z.string({ error: 'expected "HOST:PORT" (IPv6 as "[::1]:9090")' }) },
      { error: 'expected an object: { listen: "HOST:PORT" }' },
    )
    .optional(),
  metrics: z
    .strictObject({ public: z.boolean({ error: 'expected true or false' }).default(false) }, { error: 'expected an object: { public: true or false }' })
    .prefault({}),
});

/** What a configuration file or object may contain (before defaults). */
export type ConfigInput = z.input<typeof configSchema>;

const resolved = new WeakSet<object>();

/** True for objects made by resolveConfig (so callers may pass either an input or a resolved config). */
export function isResolvedConfig(value: unknown): value is GatewayConfig {
  return typeof value === 'object' && value !== null && resolved.has(value);
}

/**
 * Validate a configuration object and apply defaults. A resolved config is returned as is.
 * Throws SOCKGATE_ERR_CONFIG_INVALID naming every bad key (`limits.openTimeoutMs: must be at least 1 ...`).
 * Besides each key's own checks, it refuses a gateway open to anonymous clients by accident: no credentials
 * (auth) and no allowAnonymous with a non-loopback listen address, or with trustProxy.
 */
export function resolveConfig(input: unknown): GatewayConfig {
  if (isResolvedConfig(input)) return input;
  const problems: string[] = [];
  // zod silently drops a `__proto__` key; an ignored route or limit would be a surprise, so name it.
  findProtoKeys(input, [], problems, 0);
  const parsed = configSchema.safeParse(input, { error: plainMessage });
  if (!parsed.success) problems.push(...parsed.error.issues.map(formatIssue));
  if (problems.length > 0 || !parsed.success) throw invalid(problems.join('; '));
  const data = parsed.data;

  let listen: ListenAddress | undefined;
  try {
    listen = parseListen(data.listen);
  } catch (err) {
    problems.push(`listen: ${detailOf(err)}`);
  }
  let adminListen: ListenAddress | undefined;
  if (data.admin) {
    try {
      adminListen = parseListen(data.admin.listen);
    } catch (err) {
      problems.push(`admin.listen: ${detailOf(err)}`);
    }
  }
  const routes = new Map<string, Route>();
  for (const [name, { target }] of Object.entries(data.routes)) {
    if (!ROUTE_NAME_PATTERN.test(name)) {
      problems.push(`${keyPath(['routes', name])}: a route name is 1 to 255 characters of A-Z a-z 0-9 . _ -`);
      continue;
    }
    try {
      const parsed = parseTarget(target);
      // parseTarget takes any text without ':' or '/' as a host; a typo like `user@db` should fail here, not
      // as ENOTFOUND on the first connection.
      if (parsed.kind === 'tcp' && isIP(parsed.host) === 0 && !HOST_NAME_PATTERN.test(parsed.host)) {
        throw invalid(`target ${JSON.stringify(target)}: bad host name ${JSON.stringify(parsed.host)}`);
      }
      routes.set(name, Object.freeze({ name, target: Object.freeze(parsed) }));
    } catch (err) {
      problems.push(`${keyPath(['routes', name, 'target'])}: ${detailOf(err)}`);
    }
  }
  // A route to an agent service no agent credential may register could never be served: a typo, most likely.
  for (const { name, target } of routes.values()) {
    if (target.kind === 'agent' && !data.auth?.agents?.some((a) => a.services.includes(target.service))) {
      problems.push(`${keyPath(['routes', name, 'target'])}: no auth.agents entry may register the service ${JSON.stringify(target.service)}`);
    }
  }
  // The origin policy is the judge of its own lists: `origins[2] "https://*example.com": ...`.
  try {
    createOriginPolicy({ origins: data.origins });
  } catch (err) {
    problems.push(detailOf(err));
  }
  const anyHost = data.allowedHosts?.includes('*') === true;
  if (anyHost && data.allowedHosts!.length > 1) problems.push(`allowedHosts: "*" (any host) must be the only entry`);
  else if (data.allowedHosts && !anyHost) {
    try {
      createOriginPolicy({ allowedHosts: data.allowedHosts });
    } catch (err) {
      problems.push(detailOf(err));
    }
  }

  const credentials = (data.auth?.tokens?.length ?? 0) > 0 || data.auth?.jwt !== undefined;
  const anonymous: AnonymousAccess = data.allowAnonymous ? 'on' : credentials ? 'off' : 'loopback';
  if (listen && anonymous === 'loopback') {
    if (!isLoopbackHost(listen.host)) {
      problems.push(
        `listen: ${formatListen(listen)} is not a loopback address and no credentials are configured (auth); ` +
          'configure auth, or set allowAnonymous: true (--allow-anonymous) to let anyone who can reach it use every route',
      );
    } else if (data.trustProxy) {
      problems.push(
        'trustProxy: clients come through a proxy, so loopback does not mean local, and no credentials are configured ' +
          '(auth); configure auth, or set allowAnonymous: true (--allow-anonymous) to let anyone use every route',
      );
    }
  }
  if (problems.length > 0 || !listen) throw invalid(problems.join('; '));

  // DNS rebinding: a page whose name resolves to 127.0.0.1 is same-origin with an anonymous loopback gateway;
  // only the Host header tells it apart. Behind a proxy (trustProxy) the Host is the public name, which only the
  // operator knows.
  let allowedHosts: readonly string[] | undefined;
  if (data.allowedHosts) allowedHosts = anyHost ? undefined : Object.freeze([...data.allowedHosts]);
  else if (anonymous !== 'off' && isLoopbackHost(listen.host) && !data.trustProxy) allowedHosts = loopbackHostsFor(listen.host);

  const config: GatewayConfig = Object.freeze({
    listen: Object.freeze(listen),
    routes,
    origins: Object.freeze([...data.origins]),
    allowAnonymous: data.allowAnonymous,
    trustProxy: data.trustProxy,
    allowedHosts,
    auth: data.auth ? Object.freeze({ ...data.auth }) : undefined,
    anonymous,
    limits: Object.freeze({ ...data.limits }),
    demo: data.demo,
    admin: adminListen ? Object.freeze({ listen: Object.freeze(adminListen) }) : undefined,
    metrics: Object.freeze({ public: data.metrics.public }),
  });
  resolved.add(config);
  return config;
}

/**
 * True for a host that can only be this machine: `localhost`, 127.0.0.0/8, `::1` and IPv4-mapped 127.x
 * (`::ffff:127.0.0.1`). Also used on a connection's local address.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/** The default allowedHosts of a loopback gateway: the usual loopback names plus the listen host itself. */
function loopbackHostsFor(host: string): readonly string[] {
  const own = isIP(host) === 6 ? `[${host}]` : host.toLowerCase();
  return Object.freeze(LOOPBACK_HOSTS.includes(own) ? [...LOOPBACK_HOSTS] : [...LOOPBACK_HOSTS, own]);
}

/**
 * Read a YAML (`.yaml`, `.yml`) or JSON (`.json`) file, unvalidated, so that command-line flags can be laid
 * over it before resolveConfig(). Throws SOCKGATE_ERR_CONFIG_INVALID naming the file.
 */
export async function readConfigFile(path: string): Promise<unknown> {
  const ext = extname(path).toLowerCase();
  if (ext !== '.yaml' && ext !== '.yml' && ext !== '.json') {
    throw invalid(`${path}: unknown file type ${JSON.stringify(ext)}; use .yaml, .yml or .json`);
  }
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw invalid(`cannot read config file ${path}: ${firstLine(err)}`, err);
  }
  try {
    // An empty YAML document is null: treat it as "all defaults" rather than "not an object".
    const data: unknown = ext === '.json' ? JSON.parse(text) : parseYaml(text);
    return data ?? {};
  } catch (err) {
    throw invalid(`${path}: ${ext === '.json' ? 'JSON' : 'YAML'} parse error: ${firstLine(err)}`, err);
  }
}

/** Read and resolve a configuration file; errors name the file and the key. */
export async function loadConfigFile(path: string): Promise<GatewayConfig> {
  const data = await readConfigFile(path);
  try {
    return resolveConfig(data);
  } catch (err) {
    throw invalid(`${path}: ${detailOf(err)}`, err);
  }
}

/** Parse "HOST:PORT": IPv4, host name or "[IPv6]"; port 0..65535 (0: ephemeral). */
export function parseListen(text: string): ListenAddress {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  if (!m) throw invalid(`expected "HOST:PORT" (IPv6 as "[::1]:8080"), got ${JSON.stringify(text)}`);
  const host = m[1] ?? m[2]!;
  if (m[1] !== undefined && isIP(host) !== 6) throw invalid(`bad IPv6 address ${JSON.stringify(host)}`);
  const port = Number(m[3]);
  if (port > 65535) throw invalid(`port must be 0..65535, got ${port}`);
  return { host, port };
}

/** "HOST:PORT" with IPv6 in brackets, as it is written in config. */
export function formatListen(addr: ListenAddress): string {
  return `${isIP(addr.host) === 6 ? `[${addr.host}]` : addr.host}:${addr.port}`;
}

/**
 * Messages for the checks whose schema gives none (the embedded auth schema): plain words, never the value, which
 * may be a secret.
 */
function plainMessage(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type':
      switch (issue.expected) {
        case 'object':
          return 'expected an object';
        case 'array':
          return 'expected a list';
        case 'string':
          return 'expected a string';
        case 'boolean':
          return 'expected true or false';
        case 'number':
        case 'int':
          return 'expected a number';
        default:
          return undefined;
      }
    case 'too_small':
      if (issue.origin === 'string') return `must be at least ${issue.minimum} characters`;
      if (issue.origin === 'array') return `must have at least ${issue.minimum} entries`;
      return undefined;
    case 'too_big':
      if (issue.origin === 'string') return `must be at most ${issue.maximum} characters`;
      return undefined;
    default:
      return undefined;
  }
}

function formatIssue(issue: z.core.$ZodIssue): string {
  const at = keyPath(issue.path);
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => `${keyPath([...issue.path, k])}: unknown key`).join('; ');
  }
  if (issue.code === 'invalid_type' && issue.path.length === 0) return 'config: expected an object';
  return `${at || 'config'}: ${issue.message}`;
}

/** `routes.ssh.target`, `origins[0]`, `routes["db.main"].target`: a key is quoted when it is not a plain word. */
function keyPath(path: readonly PropertyKey[]): string {
  return path
    .map((p) => {
      if (typeof p === 'number') return `[${p}]`;
      const key = String(p);
      return /^[A-Za-z_$][\w$-]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
    })
    .join('')
    .replace(/^\./, '');
}

function findProtoKeys(value: unknown, path: string[], out: string[], depth: number): void {
  if (typeof value !== 'object' || value === null || depth > 4) return;
  for (const key of Object.keys(value)) {
    if (key === '__proto__') out.push(`${keyPath([...path, key])}: unknown key`);
    else findProtoKeys((value as Record<string, unknown>)[key], [...path, key], out, depth + 1);
  }
}

function invalid(detail: string, cause?: unknown): SockgateError {
  return new SockgateError('SOCKGATE_ERR_CONFIG_INVALID', detail, cause === undefined ? undefined : { cause });
}

/** The part of a config error after "invalid configuration: ", so that nested errors do not repeat it. */
function detailOf(err: unknown): string {
  const prefix = `${ERRORS.SOCKGATE_ERR_CONFIG_INVALID.message}: `;
  const text = err instanceof Error ? err.message : String(err);
  return text.startsWith(prefix) ? text.slice(prefix.length) : text;
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  // yaml's messages end "at line 2, column 1:" followed by a code frame; keep the one line.
  return text.split('\n', 1)[0]!.trim().replace(/:$/, '');
}
