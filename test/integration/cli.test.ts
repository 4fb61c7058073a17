/**
 * The built CLI (`node dist/server/cli.js`) as a user runs it: real processes, ephemeral ports on 127.0.0.1.
 * `npm test` builds first; when dist is missing the server is compiled once here.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, ensureBuilt, oneLine, rawEcho, root } from '../helpers/cli.js';
import { type Backend, echoHandler, tcpBackend, waitFor } from '../helpers/backends.js';

const cli = cliPath;

let dir: string;
let echo: Backend;
const running = new Set<ChildProcess>();

beforeAll(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'sockgate-cli-'));
  echo = await tcpBackend(echoHandler);
}, 150_000);

afterAll(async () => {
  await echo.close();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(() => {
  for (const p of running) p.kill('SIGKILL');
  running.clear();
});

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the CLI to completion (bounded: killed after timeoutMs). */
function run(args: string[], timeoutMs = 15_000): Promise<Result> {
  return new Promise((resolvePromise) => {
    const p = spawn(process.execPath, [cli, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(p);
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      running.delete(p);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

interface Served {
  url: string;
  logs: () => Record<string, unknown>[];
  /** SIGTERM and wait for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Close our end of its stdout, as a log reader that went away: its log writes fail with EPIPE from then on. */
  closeStdout(): void;
}

/** Start `sockgate serve ...` and wait for its "listening on URL" log line. */
async function serve(args: string[]): Promise<Served> {
  const p = spawn(process.execPath, [cli, 'serve', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(p);
  let stdout = '';
  let stderr = '';
  p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => p.on('close', (code) => r(code)));
  const logs = (): Record<string, unknown>[] =>
    stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  let url: string | undefined;
  await waitFor(
    () => {
      if (p.exitCode !== null) throw new Error(`sockgate exited ${p.exitCode}: ${stderr}`);
      const line = logs().find((l) => typeof l.msg === 'string' && l.msg.startsWith('sockgate listening on '));
      url = line?.url as string | undefined;
      return url !== undefined;
    },
    10_000,
    'the listening log line',
  );
  return {
    url: url!,
    logs,
    async stop(signal = 'SIGTERM') {
      p.kill(signal);
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000));
      const code = await Promise.race([exited, timeout]);
      if (code === 'timeout') throw new Error('sockgate did not exit after a signal'); // afterEach kills it
      running.delete(p);
      return code;
    },
    closeStdout() {
      p.stdout!.destroy();
    },
  };
}

describe('sockgate CLI', () => {
  it('prints help and version', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: sockgate serve');
    const version = await run(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('refuses a bad command line with exit 2', async () => {
    expect((await run(['serve', '--no-such-flag'])).code).toBe(2);
    expect((await run([])).code).toBe(2);
    const bad = await run(['serve', '--route', 'no-equals-sign']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--route expects NAME=TARGET');
  });

  it('serves the demo config by default, with --listen on port 0 and --route flags; exits 0 on SIGTERM', async () => {
    const s = await serve(['--listen', '127.0.0.1:0', '--route', `mine=${echo.target}`]);
    expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(s.url).not.toMatch(/:0$/);
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    const wsUrl = s.url.replace(/^http/, 'ws');
    expect(await rawEcho(`${wsUrl}/raw/mine`, 'through a --route')).toBe('through a --route');
    expect(await rawEcho(`${wsUrl}/raw/echo`, 'through builtin:echo')).toBe('through builtin:echo');
    // The raw connection's open and close were logged with route, bytes and duration.
    await waitFor(() => s.logs().some((l) => l.msg === 'raw connection closed' && l.raw === 'mine'), 5000, 'close log');
    const closed = s.logs().find((l) => l.msg === 'raw connection closed' && l.raw === 'mine')!;
    expect(closed).toMatchObject({ bytesIn: 17, bytesOut: 17 });
    expect(typeof closed.ms).toBe('number');
    expect(await s.stop('SIGTERM')).toBe(0);
  });

  it('exits 0 on SIGTERM when nothing reads its log any more (stdout a broken pipe)', async () => {
    // pino's default destination writes asynchronously and flushes synchronously at exit, and that flush retried
    // EPIPE every 100 ms forever: a gateway whose log reader had gone hung on SIGTERM.
    const s = await serve(['--listen', '127.0.0.1:0']);
    s.closeStdout();
    // Its shutdown lines ('shutting down: draining', 'drained') go into the broken pipe.
    expect(await s.stop('SIGTERM')).toBe(0);
  });

  it('reads a YAML config; flags override it', async () => {
    const file = join(dir, 'gw.yaml');
    writeFileSync(file, `listen: 127.0.0.1:1\nroutes:\n  fromfile:\n    target: ${echo.target}\nlimits:\n  openTimeoutMs: 5000\n`);
    const s = await serve(['--config', file, '--listen', '127.0.0.1:0']);
    const wsUrl = s.url.replace(/^http/, 'ws');
    expect(await rawEcho(`${wsUrl}/raw/fromfile`, 'yaml')).toBe('yaml');
    // The file has no demo: the demo's page and route are not there.
    expect((await fetch(`${s.url}/`)).status).toBe(404);
    expect(await s.stop('SIGINT')).toBe(0);
  });

  it('reads a JSON config', async () => {
    const file = join(dir, 'gw.json');
    writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:0', routes: { j: { target: echo.target } } }));
    const s = await serve(['--config', file]);
    expect(await rawEcho(`${s.url.replace(/^http/, 'ws')}/raw/j`, 'json')).toBe('json');
    expect(await s.stop()).toBe(0);
  });

  it('fails with one line naming the key for a bad config', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'routes:\n  ssh:\n    target: ftp://example\n');
    const r = await run(['serve', '--config', file]);
    expect(r.code).toBe(1);
    const line = oneLine(r.stderr);
    expect(line).toMatch(/^sockgate: invalid configuration: routes\.ssh\.target: /);
    expect(line).toContain(file);
  });

  it('fails with one line for an unknown key, a YAML syntax error and a missing file', async () => {
    const unknown = join(dir, 'unknown.json');
    writeFileSync(unknown, JSON.stringify({ limits: { maxBytes: 1 } }));
    const r1 = await run(['serve', '--config', unknown]);
    expect(r1.code).toBe(1);
    expect(oneLine(r1.stderr)).toContain('limits.maxBytes: unknown key');

    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, 'routes: [\n');
    const r2 = await run(['serve', '--config', broken]);
    expect(r2.code).toBe(1);
    expect(oneLine(r2.stderr)).toMatch(/broken\.yaml: YAML parse error/);

    const missing = join(dir, 'missing.yaml');
    const r3 = await run(['serve', '--config', missing]);
    expect(r3.code).toBe(1);
    expect(oneLine(r3.stderr)).toContain(`cannot read config file ${missing}: ENOENT`);
  });

  it('fails with a clear line when the port is busy', async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const r = await run(['serve', '--listen', `127.0.0.1:${port}`]);
      expect(r.code).toBe(1);
      expect(oneLine(r.stderr)).toBe(`sockgate: cannot listen on 127.0.0.1:${port}: address in use`);
    } finally {
      await new Promise<void>((r) => busy.close(() => r()));
    }
  });
});
