// The benchmark client, one child process per measurement so that its CPU is neither the orchestrator's nor
// another client's: `node bench/client.mjs '<task JSON>'`. Prints one JSON result line on stdout, except for
// the `idle` task, which talks to its parent over IPC (it holds connections until told to close them).
import { Buffer } from 'node:buffer';
import { execFileSync } from 'node:child_process';
import { lengthHeader, openConn } from './conns.mjs';
import { MESSAGE, PatternCheck, patternAt } from './pattern.mjs';
import { allowedCpus, processTree, treeCpuMs } from './procmem.mjs';

const task = JSON.parse(process.argv[2]);
const STEP_TIMEOUT_MS = task.stepTimeoutMs ?? 120_000;

function timeout(promise, what, ms = STEP_TIMEOUT_MS) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`${what} timed out after ${ms} ms`)), ms))),
  ]);
}

// ---- throughput (one connection each) and round trips (one per relay, interleaved) --------------------------

/** Writes `bytes` pattern bytes in MESSAGE-byte messages, each waiting for the connection's backpressure. */
async function sendPattern(conn, bytes) {
  for (let sent = 0; sent < bytes; sent += MESSAGE) await conn.write(patternAt(sent, Math.min(MESSAGE, bytes - sent)));
}

async function upload(target, bytes) {
  const conn = await openConn(target, 'sink');
  let reply = '';
  const done = new Promise((r) => conn.onData((d) => ((reply += Buffer.from(d).toString()), reply.length >= 64 && r())));
  const t0 = performance.now();
  await conn.write(lengthHeader(bytes));
  await sendPattern(conn, bytes);
  await timeout(done, 'upload');
  const ms = performance.now() - t0;
  conn.close();
  if (reply.slice(0, 64).trim() !== 'ok') throw new Error(`upload: the sink says ${reply.trim()}`);
  return bytes / 1e6 / (ms / 1000);
}

async function receiveAll(conn, bytes, what) {
  const check = new PatternCheck();
  const done = new Promise((resolve, reject) => {
    conn.onData((d) => {
      check.update(d);
      if (check.received >= bytes || check.error) resolve();
    });
    // The lean client says why it ended (a close frame, a bad frame), rather than leaving the transfer to time out.
    conn.onClose?.((err) => reject(new Error(`${what}: ${err.message}`)));
  });
  return async () => {
    await timeout(done, what);
    if (check.error) throw new Error(`${what}: ${check.error}`);
  };
}

async function download(target, bytes, options) {
  const conn = await openConn(target, 'source', options);
  const finish = await receiveAll(conn, bytes, 'download');
  const t0 = performance.now();
  await conn.write(lengthHeader(bytes));
  await finish();
  const ms = performance.now() - t0;
  conn.close();
  return bytes / 1e6 / (ms / 1000);
}

async function echo(target, bytes) {
  const conn = await openConn(target, 'echo');
  const finish = await receiveAll(conn, bytes, 'echo');
  const t0 = performance.now();
  await sendPattern(conn, bytes);
  await finish();
  const ms = performance.now() - t0;
  conn.close();
  return bytes / 1e6 / (ms / 1000);
}

/** Set the CPU affinity of every thread of process `pid` (taskset; Linux). */
function setAffinity(pid, cpus) {
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
}

/** The CPU list a process may run on now ("0,1", "0-3"), as taskset prints it. */
function affinityOf(pid) {
  return String(execFileSync('taskset', ['-c', '-p', String(pid)])).trim().split(': ').pop();
}

/**
 * `pinned` (pids: the relays' and the backend's process trees): this process and all of them on CPU 0 until
 * `unpin()`, which gives each the CPUs it had. Free to move, the processes land on either of this machine's 2 CPUs,
 * and a round trip costs tens of microseconds more for each hop that wakes a process on the other one; on one CPU
 * every hop is a switch on that CPU, and the round trip is what the processes themselves cost. Pinned after the
 * connections are open: websockify forks a process per connection.
 */
function pinToOneCpu(pinned) {
  /** Each pinned process and the CPUs it had, to give back. */
  const was = new Map();
  const pin = (pid) => {
    was.set(pid, affinityOf(pid));
    setAffinity(pid, '0');
  };
  return {
    pin() {
      // This process first: without taskset the phase fails here, having pinned nothing.
      pin(process.pid);
      for (const pid of processTree(pinned)) {
        try {
          pin(pid);
        } catch {
          /* exited meanwhile */
        }
      }
    },
    unpin() {
      // Processes that exited meanwhile (a fork that served a connection) are no longer there to restore.
      for (const [pid, cpus] of was) {
        try {
          setAffinity(pid, cpus);
        } catch {
          /* gone */
        }
      }
    },
  };
}

