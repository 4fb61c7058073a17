/**
 * The benchmark harness end to end (`node bench/run.mjs`), at toy sizes: every section against direct TCP, the bare
 * bridge and sockgate raw and mux, so a change that breaks a probe, a relay launcher or the report shows here
 * rather than at the next full run. The figures themselves mean nothing at these sizes and are not checked;
 * that the cells below got a number is (a transfer that fails its byte check leaves an error in its cell instead).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');
const RELAYS = ['direct TCP', 'bare ws+net bridge', 'sockgate raw', 'sockgate mux'];

/** The developer's own BENCH_* settings (sections, variants, profiles) must not change what runs here. */
function inheritedEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BENCH_')));
}

/**
 * Run a bench script to its end, SIGTERM after `timeoutMs`; `spawned` gets the child and its close (for a cleanup
 * that must stop it). 'close', not 'exit': the report is the last thing printed, and stdout may still be draining
 * at 'exit'.
 */
async function runScript(
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  spawned?: (child: ChildProcess, closed: Promise<number | null>) => void,
): Promise<{ code: number | null; out: string; err: string }> {
  const run = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const closed = new Promise<number | null>((r) => run.once('close', r));
  spawned?.(run, closed);
  let out = '';
  let err = '';
  run.stdout.on('data', (d: Buffer) => (out += d));
  run.stderr.on('data', (d: Buffer) => (err += d));
  const timer = setTimeout(() => run.kill('SIGTERM'), timeoutMs);
  const code = await closed;
  clearTimeout(timer);
  return { code, out, err };
}

