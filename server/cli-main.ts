/**
 * `sockgate serve`: a thin shell around createGateway(). Flags are laid over the config file (or, without
 * --config, over the embedded demo config); every failure is one line on stderr and a non-zero exit.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { TOOL_COMMANDS, runTool, type ToolCommand } from './cli-tools.js';
import { readConfigFile } from './config.js';
import { DEMO_CONFIG, packageRoot } from './demo-config.js';
import { createGateway, type Gateway } from './gateway.js';
import { SHUTDOWN_GRACE_MS } from './plugin.js';

const USAGE = `Usage: sockgate serve [options]

A WebSocket gateway to TCP and Unix-domain sockets, reachable only through named routes.

Options:
  -c, --config FILE        YAML (.yaml, .yml) or JSON (.json) config; without it, the demo config
                           (route echo -> builtin:echo, demo page at /, listen 127.0.0.1:8080)
  -l, --listen HOST:PORT   address to listen on (IPv6 as [::1]:8080; port 0 picks a free port)
  -r, --route NAME=TARGET  add or replace a route; TARGET is tcp://host:port, unix:/path or builtin:echo
                           (repeatable)
      --origin ORIGIN      allowed browser origin, e.g. https://app.example.com or https://*.example.com
                           (repeatable; replaces the file's list)
      --allow-anonymous    accept sessions without credentials, which may open every route; without
                           auth in the config, needed to listen on anything but loopback
  -h, --help               show this help
  -v, --version            show the version

Without credentials (auth) the gateway listens on loopback only, where every local client is anonymous.

Signals: SIGTERM or SIGINT drains (GOAWAY; streams under way finish for up to limits.drainTimeoutMs) and
exits 0; SIGHUP reloads the config file (docs/OPERATIONS.md).

Reverse tunnels and forwarding (each has --help):
  sockgate agent --gateway URL --token TOKEN --expose NAME=TARGET...   serve local services through a gateway
  sockgate forward --gateway URL --listen HOST:PORT --route NAME        a local port to a gateway route
  sockgate connect --gateway URL --route NAME                           stdin/stdout to a route (ssh ProxyCommand)

Docs: docs/CONFIG.md (every key, limit and default), docs/SECURITY.md (the threat model),
docs/OPERATIONS.md (metrics, health, shutdown, reload).`;

/** Exit codes: 0 clean shutdown, 1 the gateway could not start (config, file, port), 2 bad command line. */
const EXIT_START_FAILED = 1;
const EXIT_USAGE = 2;

/**
 * After SIGINT/SIGTERM the drain may take limits.drainTimeoutMs, then closing handshakes SHUTDOWN_GRACE_MS; past
 * that plus this margin (ms), exit anyway.
 */
const SHUTDOWN_MARGIN_MS = 10_000;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  // agent, forward and connect have their own flags (server/cli-tools.ts).
  if ((TOOL_COMMANDS as readonly string[]).includes(argv[0] ?? '')) return runTool(argv[0] as ToolCommand, argv.slice(1));
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string', short: 'c' },
        listen: { type: 'string', short: 'l' },
        route: { type: 'string', short: 'r', multiple: true },
        origin: { type: 'string', multiple: true },
        'allow-anonymous': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (err) {
    return usageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (positionals[0] !== 'serve' || positionals.length > 1) {
    return usageError(positionals.length === 0 ? 'missing command (serve)' : `unknown command ${JSON.stringify(positionals.join(' '))}`);
  }

  let gateway: Gateway;
  try {
    const base = values.config !== undefined ? await readConfigFile(values.config) : structuredClone(DEMO_CONFIG);
    const input = applyFlags(base, values);
    gateway = await createGateway(input, { logger: { level: 'info', stream: logDestination() } }).catch((err: unknown) => {
      // A key the file got wrong is easier to find with the file's name.
      throw values.config !== undefined ? new Error(`${errorText(err)} (config: ${values.config})`) : err;
    });
  } catch (err) {
    if (err instanceof UsageError) return usageError(err.message);
    return fail(err);
  }

  try {
    const { url, admin } = await gateway.listen();
    const routes = [...gateway.config.routes.keys()];
    gateway.app.log.info({ url, routes, demo: gateway.config.demo, ...(admin && { adminUrl: admin.url }) }, `sockgate listening on ${url}`);
  } catch (err) {
    await gateway.close().catch(() => {});
    return fail(err);
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    // SIGINT/SIGTERM: drain (docs/OPERATIONS.md): readyz 503, the port closes, GOAWAY, streams under way finish
    // up to limits.drainTimeoutMs, the rest are closed; exit 0.
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        resolve(EXIT_START_FAILED); // a second signal: stop waiting
        return;
      }
      stopping = true;
      const { drainTimeoutMs } = gateway.config.limits;
      gateway.app.log.info({ signal, drainTimeoutMs }, 'shutting down: draining');
      const limitMs = drainTimeoutMs + 2 * SHUTDOWN_GRACE_MS + SHUTDOWN_MARGIN_MS;
      const timer = setTimeout(() => {
        gateway.app.log.warn(`shutdown took over ${limitMs} ms; exiting anyway`);
        resolve(EXIT_START_FAILED);
      }, limitMs);
      timer.unref();
      gateway.drain().then(
        () => resolve(0),
        (err: unknown) => {
          gateway.app.log.error({ err }, 'error while shutting down');
          resolve(EXIT_START_FAILED);
        },
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    // SIGHUP: read the config file again and swap it in for new sessions and OPENs; a bad one is refused with one
    // log line and the running config stays. Flags still override the file.
    let reloading: Promise<void> | undefined;
    let again = false;
    const reload = (): void => {
      if (stopping) return;
      if (reloading) {
        again = true; // one more once this one is done: the file may have changed again meanwhile
        return;
      }
      reloading = reloadConfig(gateway, values.config, values).finally(() => {
        reloading = undefined;
        if (again) {
          again = false;
          reload();
        }
      });
    };
    process.on('SIGHUP', reload);
  });
}