/**
 * Round trips of 32 bytes through every relay of `targets` ({ key: target }) at once, interleaved: `rounds` passes,
 * each one round trip through every relay in turn, the first of the turn moving on by one each pass. So every
 * relay is measured over the same stretch of time, in the same state of this shared machine. One relay after
 * another, 2,000 round trips each, the p50 of the same relay moved by a third from one stretch to the next, as the
 * scheduler settled the client, the relay and the backend on the 2 CPUs differently each time (docs/BENCHMARKS.md);
 * interleaved, each relay's p50 stays within a few percent from run to run. `warmup`: passes made first, not counted
 * (bench/run.mjs, RTT_WARMUP). `pinned`: see pinToOneCpu.
 * Returns { key: { p50, p99 } }, or { key: { error } } for a relay that failed: it could not connect, or a round
 * trip took longer than `timeoutMs` (the others go on).
 */
async function roundTrips({ targets, rounds, warmup, pinned, timeoutMs = 10_000 }) {
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error(`roundTrips: warmup must be a count of passes, got ${warmup}`);
  const msg = Buffer.alloc(32, 7);
  const results = {};
  let live = [];
  for (const [key, target] of Object.entries(targets)) {
    try {
      const conn = await openConn(target, 'echo');
      const relay = { key, conn, samples: [], waiting: undefined, error: undefined };
      let got = 0;
      conn.onData((d) => {
        got += d.length;
        if (got >= msg.length) {
          got -= msg.length;
          relay.waiting?.();
        }
      });
      live.push(relay);
    } catch (err) {
      results[key] = { error: String(err?.message ?? err) };
    }
  }
  const all = [...live];
  const pinning = pinned ? pinToOneCpu(pinned) : undefined;
  try {
    pinning?.pin();
    for (let i = 0; i < warmup + rounds && live.length > 0; i++) {
      for (let j = 0; j < live.length; j++) {
        const relay = live[(i + j) % live.length];
        try {
          const t0 = performance.now();
          const echoed = new Promise((r) => (relay.waiting = r));
          await relay.conn.write(msg);
          await timeout(echoed, 'round trip', timeoutMs);
          if (i >= warmup) relay.samples.push((performance.now() - t0) * 1000);
        } catch (err) {
          relay.error = String(err?.message ?? err);
        }
      }
      live = live.filter((relay) => relay.error === undefined);
    }
  } finally {
    pinning?.unpin();
  }
  for (const relay of all) {
    relay.conn.close();
    const s = relay.samples.sort((a, b) => a - b);
    results[relay.key] = relay.error !== undefined ? { error: relay.error } : { p50: s[Math.floor(s.length * 0.5)], p99: s[Math.floor(s.length * 0.99)] };
  }
  return results;
}

/**
 * CPU (ms) of other processes over the measured transfers only, read here because the warm-up transfer runs in
 * the same client process: `cpuOf` is { name: pids } (e.g. { relay: [...], backend: [pid] }); `add(run)` runs
 * `run` and adds each tree's CPU time during it to `ms`.
 */
function otherCpu(cpuOf = {}) {
  const ms = Object.fromEntries(Object.keys(cpuOf).map((name) => [name, 0]));
  const read = () => Object.fromEntries(Object.entries(cpuOf).map(([name, pids]) => [name, treeCpuMs(pids)]));
  return {
    ms,
    async add(run) {
      const before = read();
      const result = await run();
      const after = read();
      for (const name of Object.keys(ms)) ms[name] += after[name] - before[name];
      return result;
    },
  };
}

/** This process's CPU since `start` (a process.cpuUsage() reading): { user, system } in ms (bench/cpu-probe.mjs). */
function cpuSince(start) {
  const { user, system } = process.cpuUsage(start);
  return { user: user / 1000, system: system / 1000 };
}

/**
 * `phases` (for profiling one direction at a time) leaves the other results at 0. `reportCpu` adds this process's
 * CPU over the measured transfers (cpuSince); `cpuOf` other processes' CPU over them (otherCpu), as `cpuMs`.
 * `warmupBytes`: each transfer runs once unmeasured first, in this process, so that it measures the client's
 * steady state rather than V8 compiling the client's code; the relay is warmed separately (bench/run.mjs).
 */
async function throughput({ target, bytes, phases = ['up', 'down', 'downLean', 'echo'], reportCpu = false, warmupBytes = 0, cpuOf }) {
  const r = { up: 0, down: 0, downLean: 0, echo: 0 };
  const cpu = { user: 0, system: 0 };
  const others = otherCpu(cpuOf);
  const measured = (run) =>
    others.add(async () => {
      const cpu0 = process.cpuUsage();
      const result = await run();
      const { user, system } = cpuSince(cpu0);
      cpu.user += user;
      cpu.system += system;
      return result;
    });
  const twice = async (run) => {
    if (warmupBytes > 0) await run(warmupBytes);
    return measured(() => run(bytes));
  };
  if (phases.includes('up')) r.up = await twice((n) => upload(target, n));
  if (phases.includes('down')) r.down = await twice((n) => download(target, n));
  if (phases.includes('downLean') && target.kind !== 'mux') r.downLean = await twice((n) => download(target, n, { lean: true }));
  if (phases.includes('echo')) r.echo = await twice((n) => echo(target, n));
  if (reportCpu) r.cpu = cpu;
  if (cpuOf) r.cpuMs = others.ms;
  return r;
}

