// Where a transfer's CPU goes: the client process, the relay and the backend, side by side for several relays
// (and builds), alternating, with the client's own CPU included (bench/run.mjs reports the relay's only). On 2
// cores the three compete, so a cheaper client or relay shows up here before it shows up in MB/s.
//   node bench/cpu-probe.mjs RELAYS PHASE [ROUNDS=3] [MiB=1024]
//   BENCH_TIMELINE_MS=50 node bench/cpu-probe.mjs sockgate-mux par100 3   (parN: also MB/s per 50 ms from the start)
//   BENCH_SCHED_MS=50 node bench/cpu-probe.mjs sockgate-mux par100 3   (parN: also, per 50 ms from the start, the
//     cores each of client, relay and backend ran on, and the cores' worth of time it waited for one: Linux only)
//   node bench/cpu-probe.mjs websockify,sockgate-raw downLean 5
//   BENCH_VARIANTS=before=/tmp/v/before/dist node bench/cpu-probe.mjs sockgate-mux@before,sockgate-mux echo 4
//   BENCH_PROFILE=/tmp/prof node bench/cpu-probe.mjs sockgate-mux par100 1   (a --cpu-prof of each client process
//     and of the gateway: bench/profile-top.mjs reads them)
//   BENCH_PIN=client:1,relay:0,backend:0 node bench/cpu-probe.mjs sockgate-raw,sockgate-mux down 5   (each process
//     on the CPUs given, with all its threads: Linux, util-linux's taskset)
// RELAYS are bench/relays.mjs keys; PHASE one of up, down, downLean, echo, or parN: N downloads at once (mux: N
// streams of one session; the others N connections; e.g. par100), their aggregate. Prints one line per transfer (MB/s;
// client user + system, relay and backend CPU in ms per GiB) and the median MB/s per relay. Each relay moves
// 128 MiB first, unmeasured, and each client process BENCH_CLIENT_WARMUP_MB (64; 0: none) the same way before the
// measured transfer; every CPU figure is read inside the client around the measured transfer only.
import { execFile, execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { allowedCpus, processTree, schedMs } from './procmem.mjs';
import { cpuProfArgs, relayDefs, startBackends, stopAll, variantsFromEnv } from './relays.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [keysArg, phase = 'down', roundsArg = '3', mibArg = '1024'] = process.argv.slice(2);
if (!keysArg) {
  console.error('usage: node bench/cpu-probe.mjs RELAYS PHASE [ROUNDS] [MiB]');
  process.exit(2);
}
const keys = keysArg.split(',');
process.on('exit', () => stopAll());
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

/**
 * BENCH_PROFILE: a directory for a `--cpu-prof` of each client process (its warm-up included) and of each sockgate
 * gateway (written when it stops, at the end), as bench/run.mjs does.
 */
const profileDir = process.env.BENCH_PROFILE;
const pin = parsePin(process.env.BENCH_PIN);
const { child: backends, ports } = await startBackends(root);
if (pin.backend) pinTo('backend', [backends.pid], pin.backend);
const defs = relayDefs({ root, variants: variantsFromEnv(), profileDir });
const relays = {};
for (const key of keys) {
  const def = defs.find((d) => d.key === key);
  if (!def) throw new Error(`unknown relay ${key} (keys: ${defs.map((d) => d.key).join(', ')})`);
  relays[key] = await def.start(ports);
  // A relay that forks per connection (socat, websockify) passes its CPUs on to the children it forks later.
  if (pin.relay) pinTo(key, processTree(relays[key].pids), pin.relay);
}

/** `parN`: N downloads at once (mux: streams of one session), as bench/run.mjs's mux section runs them. */
const parallelStreams = /^par(\d+)$/.exec(phase)?.[1];
/** parN: report each transfer's MB/s per this many ms from its start as well. */
const timelineMs = Number(process.env.BENCH_TIMELINE_MS) || undefined;
/** parN: sample the client's, the relay's and the backend's running and waiting time every this many ms. */
const schedEveryMs = Number(process.env.BENCH_SCHED_MS) || undefined;
/** Each client process moves this much unmeasured first, the same way (bench/client.mjs: warmupBytes). */
const warmupBytes = Number(process.env.BENCH_CLIENT_WARMUP_MB ?? 64) * 1024 * 1024;

/**
 * One transfer in a client process of its own; its CPU, the relay's and the backend's are read inside it, around
 * the measured transfer only. Waited for asynchronously: this process reads the relays' output meanwhile
 * (bench/relays.mjs), and a gateway whose log pipe nobody empties stops at its next line (docs/OPERATIONS.md).
 */
async function transfer(key, bytes) {
  const cpuOf = { relay: relays[key].pids, backend: [backends.pid] };
  const task = parallelStreams
    ? { task: 'parallel', target: relays[key].target, streams: Number(parallelStreams), bytes, aggregateOnly: true, reportCpu: true, timelineMs, warmupBytes, cpuOf }
    : { task: 'throughput', target: relays[key].target, bytes, phases: [phase], reportCpu: true, warmupBytes, cpuOf };
  let sampler;
  const { stdout, stderr, status } = await new Promise((resolve) => {
    const argv = [...cpuProfArgs(profileDir, `client-${key}-${phase}`), join(root, 'bench/client.mjs'), JSON.stringify(task)];
    // Pinned from its start: taskset execs node in the same process.
    const child = execFile(
      pin.client ? 'taskset' : process.execPath,
      pin.client ? ['-c', pin.client, process.execPath, ...argv] : argv,
      { env: { ...process.env, NODE_PATH: join(root, 'bench/shim') }, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => resolve({ stdout, stderr, status: err?.code ?? 0 }),
    );
    if (schedEveryMs && parallelStreams) sampler = sampleSched({ client: [child.pid], relay: relays[key].pids, backend: [backends.pid] }, schedEveryMs);
  });
  const samples = sampler?.stop();
  const line = String(stdout).trim().split('\n').pop();
  const result = line ? JSON.parse(line) : { error: String(stderr) || `exit ${status}` };
  if (result.error) throw new Error(`${key}: ${result.error}`);
  if (samples) result.sched = schedSlices(samples, result.startedAt);
  return result;
}

/**
 * BENCH_PIN: `client:CPUS,relay:CPUS,backend:CPUS` (any of the three; CPUS as taskset takes them, e.g. `0` or `0-1`,
 * with `+` for a comma: `0+2`). Pinned, the scheduler no longer moves the three processes between cores from one
 * transfer to the next; e.g. `client:1,relay:0,backend:0` leaves the client a core of its own, so that the relay's
 * CPU per byte, which it shares with the backend, sets the rate, as on a gateway whose clients are elsewhere.
 */
function parsePin(spec) {
  const pin = {};
  for (const part of (spec ?? '').split(',').filter(Boolean)) {
    const [role, cpus] = part.split(':');
    if (!['client', 'relay', 'backend'].includes(role) || !/^\d+([-+]\d+)*$/.test(cpus ?? '')) {
      throw new Error(`BENCH_PIN: "${part}" is not client|relay|backend:CPUS (e.g. client:1,relay:0,backend:0)`);
    }
    pin[role] = cpus.replaceAll('+', ',');
  }
  return pin;
}

/**
 * Every thread of each process on `cpus` (taskset -a -p); threads started later inherit it, as do forked children.
 * Prints where they may run now, as the kernel says (a client reports its own: bench/client.mjs).
 */
function pinTo(name, pids, cpus) {
  if (pids.length === 0) return; // direct TCP: no relay process
  for (const pid of pids) execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
  console.log(`pinned ${name}: CPUs ${allowedCpus(pids)}`);
}

/**
 * Every `everyMs`, each group's running and waiting time so far (procmem.mjs schedMs; a relay's process tree as it
 * is at that moment), with the time of the sample in ms since the epoch. Sampled here, in a process that is idle
 * meanwhile, so that the samples keep time even when the client is busy.
 */
function sampleSched(groups, everyMs) {
  const rows = [];
  const read = () => {
    const row = { at: performance.timeOrigin + performance.now() };
    for (const [name, pids] of Object.entries(groups)) row[name] = schedMs(name === 'relay' ? processTree(pids) : pids);
    rows.push(row);
  };
  read();
  const timer = setInterval(read, everyMs);
  return {
    stop() {
      clearInterval(timer);
      read();
      return rows;
    },
  };
}

/** Per group, from the sample before `startedAt` on: cores running and cores' worth of waiting in each interval. */
function schedSlices(rows, startedAt) {
  const first = Math.max(0, rows.findIndex((r) => r.at >= startedAt) - 1);
  const slices = {};
  for (const name of Object.keys(rows[0]).filter((k) => k !== 'at')) {
    slices[name] = [];
    for (let i = first + 1; i < rows.length; i++) {
      const ms = rows[i].at - rows[i - 1].at;
      // A thread that exited takes its time with it: never below zero.
      const per = (field) => Math.max(0, rows[i][name][field] - rows[i - 1][name][field]) / ms;
      slices[name].push(`${per('run').toFixed(2)}/${per('wait').toFixed(2)}`);
    }
  }
  return slices;
}

for (const key of keys) await transfer(key, 128 * 1024 * 1024);
const bytes = Number(mibArg) * 1024 * 1024;
const rates = Object.fromEntries(keys.map((k) => [k, []]));
for (let round = 0; round < Number(roundsArg); round++) {
  for (const key of keys) {
    const r = await transfer(key, bytes);
    // parN reports what it moved (at least 2 MiB per download, bench/client.mjs parallel()).
    const gib = (parallelStreams ? r.moved : bytes) / 2 ** 30;
    const relayMs = r.cpuMs.relay / gib;
    const backendMs = r.cpuMs.backend / gib;
    const rate = parallelStreams ? r.aggregate : r[phase];
    rates[key].push(rate);
    console.log(
      `${key} ${phase}: ${rate.toFixed(0)} MB/s; CPU ms per GiB: client ${(r.cpu.user / gib).toFixed(0)} + ${(r.cpu.system / gib).toFixed(0)}, ` +
        `relay ${relays[key].pids.length ? relayMs.toFixed(0) : '-'}, backend ${backendMs.toFixed(0)}`,
    );
    if (round === 0 && pin.client && r.cpus) console.log(`pinned ${key} ${phase} client: CPUs ${r.cpus}`);
    if (r.timeline) console.log(`${key} ${phase}: MB/s per ${timelineMs} ms: ${r.timeline.map((x) => x.toFixed(0)).join(' ')}`);
    for (const [name, slices] of Object.entries(r.sched ?? {})) {
      console.log(`${key} ${phase}: ${name}, cores running/waiting per ${schedEveryMs} ms: ${slices.join(' ')}`);
    }
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const key of keys) console.log(`median ${key} ${phase}: ${median(rates[key]).toFixed(0)} MB/s`);
for (const key of keys) await relays[key].stop();
process.exit(0);
