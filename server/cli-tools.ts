/**
 * `sockgate agent`, `sockgate forward` and `sockgate connect`: thin shells around server/agent.ts and
 * server/forward.ts, dispatched from server/cli-main.ts. Failures are one line on stderr and a non-zero exit:
 * 1 for a runtime failure (refused, replaced, cannot listen, the stream failed), 2 for a bad command line.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SockgateError } from '../shared/errors.js';
import { resolveAgentConfig, type AgentConfig } from './agent-config.js';
import { startAgent } from './agent.js';
import { isLoopbackHost, parseListen, readConfigFile } from './config.js';
import { connectStdio, startForward, type ListenTarget } from './forward.js';
import { LOG_LEVELS, createLogger, type LogLevel } from './log.js';

export const TOOL_COMMANDS = ['agent', 'forward', 'connect'] as const;
export type ToolCommand = (typeof TOOL_COMMANDS)[number];

/** Time allowed for the WebSocket handshake of `forward` and `connect`, in milliseconds. */
const CONNECT_TIMEOUT_MS = 10_000;
/** After SIGINT/SIGTERM, give the graceful stop this long (ms) before exiting anyway. */
const STOP_TIMEOUT_MS = 5000;

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

export const TOOL_USAGE: Record<ToolCommand, string> = {
  agent: `Usage: sockgate agent --gateway URL --token TOKEN --expose NAME=TARGET... [options]
       sockgate agent --config agent.yaml

Dial out to a gateway and serve the named services to it (a reverse tunnel): clients reach them through
the gateway's routes with target agent:NAME.

Options:
  -c, --config FILE        YAML or JSON agent config (docs/CONFIG.md, "The agent"); flags override it
  -g, --gateway URL        the gateway: ws://HOST:PORT or wss://HOST:PORT
  -t, --token TOKEN        the agent token (auth.agents); also --token-file or SOCKGATE_TOKEN
      --token-file FILE    read the agent token from FILE
  -e, --expose NAME=TARGET serve NAME from TARGET (tcp://host:port or unix:/path); repeatable
      --log-level LEVEL    debug, info (default), warn, error
  -h, --help               show this help`,
  forward: `Usage: sockgate forward --gateway URL --listen HOST:PORT|unix:/path --route NAME [--token TOKEN]

Listen locally and forward each connection to a gateway route, over one shared mux session.

Options:
  -g, --gateway URL        the gateway: ws://HOST:PORT or wss://HOST:PORT
  -l, --listen ADDRESS     HOST:PORT (port 0 picks one) or unix:/path
  -r, --route NAME         the route to reach
  -t, --token TOKEN        a client token; also --token-file or SOCKGATE_TOKEN
      --token-file FILE    read the token from FILE
      --opens-per-second N new streams opened per second at most (default 100, the gateway's default limit);
                           set it to the gateway's opensPerSecond when that is lower
      --opens-burst N      new streams opened at once after a quiet spell (default 200, the gateway's
                           default opensBurst); connections beyond wait their turn
      --log-level LEVEL    debug, info (default), warn, error
  -h, --help               show this help`,
  connect: `Usage: sockgate connect --gateway URL --route NAME [--token TOKEN]

Bridge stdin and stdout to a gateway route, e.g.
  ssh -o ProxyCommand='sockgate connect --gateway wss://gw.example.com --route ssh' user@host
stdin's end half-closes the stream; exits 0 once both directions ended, 1 with one line naming the error.

Options:
  -g, --gateway URL        the gateway: ws://HOST:PORT or wss://HOST:PORT
  -r, --route NAME         the route to reach
  -t, --token TOKEN        a client token; also --token-file or SOCKGATE_TOKEN
      --token-file FILE    read the token from FILE
  -h, --help               show this help`,
};

class UsageError extends Error {}