/** SIGHUP: re-read the file (or the demo config), lay the flags over it and reload; never throws. */
async function reloadConfig(gateway: Gateway, file: string | undefined, flags: Flags): Promise<void> {
  const log = gateway.app.log;
  try {
    const base = file !== undefined ? await readConfigFile(file) : structuredClone(DEMO_CONFIG);
    await gateway.reload(applyFlags(base, flags));
  } catch (err) {
    const where = file !== undefined ? ` (config: ${file})` : '';
    log.error({ err: (err as { code?: unknown }).code }, `config reload failed, keeping the running configuration: ${errorText(err)}${where}`);
  }
}

interface Flags {
  listen?: string;
  route?: string[];
  origin?: string[];
  'allow-anonymous'?: boolean;
}

/**
 * Lay the flags over the file's data. Routes are merged by name; --origin replaces the list. Data that is not
 * an object is left for resolveConfig to name.
 */
function applyFlags(base: unknown, flags: Flags): unknown {
  if (!isObject(base)) return base;
  const out: Record<string, unknown> = { ...base };
  if (flags.listen !== undefined) out.listen = flags.listen;
  if (flags.route?.length) {
    if (out.routes !== undefined && out.routes !== null && !isObject(out.routes)) return out; // resolveConfig names `routes`
    const routes: Record<string, unknown> = isObject(out.routes) ? { ...out.routes } : {};
    for (const spec of flags.route) {
      const eq = spec.indexOf('=');
      if (eq <= 0) throw new UsageError(`--route expects NAME=TARGET, got ${JSON.stringify(spec)}`);
      routes[spec.slice(0, eq)] = { target: spec.slice(eq + 1) };
    }
    out.routes = routes;
  }
  if (flags.origin?.length) out.origins = [...flags.origin];
  if (flags['allow-anonymous']) out.allowAnonymous = true;
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** One line, always: multi-line causes (a YAML code frame) would split across log collectors. */
function errorText(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

function fail(err: unknown): number {
  process.stderr.write(`sockgate: ${errorText(err)}\n`);
  return EXIT_START_FAILED;
}

function usageError(message: string): number {
  process.stderr.write(`sockgate: ${errorText(message)}\nRun "sockgate --help" for usage.\n`);
  return EXIT_USAGE;
}

/**
 * Where `sockgate serve` logs: stdout, each line written as it is logged (pino's destination with sync: true, as
 * Node itself writes stdout to a pipe). pino's default destination writes asynchronously and, at exit, flushes
 * what is left synchronously, retrying a failed write every 100 ms until it succeeds: with stdout a broken pipe
 * (the log reader gone), that flush never ended and SIGTERM left the process hanging. Written at once, a broken
 * pipe fails the write, pino stops logging, and the process exits as it should.
 */
function logDestination(): ReturnType<typeof pino.destination> {
  return pino.destination({ dest: 1, sync: true });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`sockgate: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(EXIT_START_FAILED);
  },
);
