// sockgate benchmark: every relay side by side in one run, on loopback only. docs/BENCHMARKS.md explains each
// measurement; usage:
//   npm run bench                                   full run (10 to 14 minutes on 2 cores)
//   BENCH_QUICK=1 npm run bench                     smoke run (about 2 minutes)
//   node bench/run.mjs --only sockgate-raw,websockify --sections throughput,setup
//   node bench/run.mjs --write                      also regenerate docs/BENCHMARKS.md
// Knobs (env): BENCH_QUICK, BENCH_MB, BENCH_WARMUP_MB, BENCH_CLIENT_WARMUP_MB, BENCH_REPEATS, BENCH_PHASES ("up,down,downLean,echo,rtt,rttPinned"), BENCH_RTT_ROUNDS,
// BENCH_RTT_WARMUP, BENCH_SETUP_CONNS, BENCH_CONNS ("1000,8000"),
// BENCH_MEM_REPEATS, BENCH_MEM_BUDGET_MB, BENCH_BP_MB, BENCH_MUX_STREAMS ("1,10,100"), BENCH_BROWSER_MB, BENCH_SECTIONS,
// BENCH_VARIANTS ("before=/tmp/x/dist,...": more sockgate builds as extra columns), BENCH_PROFILE (a directory:
// sockgate runs with --cpu-prof; summarise with `node bench/profile-top.mjs FILE`), BENCH_RESULTS_DIR (bench/results).
// Processes: this orchestrator, the backends, one process group per relay, one client process per measurement
// (the idle-connection probe spreads its clients over several, each far below the fd limit).
import { fork, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openConn } from './conns.mjs';
import { FILLER } from './pattern.mjs';
import { roundRatios, roundsText } from './rounds.mjs';
import { treeMemory } from './procmem.mjs';
import { cpuProfArgs, freePort, relayDefs, startBackends, stopAll, variantsFromEnv } from './relays.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const flag = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const QUICK = process.env.BENCH_QUICK === '1';
const num = (name, full, quick) => Number(process.env[name] ?? (QUICK ? quick : full));
const list = (name, full, quick) => String(process.env[name] ?? (QUICK ? quick : full)).split(',').filter(Boolean);

const MB = num('BENCH_MB', 1024, 64);
const WARMUP_MB = num('BENCH_WARMUP_MB', 128, 16);
const BYTES = MB * 1024 * 1024;
/**
 * Each measuring client process first moves this much the same way, unmeasured (bench/client.mjs warmupBytes):
 * a fresh process runs its first 100-400 ms of JavaScript before V8 has compiled it, and the SDK has more of it
 * than `ws` alone (docs/BENCHMARKS.md). Its relay CPU is left out too.
 */
const CLIENT_WARMUP_BYTES = Math.min(num('BENCH_CLIENT_WARMUP_MB', 64, 8), MB) * 1024 * 1024;
/**
 * Rounds of the throughput, round-trip, set-up and mux measurements, each round every relay in turn; the table
 * gives their medians, and each target's line its ratio round by round. Five: a 1 GiB transfer lasts about a
 * second, and single rounds of the same ratio ranged from 0.75x to 1.2x in runs of three (docs/BENCHMARKS.md).
 */
const REPEATS = num('BENCH_REPEATS', 5, 1);
/** Rounds of the backpressure probes and the Chromium transfers: their figures move little between rounds. */
const SLOW_REPEATS = Math.min(REPEATS, 3);
const RTT_ROUNDS = num('BENCH_RTT_ROUNDS', 2000, 300);
/**
 * Round trips through each relay before the measured ones, unmeasured. The client is a fresh process: after 100,
 * V8 was still compiling `ws` and the SDK on its worker threads, and on one CPU those compilations stall the round
 * trip that waits behind them, which made the p99 largely a measure of the client's start (docs/BENCHMARKS.md,
 * "Round trip").
 */