/** Run one tool command with its arguments; resolves with the exit code. */
export async function runTool(command: ToolCommand, argv: string[]): Promise<number> {
  try {
    switch (command) {
      case 'agent':
        return await agentCommand(argv);
      case 'forward':
        return await forwardCommand(argv);
      case 'connect':
        return await connectCommand(argv);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`sockgate ${command}: ${oneLine(err.message)}\nRun "sockgate ${command} --help" for usage.\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`sockgate ${command}: ${describe(err)}\n`);
    return EXIT_FAILED;
  }
}

const common = {
  gateway: { type: 'string', short: 'g' },
  token: { type: 'string', short: 't' },
  'token-file': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** parseArgs' errors are usage errors (exit 2). */
function usage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function agentCommand(argv: string[]): Promise<number> {
  const { values } = usage(() =>
    parseArgs({
      args: argv,
      options: { ...common, config: { type: 'string', short: 'c' }, expose: { type: 'string', short: 'e', multiple: true }, 'log-level': { type: 'string' } },
    }),
  );
  if (values.help) return help('agent');
  const base = values.config !== undefined ? await readConfigFile(values.config) : {};
  if (typeof base !== 'object' || base === null || Array.isArray(base)) throw invalid('config: expected an object');
  const input: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  if (values.gateway !== undefined) input.gateway = values.gateway;
  if (values.token !== undefined || values['token-file'] !== undefined) {
    delete input.token;
    delete input.tokenFile;
    if (values.token !== undefined) input.token = values.token;
    if (values['token-file'] !== undefined) input.tokenFile = values['token-file'];
  }
  const expose = values.expose;
  if (expose?.length) {
    const services: Record<string, unknown> = typeof input.services === 'object' && input.services !== null ? { ...(input.services as object) } : {};
    for (const spec of expose) {
      const eq = spec.indexOf('=');
      if (eq <= 0) throw new UsageError(`--expose expects NAME=TARGET, got ${JSON.stringify(spec)}`);
      services[spec.slice(0, eq)] = spec.slice(eq + 1);
    }
    input.services = services;
  }
  if (values['log-level'] !== undefined) input.logLevel = values['log-level'];
  if (input.gateway === undefined && values.config === undefined) throw new UsageError('--gateway is required');
  let config: AgentConfig;
  try {
    config = resolveAgentConfig(input, process.env);
  } catch (err) {
    throw values.config !== undefined ? new Error(`${describe(err)} (config: ${values.config})`) : err;
  }
  const log = createLogger({ level: config.logLevel });
  const agent = startAgent({ config, log });
  const signalled = onSignals(() => agent.stop());
  // done settles at once on stop(); a signal's stop is over (tunnel closed, last line logged) when `signalled` is.
  const err = await Promise.race([agent.done.then((e) => e ?? signalled.then(() => undefined)), signalled.then(() => undefined)]);
  if (err) {
    process.stderr.write(`sockgate agent: ${describe(err)}\n`);
    return EXIT_FAILED;
  }
  return 0;
}

async function forwardCommand(argv: string[]): Promise<number> {
  const { values } = usage(() =>
    parseArgs({
      args: argv,
      options: {
        ...common,
        listen: { type: 'string', short: 'l' },
        route: { type: 'string', short: 'r' },
        'opens-per-second': { type: 'string' },
        'opens-burst': { type: 'string' },
        'log-level': { type: 'string' },
      },
    }),
  );
  if (values.help) return help('forward');
  const gateway = required(values.gateway, '--gateway');
  const route = required(values.route, '--route');
  const listen = parseListenTarget(required(values.listen, '--listen'));
  const level = logLevel(values['log-level']);
  const log = createLogger({ level });
  const token = tokenFrom(values.token, values['token-file']);
  if ('host' in listen && !isLoopbackHost(listen.host)) {
    log.warn({ listen: values.listen }, 'listening beyond loopback: anyone who can reach this address uses the route with this token');
  }
  const opensPerSecond = positive(values['opens-per-second'], '--opens-per-second', false);
  const opensBurst = positive(values['opens-burst'], '--opens-burst', true);
  const handle = await startForward({ gateway, token, route, listen, log, opensPerSecond, opensBurst, connectTimeoutMs: CONNECT_TIMEOUT_MS }).catch((err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code;
    const where = 'path' in listen ? listen.path : `${listen.host}:${listen.port}`;
    throw new Error(`cannot listen on ${where}: ${code === 'EADDRINUSE' ? 'address in use' : describe(err)}`);
  });
  const where = 'path' in handle.address ? `unix:${handle.address.path}` : `${handle.address.host}:${handle.address.port}`;
  log.info({ listen: where, route, gateway }, `forwarding ${where} to route ${route}`);
  await onSignals(() => handle.close());
  return 0;
}

async function connectCommand(argv: string[]): Promise<number> {
  const { values } = usage(() => parseArgs({ args: argv, options: { ...common, route: { type: 'string', short: 'r' } } }));
  if (values.help) return help('connect');
  const gateway = required(values.gateway, '--gateway');
  const route = required(values.route, '--route');
  const token = tokenFrom(values.token, values['token-file']);
  const err = await connectStdio({ gateway, token, route, connectTimeoutMs: CONNECT_TIMEOUT_MS, stdin: process.stdin, stdout: process.stdout });
  if (err) {
    process.stderr.write(`sockgate connect: ${describe(err)}\n`);
    return EXIT_FAILED;
  }
  return 0;
}

function help(command: ToolCommand): number {
  process.stdout.write(`${TOOL_USAGE[command]}\n`);
  return 0;
}

/** Resolves once a SIGINT or SIGTERM has run `stop` (bounded by STOP_TIMEOUT_MS). */
function onSignals(stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const handler = (): void => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
      const timer = setTimeout(resolve, STOP_TIMEOUT_MS);
      timer.unref();
      stop().then(resolve, resolve);
    };
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
  });
}

function required(value: unknown, flag: string): string {
  if (typeof value !== 'string' || value === '') throw new UsageError(`${flag} is required`);
  return value;
}

/** A flag's positive number (a whole one when `integer`), or undefined when the flag is absent. */
function positive(value: string | undefined, flag: string, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(Number.isFinite(n) && n > 0 && (!integer || Number.isInteger(n)))) {
    throw new UsageError(`${flag} expects a positive ${integer ? 'whole ' : ''}number, got ${JSON.stringify(value)}`);
  }
  return n;
}

function logLevel(value: unknown): LogLevel {
  if (value === undefined) return 'info';
  if (typeof value !== 'string' || !(value in LOG_LEVELS)) throw new UsageError(`--log-level expects one of ${Object.keys(LOG_LEVELS).join(', ')}`);
  return value as LogLevel;
}

/** --token, else --token-file, else SOCKGATE_TOKEN; undefined for an anonymous gateway. */
function tokenFrom(token: unknown, file: unknown): string | undefined {
  if (token !== undefined && file !== undefined) throw new UsageError('give --token or --token-file, not both');
  if (typeof file === 'string') {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw invalid(`--token-file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if (typeof token === 'string') return token;
  const env = process.env.SOCKGATE_TOKEN;
  return env !== undefined && env !== '' ? env : undefined;
}

/** `HOST:PORT` (IPv6 in brackets) or `unix:/absolute/path`. */
function parseListenTarget(text: string): ListenTarget {
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (!path.startsWith('/')) throw new UsageError(`--listen unix:PATH needs an absolute path, got ${JSON.stringify(text)}`);
    return { path };
  }
  try {
    return parseListen(text);
  } catch (err) {
    throw new UsageError(`--listen: ${describe(err).replace(/^invalid configuration: /, '')}`);
  }
}

function invalid(detail: string): SockgateError {
  return new SockgateError('SOCKGATE_ERR_CONFIG_INVALID', detail);
}

/** One line: the registry code first when there is one, so scripts can match it. */
function describe(err: unknown): string {
  if (err instanceof SockgateError) return oneLine(`${err.code}: ${err.message}`);
  return oneLine(err instanceof Error ? err.message : String(err));
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
