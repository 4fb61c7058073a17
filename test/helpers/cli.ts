/**
 * The built CLI (`node dist/server/cli.js`) as a child process, for tests that signal it: start `sockgate serve`,
 * wait for its listening line, read its JSON log lines, send signals, wait for the exit code. Every wait is
 * bounded; `killAll()` (afterEach) SIGKILLs whatever a failed test left running.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { WebSocket } from 'ws';
import { waitFor } from './backends.js';
import { within } from './mux-client.js';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const cliPath = join(root, 'dist', 'server', 'cli.js');

const running = new Set<ChildProcess>();

/** `npm test` builds first; when dist is missing, compile the server once (tsc emits despite type errors elsewhere). */
export function ensureBuilt(): void {
  if (existsSync(cliPath)) return;
  try {
    execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], {
      cwd: root,
      stdio: 'pipe',
      timeout: 120_000,
    });
  } catch (err) {
    if (!existsSync(cliPath)) throw err;
  }
}

export function killAll(): void {
  for (const p of running) p.kill('SIGKILL');
  running.clear();
}

export interface Served {
  readonly process: ChildProcess;
  /** `http://127.0.0.1:PORT` from the listening line. */
  readonly url: string;
  /** The admin listener's URL, when the config has one. */
  readonly adminUrl: string | undefined;
  /** Every JSON log line so far. */
  logs(): Record<string, unknown>[];
  stderr(): string;
  /** Wait for a log line matching `pred` (bounded). */
  waitForLog(pred: (line: Record<string, unknown>) => boolean, what: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  signal(signal: NodeJS.Signals): void;
  /** Resolves with the exit code (rejects after timeoutMs). */
  exited(timeoutMs?: number): Promise<number | null>;
}

/** Start `sockgate serve ...args` and wait for its "sockgate listening on" line. */
export async function serve(args: string[]): Promise<Served> {
  const p = spawn(process.execPath, [cliPath, 'serve', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(p);
  let stdout = '';
  let stderr = '';
  p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<number | null>((r) =>
    p.on('close', (code) => {
      running.delete(p);
      r(code);
    }),
  );
  const logs = (): Record<string, unknown>[] =>
    stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const waitForLog = async (pred: (line: Record<string, unknown>) => boolean, what: string, timeoutMs = 10_000): Promise<Record<string, unknown>> => {
    let found: Record<string, unknown> | undefined;
    await waitFor(
      () => {
        found = logs().find(pred);
        if (!found && p.exitCode !== null) throw new Error(`sockgate exited ${p.exitCode} before ${what}: ${stderr}`);
        return found !== undefined;
      },
      timeoutMs,
      what,
    );
    return found!;
  };
  const listening = await waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('sockgate listening on '), 'the listening log line');
  return {
    process: p,
    url: listening.url as string,
    adminUrl: listening.adminUrl as string | undefined,
    logs,
    stderr: () => stderr,
    waitForLog,
    signal: (signal) => p.kill(signal),
    async exited(timeoutMs = 15_000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`sockgate did not exit within ${timeoutMs} ms`)), timeoutMs);
      });
      return Promise.race([exit, timeout]).finally(() => clearTimeout(timer));
    },
  };
}

/** One raw-mode round trip of `text`; rejects when the upgrade is refused. Bounded waits. */
export async function rawEcho(url: string, text: string): Promise<string> {
  const ws = new WebSocket(url);
  let got = '';
  ws.on('message', (d: Buffer) => (got += d.toString()));
  await within(
    new Promise<void>((res, rej) => {
      ws.once('open', () => res());
      ws.once('error', rej);
    }),
    5000,
    `open ${url}`,
  );
  ws.send(Buffer.from(text));
  await waitFor(() => got.length >= text.length, 5000, 'the echo');
  ws.close();
  await new Promise<void>((res) => ws.once('close', () => res()));
  return got;
}

/** A CLI error is one line on stderr: assert that and return it. */
export function oneLine(stderr: string): string {
  const lines = stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  return lines[0]!;
}
