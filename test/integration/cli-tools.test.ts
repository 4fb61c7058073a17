/**
 * `sockgate agent`, `forward` and `connect` as a user runs them: the built CLI (`node dist/server/cli.js`) as child
 * processes, against in-process gateways on 127.0.0.1. `npm test` builds first; when dist is missing the server is
 * compiled once here.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, ensureBuilt, oneLine, rawEcho, root } from '../helpers/cli.js';
import { createGateway, type Gateway } from '../../server/gateway.js';
import { type Backend, echoHandler, tcpBackend, waitFor } from '../helpers/backends.js';
import { within } from '../helpers/mux-client.js';

const cli = cliPath;
const AGENT_TOKEN = 'cli-agent-token-0123456789abcdefgh';
const CLIENT_TOKEN = 'cli-client-token-0123456789abcdefg';

let dir: string;
let echo: Backend;
const running = new Set<ChildProcess>();
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'sockgate-cli-tools-'));
  echo = await tcpBackend(echoHandler);
}, 150_000);

afterAll(async () => {
  await echo.close();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  for (const p of running) p.kill('SIGKILL');
  running.clear();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

interface Child {
  process: ChildProcess;
  stdout(): Buffer;
  stderr(): string;
  /** JSON log lines on stdout. */
  logs(): Record<string, unknown>[];
  exited: Promise<number | null>;
}