const RTT_WARMUP = num('BENCH_RTT_WARMUP', 1000, 100);
const SETUP_CONNS = num('BENCH_SETUP_CONNS', 1000, 200);
const SETUP_CONCURRENCY = 8;
const SETUP_MAX_MS = 15_000;
const CONN_LEVELS = list('BENCH_CONNS', '1000,8000', '500').map(Number);
const MEM_REPEATS = num('BENCH_MEM_REPEATS', 1, 1);
const MEM_BUDGET_KIB = num('BENCH_MEM_BUDGET_MB', 4096, 1024) * 1024;
/** Connections per idle-client process: far below the 20,000 file descriptors a process may have. */
const CONNS_PER_CLIENT = 2000;
const BP_BYTES = num('BENCH_BP_MB', 512, 64) * 1024 * 1024;
const BP_MAX_MS = 20_000;
const BP_STALL_MS = 1500;
const MUX_STREAMS = list('BENCH_MUX_STREAMS', '1,10,100', '1,10,100').map(Number);
const SECTIONS = (flag('--sections') ?? process.env.BENCH_SECTIONS ?? 'throughput,setup,memory,backpressure,mux,browser').split(',');
const BROWSER_BYTES = num('BENCH_BROWSER_MB', 256, 32) * 1024 * 1024;
const ONLY = flag('--only')?.split(',');
const WRITE = args.includes('--write');
const VARIANTS = variantsFromEnv();
const PROFILE_DIR = process.env.BENCH_PROFILE;
/** Where each run's samples go, as JSON (bench/results, which git ignores). */
const RESULTS_DIR = process.env.BENCH_RESULTS_DIR ?? join(root, 'bench/results');
/**
 * Throughput phases to run (all by default; one for profiling): up, down, downLean (the download again, through the
 * lean client of bench/lean-ws.mjs; not for mux, whose client is the SDK), echo, rtt (round trips through every
 * relay at once, interleaved: bench/client.mjs, roundTrips), rttPinned (the same with the client, the relays and
 * the backend all on CPU 0).
 */
const PHASES = (process.env.BENCH_PHASES ?? 'up,down,downLean,echo,rtt,rttPinned').split(',');
/** The phases that move bytes through one relay at a time. */
const TRANSFERS = PHASES.filter((p) => !p.startsWith('rtt'));
const STEP_TIMEOUT_MS = 120_000;

const t0 = performance.now();
const log = (msg) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : undefined);

process.on('exit', () => stopAll());
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

if (PROFILE_DIR) mkdirSync(PROFILE_DIR, { recursive: true });
if (!existsSync(join(root, 'dist/server/cli.js'))) {
  console.error('bench: dist/ is missing; run `npm run build` (npm run bench does)');
  process.exit(1);
}

// ---- processes ------------------------------------------------------------------------------------------------

const { child: backends, ports: backendPorts } = await startBackends(root, { floodBytes: BP_BYTES, ipc: true });
const floodStats = () =>
  new Promise((resolve) => {
    backends.once('message', resolve);
    backends.send({ flood: 'stats' });
  });

/**
 * Clients mask their frames with bench/shim/bufferutil (4 bytes at a time) instead of ws's byte loop, so that the
 * client is not the bottleneck of uploads. Relays never get it: they run as they would in production.
 */
const CLIENT_ENV = { ...process.env, NODE_PATH: join(root, 'bench/shim') };