// ---- connection set-up rate -----------------------------------------------------------------------------------

/** Open, echo 32 bytes, close; `concurrency` at a time, until `count` are done or `maxMs` has passed. */
async function setup({ target, count, concurrency, maxMs }) {
  const msg = Buffer.alloc(32, 1);
  let started = 0;
  let done = 0;
  let failed = 0;
  let firstError;
  const t0 = performance.now();
  const one = async () => {
    const conn = await openConn(target, 'echo');
    let got = 0;
    const echoed = new Promise((r) => conn.onData((d) => (got += d.length) >= msg.length && r()));
    await conn.write(msg);
    await timeout(echoed, 'first byte', 10_000);
    conn.close();
  };
  const worker = async () => {
    while (started < count && performance.now() - t0 < maxMs) {
      started++;
      try {
        await one();
        done++;
      } catch (err) {
        failed++;
        firstError ??= String(err.message ?? err);
        if (failed > 20 && failed > done) return; // the relay is down: stop hammering it
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const ms = performance.now() - t0;
  return { rate: done / (ms / 1000), done, failed, ms, error: firstError };
}

// ---- idle connections (memory per connection) ------------------------------------------------------------------

/** Open `count` connections (each proven with one echo), report, hold them until the parent says close. */
async function idle({ target, count, concurrency }) {
  const conns = [];
  let failed = 0;
  let firstError;
  let stop = false;
  process.on('message', (m) => {
    if (m.stop) stop = true;
    if (m.close) {
      for (const c of conns) c.close();
      setTimeout(() => process.exit(0), 200);
    }
  });
  const progress = setInterval(() => process.send({ progress: conns.length, failed }), 250);
  const msg = Buffer.alloc(1, 1);
  let started = 0;
  const worker = async () => {
    while (!stop && started < count) {
      started++;
      try {
        const conn = await timeout(openConn(target, 'echo', { lite: true }), 'open', 10_000);
        const echoed = new Promise((r) => conn.onData(r));
        await conn.write(msg);
        try {
          await timeout(echoed, 'first byte', 10_000);
        } catch (err) {
          conn.close();
          throw err;
        }
        conns.push(conn);
      } catch (err) {
        failed++;
        firstError ??= String(err.message ?? err);
        if (failed > 50 && failed > conns.length / 10) stop = true;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  clearInterval(progress);
  process.send({ ready: true, opened: conns.length, failed, error: firstError });
}

// ---- many transfers at once: streams on one mux session, or separate connections for the other relays ----------

/**
 * `streams` concurrent downloads: on one SDK session for mux, else as that many separate connections (the
 * baseline: how evenly the backend and the kernel share among independent connections). Two phases:
 * - aggregate: each transfer moves bytes/streams (at least 2 MiB, so every stream outlives the initial window);
 *   all bytes over the time until the last one finished;
 * - fairness (more than one stream): every transfer asks for more than it will get; once all of them have data
 *   and `settleMs` has passed, each one's bytes over the next `fairMs` are counted: the slowest over the fastest
 *   (1 = perfectly even). A window of steady state, not "until the first one finishes", which early finishers cut
 *   to a few dozen milliseconds.
 */
async function parallel({ target, streams, bytes, fairMs = 1000, settleMs = 250, aggregateOnly = false, reportCpu = false, timelineMs, warmupBytes = 0, cpuOf }) {
  const each = Math.max(Math.floor(bytes / streams), 2 * 1024 * 1024);
  // `warmupBytes`: the same downloads once unmeasured first (their own session, for mux), as in throughput().
  if (warmupBytes > 0) await downloads(target, streams, Math.max(Math.floor(warmupBytes / streams), 64 * 1024), (all) => timeout(all.finished, 'warm-up'));
  const cpu0 = process.cpuUsage();
  // `timelineMs`: also report the aggregate transfer's MB/s in slices of this many ms from its start (how fast it
  // gets going, and how it ends).
  const timeline = timelineMs ? { ms: timelineMs, t0: undefined, bytes: [] } : undefined;
  // `startedAt`: when the measured transfer started, in ms since the epoch (bench/cpu-probe.mjs's BENCH_SCHED_MS).
  let startedAt;
  const others = otherCpu(cpuOf);
  const aggregate = await others.add(() =>
    downloads(
      target,
      streams,
      each,
      async (all) => {
        const t0 = performance.now();
        startedAt = performance.timeOrigin + t0;
        if (timeline) timeline.t0 = t0;
        await timeout(all.finished, 'parallel transfers');
        return (each * streams) / 1e6 / ((performance.now() - t0) / 1000);
      },
      timeline,
    ),
  );
  // `reportCpu`: this process's CPU over the aggregate transfer, opening the streams included (cpuSince); `cpuOf`
  // the same for other processes (otherCpu).
  const cpu = reportCpu ? cpuSince(cpu0) : undefined;
  const cpuMs = cpuOf ? others.ms : undefined;
  const rates = timeline && Array.from(timeline.bytes, (b = 0) => b / 1e6 / (timeline.ms / 1000));
  // `moved`: the bytes the aggregate transfer carried (each download moves at least 2 MiB), for CPU per byte.
  const moved = each * streams;
  if (streams === 1 || aggregateOnly) return { aggregate, moved, cpu, cpuMs, timeline: rates, startedAt };
  const steadyState = await downloads(target, streams, Number.MAX_SAFE_INTEGER, async (all) => {
    await timeout(all.started, 'parallel transfers starting');
    await new Promise((r) => setTimeout(r, settleMs));
    const before = [...all.got];
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, fairMs));
    const seconds = (performance.now() - t0) / 1000; // a busy client's timer fires late: divide by what passed
    all.check();
    const moved = all.got.map((n, i) => n - before[i]);
    if (Math.max(...moved) === 0) throw new Error(`no transfer moved a byte in ${fairMs} ms`);
    const total = moved.reduce((a, b) => a + b, 0);
    return { fairness: Math.min(...moved) / Math.max(...moved), steady: total / 1e6 / seconds };
  });
  return { aggregate, moved, cpu, cpuMs, timeline: rates, startedAt, ...steadyState };
}

/**
 * Open `streams` downloads of `each` pattern bytes, start them all, and run `measure` with
 * { got, started, finished, check() }: bytes received per transfer so far, promises for "every one has data" and
 * "every one is complete", and a throw if any byte was wrong. Closes everything afterwards. With `timeline`
 * ({ ms, t0, bytes }), bytes received are added up per `ms` slice from `t0` once `measure` sets it (earlier ones
 * count in the first).
 */
async function downloads(target, streams, each, measure, timeline) {
  const { loadSdk, muxConn } = await import('./conns.mjs');
  const session = target.kind === 'mux' ? await (await loadSdk(target.dist)).openSession(target.url) : undefined;
  const conns = await Promise.all(
    Array.from({ length: streams }, () => (session ? muxConn(target.url, 'source', { session }) : openConn(target, 'source'))),
  );
  const got = new Array(streams).fill(0);
  let error;
  let startedCount = 0;
  let markStarted;
  const started = new Promise((r) => (markStarted = r));
  const finishes = conns.map(
    (conn, i) =>
      new Promise((resolve, reject) => {
        const check = new PatternCheck();
        conn.onData((d) => {
          if (got[i] === 0 && ++startedCount === streams) markStarted();
          check.update(d);
          got[i] += d.length;
          if (timeline) {
            const slice = timeline.t0 === undefined ? 0 : Math.max(0, Math.floor((performance.now() - timeline.t0) / timeline.ms));
            timeline.bytes[slice] = (timeline.bytes[slice] ?? 0) + d.length;
          }
          if (check.error) reject((error = new Error(`transfer ${i}: ${check.error}`)));
          else if (got[i] >= each) resolve();
        });
      }),
  );
  const finished = Promise.all(finishes);
  finished.catch(() => {});
  try {
    const header = lengthHeader(each);
    for (const conn of conns) await conn.write(header);
    return await measure({
      got,
      started,
      finished,
      check() {
        if (error) throw error;
      },
    });
  } finally {
    if (session) await session.close().catch(() => {});
    else for (const conn of conns) conn.close();
  }
}

const tasks = { throughput, roundTrips, setup, idle, parallel };
try {
  const result = await tasks[task.task](task);
  // Pinned by bench/cpu-probe.mjs (BENCH_PIN): where this process's threads were allowed to run, for its report.
  if (result !== undefined && process.env.BENCH_PIN) result.cpus = allowedCpus([process.pid]);
  if (result !== undefined) process.stdout.write(JSON.stringify(result) + '\n');
  if (task.task !== 'idle') process.exit(0);
} catch (err) {
  const error = String(err?.message ?? err);
  if (process.send) process.send({ ready: true, opened: 0, failed: 1, error });
  else process.stdout.write(JSON.stringify({ error }) + '\n');
  process.exit(task.task === 'idle' ? 0 : 1);
}