describe('npm run bench, at toy sizes', () => {
  const dir = mkdtempSync(join(os.tmpdir(), 'sockgate-bench-smoke-'));
  let child: ChildProcess | undefined;
  let closed: Promise<number | null> | undefined;
  afterAll(async () => {
    // Interrupted or timed out: stop the harness (it stops its relays on exit) before removing its directory.
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const kill = setTimeout(() => child?.kill('SIGKILL'), 5000);
      await closed;
      clearTimeout(kill);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs every section and reports a number in every cell it checks', { timeout: 300_000 }, async () => {
    const env = {
      ...inheritedEnv(),
      BENCH_RESULTS_DIR: dir,
      BENCH_MB: '4',
      BENCH_WARMUP_MB: '1',
      BENCH_CLIENT_WARMUP_MB: '1',
      // Two rounds: the target lines give their ratios round by round (bench/rounds.mjs).
      BENCH_REPEATS: '2',
      BENCH_RTT_ROUNDS: '50',
      BENCH_RTT_WARMUP: '20',
      BENCH_SETUP_CONNS: '20',
      BENCH_CONNS: '20',
      BENCH_BP_MB: '8',
      BENCH_MUX_STREAMS: '1,10',
      BENCH_BROWSER_MB: '2',
    };
    const { code, out, err } = await runScript([join(root, 'bench/run.mjs'), '--only', 'direct,bare,sockgate-raw,sockgate-mux'], env, 280_000, (c, p) => {
      child = c;
      closed = p;
    });
    expect(code, err.slice(-4000)).toBe(0);

    const rows = new Map(
      out
        .split('\n')
        .filter((l) => l.startsWith('| '))
        .map((l) => l.split('|').slice(1, -1).map((c) => c.trim()))
        .map((cells) => [cells[0]!, cells.slice(1)]),
    );
    expect(rows.get('')).toEqual(RELAYS);
    const numeric = (row: string, relays: string[]): void => {
      const cells = rows.get(row);
      expect(cells, row).toBeDefined();
      for (const relay of relays) expect(cells![RELAYS.indexOf(relay)], `${row}: ${relay}`).toMatch(/^-?\d+(\.\d+)?$/);
    };
    for (const row of [
      'client -> backend, MB/s',
      'backend -> client, MB/s',
      'echo, MB/s',
      'round trip p50, us',
      'round trip p99, us',
      // Every relay's round trips interleaved in one client; then the same with the client, the relays and the
      // backend pinned to one CPU (taskset), then given all CPUs back.
      'round trip p50, every process on one CPU, us',
      'set-up rate, conn/s',
    ]) {
      numeric(row, RELAYS);
    }
    for (const row of ['backend stops reading: held, MiB', 'client stops reading: held, MiB']) numeric(row, RELAYS);
    // The lean client reads raw WebSockets and TCP; mux goes through the SDK, so its cell is '-'.
    numeric('backend -> client, lean client, MB/s', RELAYS.slice(0, 3));
    expect(rows.get('backend -> client, lean client, MB/s')![3]).toBe('-');
    numeric('relay CPU per GB, backend -> client, lean client, ms', ['bare ws+net bridge', 'sockgate raw']);
    const relays = RELAYS.slice(1);
    for (const row of ['relay CPU per GB, client -> backend, ms', 'memory per idle connection at 20, KiB']) numeric(row, relays);
    for (const row of [
      '1 download at once (mux: streams of one session), aggregate MB/s',
      '10 downloads at once: steady state (1 s, all running), aggregate MB/s',
      '10 downloads at once: fairness (slowest / fastest)',
    ]) {
      numeric(row, ['direct TCP', 'sockgate raw', 'sockgate mux']);
    }
    for (const row of ['in Chromium: page -> backend, MB/s (mux: the SDK)', 'in Chromium: backend -> page, MB/s (mux: the SDK)']) numeric(row, relays);
    expect(out).toContain('Targets:');
    // Each ratio's line also gives it round by round, the ratio of two cells measured side by side in that round.
    const twoRounds = '; rounds \\d+\\.\\d\\dx, \\d+\\.\\d\\dx\\)';
    for (const m of ['up', 'down', 'echo']) expect(out).toMatch(new RegExp(`mux \\(1 stream, SDK\\) ${m} vs raw: \\d+\\.\\d\\dx \\(target >= 0\\.9x[^)]*${twoRounds}`));
    expect(out).toMatch(new RegExp(`mux 10 streams aggregate vs 1 stream: \\d+\\.\\d\\dx \\(target >= 0\\.9x[^)]*${twoRounds}`));
    // Beside that target, the same ratio for raw mode's connections and the streams' steady state, round by round.
    const twoInfoRounds = '; rounds \\d+\\.\\d\\dx, \\d+\\.\\d\\dx$';
    expect(out).toMatch(new RegExp(`^- \\[info\\] raw mode, 10 connections aggregate vs 1: \\d+\\.\\d\\dx${twoInfoRounds}`, 'm'));
    expect(out).toMatch(new RegExp(`^- \\[info\\] mux 10 streams, steady state \\(1 s, all running\\) vs 1 stream aggregate: \\d+\\.\\d\\dx${twoInfoRounds}`, 'm'));
    expect(out).toContain('after 1 MiB moved the same way, unmeasured, by the same client process');
    expect(out).toContain('50 round trips of 32 bytes after 20 unmeasured');
    expect(readdirSync(dir).filter((f) => f.endsWith('.json'))).toHaveLength(1);
  });
});