/** Run one measurement in its own client process; resolves with its JSON result, rejects with its error. */
function runClient(task, timeoutMs = 4 * STEP_TIMEOUT_MS, label = task.task) {
  const prof = cpuProfArgs(PROFILE_DIR, `client-${label}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...prof, join(root, 'bench/client.mjs'), JSON.stringify({ stepTimeoutMs: STEP_TIMEOUT_MS, ...task })], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: CLIENT_ENV,
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err = (err + c).slice(-4000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').pop();
      let result;
      try {
        result = JSON.parse(line);
      } catch {
        return reject(new Error(`client exited with ${code}: ${err.trim().split('\n').pop() ?? ''}`));
      }
      if (result.error) reject(new Error(result.error));
      else resolve(result);
    });
  });
}

/** The browser section's page server port, chosen now: the gateways allow its origin from the start. */
const PAGE_PORT = await freePort();
const relays = relayDefs({ root, variants: VARIANTS, profileDir: PROFILE_DIR, pageOrigin: `http://127.0.0.1:${PAGE_PORT}` }).filter(
  (r) => !ONLY || ONLY.includes(r.key),
);
const active = relays.filter((r) => !r.missing);

/** results[key][metric] = array of samples, or { error } / { note } for a cell that has no number. */
const results = Object.fromEntries(relays.map((r) => [r.key, {}]));
const sample = (key, metric, value) => {
  // A number replaces a note an earlier repeat left (a failed run among good ones): the median is of the good ones.
  if (!Array.isArray(results[key][metric])) results[key][metric] = [];
  results[key][metric].push(value);
};
const note = (key, metric, text) => {
  if (!Array.isArray(results[key][metric]) || results[key][metric].length === 0) results[key][metric] = { note: text };
};
const errText = (err) => String(err?.message ?? err).replace(/\s+/g, ' ').slice(0, 120);

async function fresh(relay, fn) {
  const inst = await relay.start(backendPorts);
  try {
    return await fn(inst);
  } finally {
    await inst.stop();
  }
}

// ---- throughput, round trip, set-up rate, mux streams: one instance per relay, repeats round-robin ---------------

async function steadySections() {
  const wanted = ['throughput', 'setup', 'mux'].filter((s) => SECTIONS.includes(s));
  if (wanted.length === 0) return;
  const instances = new Map();
  for (const relay of active) {
    try {
      instances.set(relay.key, await relay.start(backendPorts));
    } catch (err) {
      for (const m of ['up', 'down', 'echo', 'p50', 'p99', 'setup']) note(relay.key, m, `failed to start: ${errText(err)}`);
    }
  }
  const each = async (what, fn) => {
    for (const relay of active) {
      const inst = instances.get(relay.key);
      if (!inst) continue;
      try {
        await fn(relay, inst);
      } catch (err) {
        log(`${relay.key} ${what}: ${errText(err)}`);
        return { relay, err };
      }
    }
  };
  // One unmeasured pass first: a Node relay's first transfers run while V8 is still compiling its hot paths.
  if (SECTIONS.includes('throughput') && WARMUP_MB > 0) {
    await each('warm-up', async (relay, inst) => {
      await runClient({ task: 'throughput', target: inst.target, bytes: WARMUP_MB * 1024 * 1024, phases: TRANSFERS }, undefined, `warmup-${relay.key}`);
    });
  }
  for (let rep = 0; rep < REPEATS; rep++) {
    if (SECTIONS.includes('throughput')) {
      // Phase by phase, every relay in turn: the transfers whose rates are compared (mux against raw mode, raw mode
      // against websockify) run seconds apart, not a relay's whole set of phases apart, on this shared machine. One
      // client process per transfer, so that the relay's CPU time can be read around each.
      for (const phase of TRANSFERS) {
        await each('throughput', async (relay, inst) => {
          if (phase === 'downLean' && relay.mux) return;
          try {
            // The relay's CPU is read by the client, around the measured transfer only (not its warm-up).
            const task = { task: 'throughput', target: inst.target, bytes: BYTES, phases: [phase], warmupBytes: CLIENT_WARMUP_BYTES, cpuOf: { relay: inst.pids } };
            const r = await runClient(task, undefined, `${phase}-${relay.key}`);
            sample(relay.key, phase, r[phase]);
            if (inst.pids.length > 0) sample(relay.key, `cpu-${phase}`, r.cpuMs.relay / (BYTES / 1e9));
          } catch (err) {
            note(relay.key, phase, `failed: ${errText(err)}`);
            log(`${relay.key} ${phase} failed: ${errText(err)}`);
          }
        });
      }
      for (const relay of active.filter((r) => instances.has(r.key))) {
        const v = (m) => results[relay.key][m]?.at?.(-1)?.toFixed(0) ?? '-';
        log(
          `${relay.key}: up ${v('up')} down ${v('down')} (lean ${v('downLean')}) echo ${v('echo')} MB/s; ` +
            `relay CPU ms/GB ${v('cpu-up')} / ${v('cpu-down')} (lean ${v('cpu-downLean')}) / ${v('cpu-echo')}`,
        );
      }
      // Round trips through every relay in one client, interleaved, so that all of them are measured over the
      // same stretch of time (bench/client.mjs, roundTrips).
      for (const [phase, p50, p99] of [
        ['rtt', 'p50', 'p99'],
        ['rttPinned', 'p50Pinned', 'p99Pinned'],
      ]) {
        if (!PHASES.includes(phase)) continue;
        const measured = active.filter((relay) => instances.has(relay.key));
        const targets = Object.fromEntries(measured.map((relay) => [relay.key, instances.get(relay.key).target]));
        const pinned = phase === 'rttPinned' ? [...measured.flatMap((relay) => instances.get(relay.key).pids), backends.pid] : undefined;
        try {
          const r = await runClient({ task: 'roundTrips', targets, rounds: RTT_ROUNDS, warmup: RTT_WARMUP, pinned }, undefined, phase);
          for (const relay of measured) {
            const got = r[relay.key];
            if (got.error !== undefined) {
              for (const m of [p50, p99]) note(relay.key, m, `failed: ${got.error}`);
              log(`${relay.key} ${phase} failed: ${got.error}`);
            } else {
              sample(relay.key, p50, got.p50);
              sample(relay.key, p99, got.p99);
            }
          }
          const figures = measured.map((relay) => `${relay.key} ${r[relay.key].p50?.toFixed(0) ?? '-'} / ${r[relay.key].p99?.toFixed(0) ?? '-'}`);
          log(`round trips${phase === 'rttPinned' ? ', every process on one CPU' : ''}, p50 / p99 us: ${figures.join(', ')}`);
        } catch (err) {
          for (const relay of measured) for (const m of [p50, p99]) note(relay.key, m, `failed: ${errText(err)}`);
          log(`${phase} failed: ${errText(err)}`);
        }
      }
    }
    if (SECTIONS.includes('setup')) {
      await each('setup', async (relay, inst) => {
        try {
          const r = await runClient({ task: 'setup', target: inst.target, count: SETUP_CONNS, concurrency: SETUP_CONCURRENCY, maxMs: SETUP_MAX_MS });
          if (r.done === 0) throw new Error(r.error ?? 'no connection completed');
          sample(relay.key, 'setup', r.rate);
          log(`${relay.key}: set-up ${r.rate.toFixed(0)} conn/s (${r.done} in ${(r.ms / 1000).toFixed(1)} s, ${r.failed} failed${r.error ? `: ${r.error}` : ''})`);
        } catch (err) {
          note(relay.key, 'setup', `failed: ${errText(err)}`);
          log(`${relay.key} setup failed: ${errText(err)}`);
        }
      });
    }
    if (SECTIONS.includes('mux')) {
      for (const streams of MUX_STREAMS) {
        await each('mux', async (relay, inst) => {
          if (!relay.mux && !relay.parallel) return;
          try {
            const r = await runClient({ task: 'parallel', target: inst.target, streams, bytes: BYTES, warmupBytes: CLIENT_WARMUP_BYTES });
            sample(relay.key, `mux${streams}`, r.aggregate);
            if (streams > 1) {
              sample(relay.key, `fair${streams}`, r.fairness);
              sample(relay.key, `steady${streams}`, r.steady);
            }
            log(`${relay.key}: ${streams} at once ${r.aggregate.toFixed(0)} MB/s${streams > 1 ? `, fairness ${r.fairness.toFixed(2)}, steady state ${r.steady.toFixed(0)} MB/s` : ''}`);
          } catch (err) {
            note(relay.key, `mux${streams}`, `failed: ${errText(err)}`);
            log(`${relay.key} ${streams} streams failed: ${errText(err)}`);
          }
        });
      }
    }
  }
  for (const inst of instances.values()) await inst.stop();
}

// ---- backpressure probes ----------------------------------------------------------------------------------------

/** Wait until f() has not changed for BP_STALL_MS (or the deadline); returns its last value. */
async function settle(f, deadline) {
  let last = await f();
  let since = performance.now();
  while (performance.now() < deadline) {
    await sleep(250);
    const v = await f();
    if (v !== last) {
      last = v;
      since = performance.now();
    } else if (performance.now() - since >= BP_STALL_MS) break;
  }
  return last;
}

/** The backend stops reading: offer BP_BYTES; held = bytes that left the client process. */
async function probeBackendStalls(inst) {
  const mem0 = treeMemory(inst.pids);
  const conn = await openConn(inst.target, 'hold');
  const deadline = performance.now() + BP_MAX_MS;
  let written = 0;
  try {
    while (written < BP_BYTES && performance.now() < deadline) {
      const accepted = await Promise.race([conn.write(FILLER).then(() => true), sleep(BP_STALL_MS).then(() => false)]);
      written += FILLER.length;
      if (!accepted) break;
    }
    const unsent = await settle(() => conn.unsent(), deadline);
    const mem1 = treeMemory(inst.pids);
    return { held: written - unsent, growth: (mem1.pssKiB - mem0.pssKiB) * 1024, offered: written };
  } finally {
    conn.close();
  }
}

/** The client stops reading: the backend floods BP_BYTES; held = bytes the backend's kernel took minus those read. */
async function probeClientStalls(inst) {
  const mem0 = treeMemory(inst.pids);
  backends.send({ flood: 'reset' });
  const conn = await openConn(inst.target, 'flood');
  conn.pauseReading();
  let received = 0;
  conn.onData((d) => (received += d.length));
  const deadline = performance.now() + BP_MAX_MS;
  try {
    // The relay may connect to the backend a little after the client's handshake (socat, websockify fork first).
    while (!(await floodStats()).connected) {
      if (performance.now() > deadline) throw new Error('the relay never connected to the backend');
      await sleep(50);
    }
    const accepted = await settle(async () => (await floodStats()).accepted, deadline);
    const mem1 = treeMemory(inst.pids);
    return { held: accepted - received, growth: (mem1.pssKiB - mem0.pssKiB) * 1024 };
  } finally {
    conn.close();
  }
}

async function backpressureSection() {
  for (let rep = 0; rep < SLOW_REPEATS; rep++) {
    for (const relay of active) {
      for (const [dir, probe] of [
        ['bpBackend', probeBackendStalls],
        ['bpClient', probeClientStalls],
      ]) {
        try {
          const r = await fresh(relay, probe);
          sample(relay.key, `${dir}Held`, r.held / 2 ** 20);
          sample(relay.key, `${dir}Growth`, r.growth / 2 ** 20);
          log(`${relay.key} ${dir}: held ${(r.held / 2 ** 20).toFixed(1)} MiB, relay memory ${(r.growth / 2 ** 20).toFixed(1)} MiB`);
        } catch (err) {
          note(relay.key, `${dir}Held`, `failed: ${errText(err)}`);
          log(`${relay.key} ${dir} failed: ${errText(err)}`);
        }
      }
    }
  }
}

// ---- memory per idle connection ------------------------------------------------------------------------------------

/** Open `count` idle connections over several client processes; the relay's memory delta over the count. */
async function idleMemory(relay, count) {
  return fresh(relay, async (inst) => {
    // Warm up first (JIT, pools, lazily loaded code), so the delta is what connections cost.
    await runClient({ task: 'setup', target: inst.target, count: 50, concurrency: 4, maxMs: 10_000 });
    // The same settling time before both readings, so that garbage from the warm-up is not counted either way.
    await sleep(2000);
    const mem0 = treeMemory(inst.pids);
    const procs = Math.max(2, Math.ceil(count / CONNS_PER_CLIENT));
    const clients = [];
    for (let i = 0; i < procs; i++) {
      const share = Math.floor(count / procs) + (i < count % procs ? 1 : 0);
      const child = fork(join(root, 'bench/client.mjs'), [JSON.stringify({ task: 'idle', target: inst.target, count: share, concurrency: 16 })], {
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        env: CLIENT_ENV,
      });
      const state = { child, progress: 0, ready: undefined };
      child.on('message', (m) => {
        if (m.progress !== undefined) state.progress = m.progress;
        if (m.ready) state.ready = m;
      });
      child.once('exit', () => (state.ready ??= { opened: 0, failed: 1, error: 'client process exited' }));
      clients.push(state);
    }
    let stopped;
    const deadline = performance.now() + 90_000;
    while (clients.some((c) => !c.ready)) {
      await sleep(500);
      const mem = treeMemory(inst.pids);
      const opened = clients.reduce((n, c) => n + c.progress, 0);
      if (!stopped && mem.pssKiB - mem0.pssKiB > MEM_BUDGET_KIB) stopped = `stopped at ${opened}: relay memory over ${MEM_BUDGET_KIB / 1024} MiB`;
      if (!stopped && performance.now() > deadline) stopped = `stopped at ${opened}: too slow`;
      if (stopped) for (const c of clients) if (c.child.connected) c.child.send({ stop: true });
    }
    await sleep(2000);
    const mem1 = treeMemory(inst.pids);
    const opened = clients.reduce((n, c) => n + c.ready.opened, 0);
    const failed = clients.reduce((n, c) => n + c.ready.failed, 0);
    const error = clients.find((c) => c.ready.error)?.ready.error;
    for (const c of clients) if (c.child.connected) c.child.send({ close: true });
    await Promise.all(clients.map((c) => (c.child.exitCode === null ? new Promise((r) => c.child.once('exit', r)) : undefined)));
    const perConn = opened > 0 ? (mem1.pssKiB - mem0.pssKiB) / opened : undefined;
    return { opened, failed, error, stopped, perConn, rssPerConn: opened > 0 ? (mem1.rssKiB - mem0.rssKiB) / opened : undefined, procs: mem1.procs };
  });
}

async function memorySection() {
  for (const relay of active.filter((r) => r.ws)) {
    let gaveUp;
    for (const level of CONN_LEVELS) {
      for (let rep = 0; rep < MEM_REPEATS; rep++) {
        const metric = `mem${level}`;
        if (gaveUp) {
          note(relay.key, metric, `not tried: ${gaveUp}`);
          continue;
        }
        try {
          const r = await idleMemory(relay, level);
          const what = `${relay.key} ${level} idle: ${r.opened} open, ${r.failed} failed, ${r.perConn?.toFixed(1)} KiB/conn PSS (${r.rssPerConn?.toFixed(1)} RSS), ${r.procs} processes`;
          log(`${what}${r.stopped ? `; ${r.stopped}` : ''}${r.error ? `; ${r.error}` : ''}`);
          if (r.opened >= level) sample(relay.key, metric, r.perConn);
          else {
            const why = r.stopped ?? `failed at ${r.opened} (${r.failed} failed: ${r.error ?? 'unknown'})`;
            note(relay.key, metric, `${why}; ${fmtKiB(r.perConn)}/conn`);
            gaveUp = `${level} already ${r.stopped ? 'stopped' : 'failed'}`;
          }
        } catch (err) {
          note(relay.key, metric, `failed: ${errText(err)}`);
          log(`${relay.key} ${level} idle failed: ${errText(err)}`);
        }
      }
    }
  }
}

function fmtKiB(kib) {
  if (kib === undefined) return '?';
  return kib >= 1024 ? `${(kib / 1024).toFixed(1)} MiB` : `${kib.toFixed(1)} KiB`;
}

// ---- the same transfers from Chromium: raw relays through the page's WebSocket, mux through the SDK bundle ----------

async function browserSection() {
  const { openBrowserBench } = await import('./browser.mjs');
  const wanted = active.filter((r) => r.ws);
  let bench;
  try {
    bench = await openBrowserBench(PAGE_PORT);
  } catch (err) {
    for (const relay of wanted) for (const m of ['bup', 'bdown']) note(relay.key, m, errText(err));
    log(`browser section skipped: ${errText(err)}`);
    return;
  }
  try {
    for (const relay of wanted) {
      await fresh(relay, async (inst) => {
        // One unmeasured transfer each way first, as for the Node client.
        for (const phase of ['down', 'up']) await bench.transfer(inst.target, phase, Math.min(BROWSER_BYTES, 32 * 1024 * 1024), STEP_TIMEOUT_MS).catch(() => {});
        for (let rep = 0; rep < SLOW_REPEATS; rep++) {
          for (const phase of ['up', 'down']) {
            const metric = phase === 'up' ? 'bup' : 'bdown';
            try {
              sample(relay.key, metric, await bench.transfer(inst.target, phase, BROWSER_BYTES, STEP_TIMEOUT_MS));
            } catch (err) {
              note(relay.key, metric, `failed: ${errText(err)}`);
              log(`${relay.key} browser ${phase} failed: ${errText(err)}`);
            }
          }
          const v = (m) => results[relay.key][m]?.at?.(-1)?.toFixed(0) ?? '-';
          log(`${relay.key}: in Chromium up ${v('bup')} down ${v('bdown')} MB/s`);
        }
      });
    }
  } finally {
    await bench.close();
  }
}

// ---- run --------------------------------------------------------------------------------------------------------------

log(`relays: ${relays.map((r) => r.key + (r.missing ? ' (missing)' : '')).join(', ')}; sections: ${SECTIONS.join(', ')}`);
await steadySections();
if (SECTIONS.includes('backpressure')) await backpressureSection();
if (SECTIONS.includes('memory')) await memorySection();
if (SECTIONS.includes('browser')) await browserSection();
for (const relay of relays.filter((r) => r.missing)) results[relay.key].missing = relay.missing;

// ---- report ---------------------------------------------------------------------------------------------------------

const value = (key, metric) => {
  const cell = results[key]?.[metric];
  return Array.isArray(cell) ? median(cell) : undefined;
};
const ROWS = [
  ['up', 'client -> backend, MB/s', 0, 'throughput'],
  ['down', 'backend -> client, MB/s', 0, 'throughput'],
  ['downLean', 'backend -> client, lean client, MB/s', 0, 'throughput', (r) => !r.mux],
  ['echo', 'echo, MB/s', 0, 'throughput'],
  ['p50', 'round trip p50, us', 0, 'throughput'],
  ['p99', 'round trip p99, us', 0, 'throughput'],
  ['p50Pinned', 'round trip p50, every process on one CPU, us', 0, 'throughput'],
  ['p99Pinned', 'round trip p99, every process on one CPU, us', 0, 'throughput'],
  ['cpu-up', 'relay CPU per GB, client -> backend, ms', 0, 'throughput', (r) => r.key !== 'direct'],
  ['cpu-down', 'relay CPU per GB, backend -> client, ms', 0, 'throughput', (r) => r.key !== 'direct'],
  ['cpu-downLean', 'relay CPU per GB, backend -> client, lean client, ms', 0, 'throughput', (r) => r.key !== 'direct' && !r.mux],
  ['cpu-echo', 'relay CPU per GB, echo (both ways), ms', 0, 'throughput', (r) => r.key !== 'direct'],
  ['setup', 'set-up rate, conn/s', 0, 'setup'],
  ...CONN_LEVELS.map((n) => [`mem${n}`, `memory per idle connection at ${n}, KiB`, 1, 'memory', (r) => r.ws]),
  ['bpBackendHeld', 'backend stops reading: held, MiB', 1, 'backpressure'],
  ['bpBackendGrowth', 'backend stops reading: relay memory growth, MiB', 1, 'backpressure'],
  ['bpClientHeld', 'client stops reading: held, MiB', 1, 'backpressure'],
  ['bpClientGrowth', 'client stops reading: relay memory growth, MiB', 1, 'backpressure'],
  ...MUX_STREAMS.map((n) => [`mux${n}`, `${n} download${n > 1 ? 's' : ''} at once (mux: streams of one session), aggregate MB/s`, 0, 'mux', (r) => r.mux || r.parallel]),
  ...MUX_STREAMS.filter((n) => n > 1).map((n) => [`steady${n}`, `${n} downloads at once: steady state (1 s, all running), aggregate MB/s`, 0, 'mux', (r) => r.mux || r.parallel]),
  ...MUX_STREAMS.filter((n) => n > 1).map((n) => [`fair${n}`, `${n} downloads at once: fairness (slowest / fastest)`, 2, 'mux', (r) => r.mux || r.parallel]),
  ['bup', 'in Chromium: page -> backend, MB/s (mux: the SDK)', 0, 'browser', (r) => r.ws],
  ['bdown', 'in Chromium: backend -> page, MB/s (mux: the SDK)', 0, 'browser', (r) => r.ws],
];
const cellText = (relay, [metric, , digits, section, applies]) => {
  if (!SECTIONS.includes(section)) return '';
  if (applies && !applies(relay)) return '-';
  if (results[relay.key].missing) return results[relay.key].missing;
  const cell = results[relay.key][metric];
  if (cell && !Array.isArray(cell)) return cell.note;
  const v = value(relay.key, metric);
  return v === undefined ? '-' : v.toFixed(digits);
};
const rows = ROWS.filter(([, , , section]) => SECTIONS.includes(section));
const table = [
  `| | ${relays.map((r) => r.name).join(' | ')} |`,
  `| --- |${relays.map(() => ' ---: |').join('')}`,
  ...rows.map((row) => `| ${row[1]} | ${relays.map((r) => cellText(r, row)).join(' | ')} |`),
];

// Targets (the issue): same run, medians. `how far` is the measured ratio over the target ratio. A ratio's line
// also gives it round by round (bench/rounds.mjs), so that a verdict near its line reads as one.
const targets = [];
/** Each round's ratio of two cells (relay key and metric each), for the target lines. */
const byRound = (a, metricA, b, metricB) => roundRatios(results[a]?.[metricA], results[b]?.[metricB], REPEATS);
const absTarget = (label, v, want, unit, dir = '<=', digits = 1, rounds = '') => {
  if (v === undefined) return targets.push(`- [n/a] ${label}: not measured`);
  const met = dir === '<=' ? v <= want : v >= want;
  const far = dir === '<=' ? `${((v / want - 1) * 100).toFixed(0)}% over` : `${((1 - v / want) * 100).toFixed(0)}% short`;
  targets.push(`- [${met ? 'met' : 'MISSED'}] ${label}: ${v.toFixed(digits)}${unit} (target ${dir} ${want}${unit}${met ? '' : `; ${far}`}${rounds})`);
};
/** Cell a over cell b (relay key and metric each); undefined unless both were measured (and b is not 0). */
const ratio = ([a, metricA], [b, metricB]) => {
  const va = value(a, metricA);
  const vb = value(b, metricB);
  return va === undefined || !vb ? undefined : va / vb;
};
/** A target on the ratio of cell a over cell b, judged as absTarget judges a value, with its rounds. */
const ratioTarget = (label, [a, metricA], [b, metricB], want, dir = '>=') =>
  absTarget(label, ratio([a, metricA], [b, metricB]), want, 'x', dir, 2, roundsText(byRound(a, metricA, b, metricB)));
/**
 * A ratio with no target of its own, printed beside one ([info]), with its rounds unless `withRounds` is false.
 * Nothing when either cell was not measured.
 */
const infoRatio = (label, [a, metricA], [b, metricB], withRounds = true) => {
  const r = ratio([a, metricA], [b, metricB]);
  if (r === undefined) return;
  const rounds = withRounds ? roundsText(byRound(a, metricA, b, metricB)) : '';
  targets.push(`- [info] ${label}: ${r.toFixed(2)}x${rounds}`);
};
for (const suffix of ['', ...VARIANTS.map((v) => `@${v.name}`)]) {
  const raw = `sockgate-raw${suffix}`;
  const mux = `sockgate-mux${suffix}`;
  if (!results[raw] && !results[mux]) continue;
  if (suffix) targets.push(`\nBuild ${suffix.slice(1)}:`);
  ratioTarget('raw upload vs websockify', [raw, 'up'], ['websockify', 'up'], 1.5);
  // Judged with the lean client: through ws, the client process is the ceiling for both (docs/BENCHMARKS.md).
  ratioTarget('raw download vs websockify (lean client)', [raw, 'downLean'], ['websockify', 'downLean'], 1.2);
  infoRatio('raw download vs websockify through the ws client', [raw, 'down'], ['websockify', 'down'], false);
  ratioTarget('raw echo vs websockify', [raw, 'echo'], ['websockify', 'echo'], 1.5);
  ratioTarget('raw round trip p50 vs websockify', [raw, 'p50'], ['websockify', 'p50'], 1.0, '<=');
  // Without the scheduler's placement of the three processes, which moves the p50 above by half (docs/BENCHMARKS.md).
  infoRatio('raw round trip p50 vs websockify, every process on one CPU', [raw, 'p50Pinned'], ['websockify', 'p50Pinned']);
  for (const key of [raw, mux]) {
    // "A few MiB" held: read as at most 8 MiB more in flight than direct TCP's kernel buffers hold. The relay's
    // memory growth is reported in the table, without a target (it includes garbage not yet collected).
    for (const dir of ['bpBackend', 'bpClient']) {
      const held = value(key, `${dir}Held`);
      const base = value('direct', `${dir}Held`) ?? 0;
      const side = dir === 'bpBackend' ? 'backend' : 'client';
      absTarget(`${key} held when the ${side} stops reading, beyond direct TCP`, held === undefined ? undefined : held - base, 8, ' MiB');
    }
  }
  for (const m of ['up', 'down', 'echo']) ratioTarget(`mux (1 stream, SDK) ${m} vs raw`, [mux, m], [raw, m], 0.9);
  const most = MUX_STREAMS[MUX_STREAMS.length - 1];
  ratioTarget(`mux ${most} streams aggregate vs 1 stream`, [mux, `mux${most}`], [mux, 'mux1'], 0.9);
  // Beside it, no target of their own: the same ratio for raw mode's separate connections (what this machine's CPU
  // leaves any relay here), and the streams' steady state, once all are running, against the one stream
  // (docs/BENCHMARKS.md, "Where the targets stand").
  infoRatio(`raw mode, ${most} connections aggregate vs 1`, [raw, `mux${most}`], [raw, 'mux1']);
  infoRatio(`mux ${most} streams, steady state (1 s, all running) vs 1 stream aggregate`, [mux, `steady${most}`], [mux, 'mux1']);
  absTarget(`mux fairness at ${most} streams`, value(mux, `fair${most}`), 0.5, '', '>=', 2);
  const top = CONN_LEVELS[CONN_LEVELS.length - 1];
  absTarget(`memory per idle raw connection at ${top}`, value(raw, `mem${top}`), 30, ' KiB');
}

const cpus = os.cpus();
const machine = `${cpus.length} x ${cpus[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
const env = Object.entries(process.env)
  .filter(([k]) => k.startsWith('BENCH_'))
  .map(([k, v]) => `${k}=${v} `)
  .join('');
const command = `${env}node bench/run.mjs${args.length ? ' ' + args.join(' ') : ''}`;
const report = [
  `Command: \`${command}\``,
  '',
  `Machine: ${machine}`,
  '',
  `Date: ${new Date().toISOString()}; the run took ${((performance.now() - t0) / 60_000).toFixed(1)} minutes.`,
  '',
  `Medians of ${REPEATS} run(s) (backpressure and Chromium: ${SLOW_REPEATS}; memory: ${MEM_REPEATS}); ${MB} MiB per transfer in 64 KiB messages, every byte checked against the pattern, ` +
    `after ${CLIENT_WARMUP_BYTES / 2 ** 20} MiB moved the same way, unmeasured, by the same client process; ` +
    `${RTT_ROUNDS} round trips of 32 bytes after ${RTT_WARMUP} unmeasured; set-up: ${SETUP_CONNS} connections, ${SETUP_CONCURRENCY} at a time; ` +
    `backpressure: ${BP_BYTES / 2 ** 20} MiB offered; mux streams share ${MB} MiB.`,
  '',
  ...table,
  '',
  'Targets:',
  '',
  ...targets,
].join('\n');
console.log(report);
mkdirSync(RESULTS_DIR, { recursive: true });
writeFileSync(join(RESULTS_DIR, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify({ command, machine, results }, null, 1));
if (WRITE) {
  const path = join(root, 'docs/BENCHMARKS.md');
  // The marker is a line of its own; everything above it is kept.
  const marker = '\n<!-- results -->\n';
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
  const head = text.includes(marker) ? text.slice(0, text.indexOf(marker)) : '# Benchmarks\n';
  writeFileSync(path, `${head}${marker}${report}\n`);
}
process.exit(0);