function spawnCli(args: string[], opts: { env?: Record<string, string> } = {}): Child {
  const p = spawn(process.execPath, [cli, ...args], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  running.add(p);
  const out: Buffer[] = [];
  let err = '';
  p.stdout!.on('data', (d: Buffer) => out.push(d));
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  p.stdin!.on('error', () => {}); // EPIPE when the child exits first
  const exited = new Promise<number | null>((r) =>
    p.on('close', (code) => {
      running.delete(p);
      r(code);
    }),
  );
  const stdout = (): Buffer => Buffer.concat(out);
  const logs = (): Record<string, unknown>[] =>
    stdout()
      .toString()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { process: p, stdout, stderr: () => err, logs, exited };
}

async function gateway(config: Record<string, unknown>, port = 0): Promise<{ gateway: Gateway; port: number; wsUrl: string }> {
  const gw = await createGateway({ ...config, listen: `127.0.0.1:${port}` }, { logger: false });
  const { port: actual } = await gw.listen();
  cleanups.push(() => gw.close());
  return { gateway: gw, port: actual, wsUrl: `ws://127.0.0.1:${actual}` };
}

describe('sockgate connect (ssh ProxyCommand style)', () => {
  it('round-trips stdin and stdout with a service that speaks first; stdin EOF half-closes; exit 0', async () => {
    const eofs: number[] = [];
    const service = await tcpBackend((socket) => {
      socket.write('SSH-2.0-sockgate-test\r\n');
      let bytes = 0;
      socket.on('data', (c: Buffer) => {
        bytes += c.length;
        socket.write(c.toString().toUpperCase());
      });
      // The client's EOF arrives as ours: answer once more, then end (the child then exits 0).
      socket.on('end', () => {
        eofs.push(bytes);
        socket.end('bye\n');
      });
    });
    cleanups.push(() => service.close());
    const gw = await gateway({ routes: { ssh: { target: service.target } } });
    const c = spawnCli(['connect', '--gateway', gw.wsUrl, '--route', 'ssh']);
    await waitFor(() => c.stdout().toString().includes('SSH-2.0-sockgate-test\r\n'), 5000, 'the banner');
    c.process.stdin!.write('hello\n');
    await waitFor(() => c.stdout().toString().includes('HELLO\n'), 5000, 'the answer');
    c.process.stdin!.end();
    expect(await within(c.exited, 10_000, 'the child to exit')).toBe(0);
    expect(c.stdout().toString()).toBe('SSH-2.0-sockgate-test\r\nHELLO\nbye\n');
    expect(c.stderr()).toBe('');
    expect(eofs).toEqual([6]);
  });

  it('carries 4 MiB through an echo route byte-exact and exits 0 after EOF both ways', async () => {
    const gw = await gateway({ routes: { echo: { target: echo.target } }, auth: { tokens: [{ name: 'cli', token: CLIENT_TOKEN, routes: ['echo'] }] } });
    const c = spawnCli(['connect', '--gateway', gw.wsUrl, '--route', 'echo'], { env: { SOCKGATE_TOKEN: CLIENT_TOKEN } });
    const payload = randomBytes(4 * 1024 * 1024);
    c.process.stdin!.end(payload);
    expect(await within(c.exited, 20_000, 'the child to exit')).toBe(0);
    const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    expect(c.stdout().length).toBe(payload.length);
    expect(digest(c.stdout())).toBe(digest(payload));
  });

  it('fails with exit 1 and one line naming the code: unknown route, wrong token, no gateway', async () => {
    const gw = await gateway({ routes: { echo: { target: echo.target } }, auth: { tokens: [{ name: 'cli', token: CLIENT_TOKEN, routes: ['echo'] }] } });
    const port = await freePort();
    // Each child is a Node process: start them all at once.
    const unknown = spawnCli(['connect', '--gateway', gw.wsUrl, '--token', CLIENT_TOKEN, '--route', 'nope']);
    const wrong = spawnCli(['connect', '--gateway', gw.wsUrl, '--token', 'wrong-token-0123456789abcdef', '--route', 'echo']);
    const down = spawnCli(['connect', '--gateway', `ws://127.0.0.1:${port}`, '--route', 'echo']);
    const usage = spawnCli(['connect', '--gateway', gw.wsUrl]);
    const codes = await within(Promise.all([unknown.exited, wrong.exited, down.exited, usage.exited]), 15_000, 'the children to exit');
    expect(codes).toEqual([1, 1, 1, 2]);
    // A limited credential cannot tell a missing route from a forbidden one (docs/SECURITY.md 6).
    expect(oneLine(unknown.stderr())).toMatch(/^sockgate connect: SOCKGATE_ERR_ROUTE_FORBIDDEN: /);
    expect(oneLine(wrong.stderr())).toMatch(/^sockgate connect: SOCKGATE_ERR_AUTH_INVALID: .*HTTP 401/);
    expect(wrong.stderr()).not.toContain('wrong-token');
    expect(oneLine(down.stderr())).toMatch(/^sockgate connect: SOCKGATE_ERR_SDK_HANDSHAKE: .*ECONNREFUSED/);
    expect(usage.stderr()).toContain('--route is required');
  });
});

describe('sockgate agent', () => {
  const agents = [{ name: 'home', token: AGENT_TOKEN, services: ['svc'] }];
  const routes = { home: { target: 'agent:svc' } };

  it('serves a local service through the gateway, and comes back by itself after the gateway restarts on the same port', async () => {
    const gw = await gateway({ routes, auth: { agents } });
    const a = spawnCli(['agent', '--gateway', gw.wsUrl, '--expose', `svc=${echo.target}`], { env: { SOCKGATE_TOKEN: AGENT_TOKEN } });
    await waitFor(() => a.logs().some((l) => l.msg === 'agent connected'), 10_000, 'the agent to connect');
    expect(await rawEcho(`${gw.wsUrl}/raw/home`, 'through a child agent')).toBe('through a child agent');

    await gw.gateway.close();
    await waitFor(() => a.logs().some((l) => l.msg === 'agent disconnected; reconnecting'), 10_000, 'the agent to notice');
    const again = await gateway({ routes, auth: { agents } }, gw.port);
    // The default backoff starts at 0.5 s and doubles: the agent is back within a few seconds.
    await waitFor(() => a.logs().filter((l) => l.msg === 'agent connected').length === 2, 20_000, 'the agent to reconnect');
    expect(await rawEcho(`${again.wsUrl}/raw/home`, 'after the restart')).toBe('after the restart');
    // No token in any log line.
    expect(a.stdout().toString()).not.toContain(AGENT_TOKEN);

    a.process.kill('SIGTERM');
    expect(await within(a.exited, 10_000, 'the agent to exit')).toBe(0);
    expect(a.logs().at(-1)?.msg).toBe('agent stopped');
  }, 40_000);

  it('reads a YAML config file; flags override it', async () => {
    const gw = await gateway({ routes, auth: { agents } });
    const file = join(dir, 'agent.yaml');
    const tokenFile = join(dir, 'agent.token');
    writeFileSync(tokenFile, `${AGENT_TOKEN}\n`);
    writeFileSync(file, `gateway: ws://127.0.0.1:1\ntokenFile: ${tokenFile}\nservices:\n  svc: ${echo.target}\nreconnect:\n  initialDelayMs: 100\n`);
    const a = spawnCli(['agent', '--config', file, '--gateway', gw.wsUrl]);
    await waitFor(() => a.logs().some((l) => l.msg === 'agent connected'), 10_000, 'the agent to connect');
    expect(await rawEcho(`${gw.wsUrl}/raw/home`, 'yaml')).toBe('yaml');
    a.process.kill('SIGINT');
    expect(await within(a.exited, 10_000, 'exit')).toBe(0);
  });

  it('exits 1 with one line when the gateway refuses its token or its services; 2 for a bad command line', async () => {
    const gw = await gateway({ routes, auth: { agents } });
    const wrong = spawnCli(['agent', '--gateway', gw.wsUrl, '--token', 'not-the-agent-token-0123', '--expose', `svc=${echo.target}`]);
    const forbidden = spawnCli(['agent', '--gateway', gw.wsUrl, '--token', AGENT_TOKEN, '--expose', `db=${echo.target}`]);
    const bad = spawnCli(['agent', '--gateway', gw.wsUrl, '--token', AGENT_TOKEN, '--expose', 'no-equals']);
    const badTarget = spawnCli(['agent', '--gateway', gw.wsUrl, '--token', AGENT_TOKEN, '--expose', 'svc=builtin:echo']);
    const help = spawnCli(['agent', '--help']);
    const codes = await within(Promise.all([wrong, forbidden, bad, badTarget, help].map((c) => c.exited)), 15_000, 'the children to exit');
    expect(codes).toEqual([1, 1, 2, 1, 0]);
    expect(oneLine(wrong.stderr())).toMatch(/^sockgate agent: SOCKGATE_ERR_AUTH_INVALID: /);
    expect(oneLine(forbidden.stderr())).toMatch(/^sockgate agent: SOCKGATE_ERR_ROUTE_FORBIDDEN: .*"db"/);
    expect(bad.stderr()).toContain('--expose expects NAME=TARGET');
    expect(oneLine(badTarget.stderr())).toContain('services.svc: builtin:echo: an agent exposes tcp://host:port or unix:/path');
    expect(help.stdout().toString()).toContain('Usage: sockgate agent');
  });
});

describe('sockgate forward', () => {
  it('listens, forwards connections to a route, and exits 0 on SIGTERM', async () => {
    const gw = await gateway({ routes: { echo: { target: echo.target } } });
    const f = spawnCli(['forward', '--gateway', gw.wsUrl, '--listen', '127.0.0.1:0', '--route', 'echo', '--opens-per-second', '50', '--opens-burst', '1']);
    await waitFor(() => f.logs().some((l) => typeof l.listen === 'string'), 10_000, 'the forward to listen');
    const listen = f.logs().find((l) => typeof l.listen === 'string')!.listen as string;
    const port = Number(listen.split(':').at(-1));
    for (const text of ['first', 'second']) {
      const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
      let got = '';
      socket.on('data', (d: Buffer) => (got += d.toString()));
      const ended = new Promise<void>((r) => socket.once('end', () => r()));
      socket.end(text);
      await within(ended, 5000, 'the echo to end');
      socket.destroy();
      expect(got).toBe(text);
    }
    f.process.kill('SIGTERM');
    expect(await within(f.exited, 10_000, 'exit')).toBe(0);

    const busy = spawnCli(['forward', '--gateway', gw.wsUrl, '--listen', `127.0.0.1:${gw.port}`, '--route', 'echo']);
    expect(await within(busy.exited, 10_000, 'exit')).toBe(1);
    expect(oneLine(busy.stderr())).toBe(`sockgate forward: cannot listen on 127.0.0.1:${gw.port}: address in use`);

    const badBurst = spawnCli(['forward', '--gateway', gw.wsUrl, '--listen', '127.0.0.1:0', '--route', 'echo', '--opens-burst', '1.5']);
    expect(await within(badBurst.exited, 10_000, 'exit')).toBe(2);
    expect(badBurst.stderr().toString()).toContain('--opens-burst expects a positive whole number, got "1.5"');
  });
});

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