describe('node bench/cpu-probe.mjs, at toy sizes', () => {
  // BENCH_PROFILE's directory, removed however the test ends.
  const profiles = mkdtempSync(join(os.tmpdir(), 'sockgate-bench-profiles-'));
  afterAll(() => rmSync(profiles, { recursive: true, force: true }));
  // par100: hundreds of gateway log lines per transfer, more than a pipe holds: the probe must read them meanwhile
  // (a gateway whose log pipe is full waits at its next line).
  it('reports MB/s and CPU per GiB for one transfer and for parallel downloads, and the latter over time', { timeout: 120_000 }, async () => {
    for (const phase of ['echo', 'par100']) {
      // BENCH_PROFILE (echo only, to keep it short): a --cpu-prof of every client process and of each gateway.
      const env: NodeJS.ProcessEnv = {
        ...inheritedEnv(),
        BENCH_CLIENT_WARMUP_MB: '1',
        BENCH_TIMELINE_MS: '20',
        BENCH_SCHED_MS: '20',
        ...(phase === 'echo' && { BENCH_PROFILE: profiles }),
      };
      const { code, out, err } = await runScript([join(root, 'bench/cpu-probe.mjs'), 'sockgate-raw,sockgate-mux', phase, '1', '8'], env, 50_000);
      expect(code, err.slice(-4000)).toBe(0);
      if (phase === 'echo') {
        const files = readdirSync(profiles);
        // Per relay: the warm-up's client and the measured one's; and the gateway's, written as it stopped.
        for (const key of ['sockgate-raw', 'sockgate-mux']) {
          expect(files.filter((f) => f.startsWith(`client-${key}-echo-`) && f.endsWith('.cpuprofile')), key).toHaveLength(2);
        }
        for (const gateway of ['raw-', 'mux-']) expect(files.filter((f) => f.startsWith(gateway) && f.endsWith('.cpuprofile')), gateway).toHaveLength(1);
      }
      for (const key of ['sockgate-raw', 'sockgate-mux']) {
        expect(out, phase).toMatch(new RegExp(`^${key} ${phase}: \\d+ MB/s; CPU ms per GiB: client \\d+ \\+ \\d+, relay \\d+, backend \\d+$`, 'm'));
        expect(out, phase).toMatch(new RegExp(`^median ${key} ${phase}: \\d+ MB/s$`, 'm'));
        if (phase !== 'par100') continue;
        expect(out).toMatch(new RegExp(`^${key} par100: MB/s per 20 ms: \\d+( \\d+)*$`, 'm'));
        // Each of the three moved bytes, so each ran in some slice: a sampler reading the wrong processes reads 0.
        for (const who of ['client', 'relay', 'backend']) {
          const slice = '\\d+\\.\\d\\d/\\d+\\.\\d\\d';
          const line = new RegExp(`^${key} par100: ${who}, cores running/waiting per 20 ms: (${slice}( ${slice})*)$`, 'm').exec(out);
          expect(line, `${key} ${who}`).not.toBeNull();
          const running = (line?.[1] ?? '').split(' ').map((s) => Number(s.split('/')[0]));
          expect(Math.max(...running), `${key} ${who}`).toBeGreaterThan(0);
        }
      }
      expect(out, 'unpinned').not.toMatch(/^pinned /m);
    }
  });

  // Every process on CPU 0, which every machine has. Unpinned, they may run on every CPU (0-1 on the 2-core test
  // machine), so these lines tell pinned from not wherever there are two or more.
  it('pins the client, the relay and the backend where BENCH_PIN says, and refuses a spec it cannot read', { timeout: 60_000 }, async () => {
    const args = [join(root, 'bench/cpu-probe.mjs'), 'sockgate-raw', 'down', '1', '8'];
    const env: NodeJS.ProcessEnv = { ...inheritedEnv(), BENCH_CLIENT_WARMUP_MB: '1', BENCH_PIN: 'client:0,relay:0,backend:0' };
    const { code, out, err } = await runScript(args, env, 40_000);
    expect(code, err.slice(-4000)).toBe(0);
    expect(out).toMatch(/^sockgate-raw down: \d+ MB\/s; CPU ms per GiB: client \d+ \+ \d+, relay \d+, backend \d+$/m);
    for (const who of ['backend', 'sockgate-raw', 'sockgate-raw down client']) expect(out, who).toMatch(new RegExp(`^pinned ${who}: CPUs 0$`, 'm'));
    const bad = await runScript(args, { ...env, BENCH_PIN: 'gateway:0' }, 20_000);
    expect(bad.code).not.toBe(0);
    expect(bad.err).toContain('BENCH_PIN: "gateway:0" is not client|relay|backend:CPUS');
  });
});
