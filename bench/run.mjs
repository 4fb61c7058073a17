// sockgate benchmark: relays side by side in one run, on loopback.
//   npm run bench                    (BENCH_MB=256 BENCH_REPEATS=3 by default)
//   BENCH_MB=64 BENCH_REPEATS=1 node bench/run.mjs --only sockgate-raw,websockify
// Each relay runs in its own process, the backends in another, the clients in this one. Every transfer is
// integrity-checked (sha256). Results: a table on stdout and, with --write, docs/BENCHMARKS.md.
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const MB = Number(process.env.BENCH_MB ?? 256);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const RTT_ROUNDS = Number(process.env.BENCH_RTT_ROUNDS ?? 2000);
const BYTES = MB * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024);
for (let i = 0; i < CHUNK.length; i++) CHUNK[i] = (i * 31) & 0xff;
const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1].split(',') : undefined;
const WRITE = args.includes('--write');
/** Hard bound for any one measurement, so a broken relay cannot hang the run. */
const STEP_TIMEOUT_MS = 120_000;

function patternHash(n) {
  const h = createHash('sha256');
  for (let left = n; left > 0; left -= CHUNK.length) h.update(left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left));
  return h.digest('hex');
}
const EXPECTED = patternHash(BYTES);

const children = [];
function start(cmd, argv, opts = {}) {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.push(child);
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (out += c));
  child.output = () => out;
  return child;
}
process.on('exit', () => children.forEach((c) => c.kill('SIGTERM')));
process.on('SIGINT', () => process.exit(130));

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitPort(port, child, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) return;
    if (child.exitCode !== null) throw new Error(`process exited: ${child.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`port ${port} not listening: ${child.output()}`);
}

function timeout(promise, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`${what} timed out`)), STEP_TIMEOUT_MS))),
  ]);
}

// ---- connections: one interface over TCP, a WebSocket, and a sockgate mux stream -------------------------

function lengthHeader(n) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

async function tcpConn(port) {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise((r, j) => socket.once('connect', r).once('error', j));
  return {
    onData(fn) {
      socket.on('data', fn);
    },
    async write(buf) {
      if (!socket.write(buf)) await new Promise((r) => socket.once('drain', r));
    },
    close() {
      socket.destroy();
    },
  };
}

async function wsConn(url, protocols) {
  const ws = new WebSocket(url, protocols, { perMessageDeflate: false });
  ws.binaryType = 'nodebuffer';
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  const HIGH = 4 * 1024 * 1024;
  return {
    onData(fn) {
      ws.on('message', (d) => fn(d));
    },
    async write(buf) {
      ws.send(buf);
      // ws has no drain event: wait for a send callback once the buffer is over the mark.
      if (ws.bufferedAmount > HIGH) await new Promise((r) => ws.send(Buffer.alloc(0), r));
    },
    close() {
      ws.terminate();
    },
  };
}

async function muxConn(url, route) {
  const { openSession } = await import(join(root, 'dist/client/node.js'));
  const session = await openSession(url);
  const socket = session.connect(route);
  const { readable, writable } = await socket.opened;
  const writer = writable.getWriter();
  let onData = () => {};
  (async () => {
    try {
      for await (const chunk of readable) onData(chunk);
    } catch {
      /* closed */
    }
  })();
  return {
    onData(fn) {
      onData = fn;
    },
    async write(buf) {
      await writer.ready;
      writer.write(buf).catch(() => {});
    },
    close() {
      session.close().catch(() => {});
    },
  };
}

// ---- measurements -----------------------------------------------------------------------------------------

async function upload(open) {
  const conn = await open('sink');
  let reply = '';
  const done = new Promise((r) => conn.onData((d) => ((reply += Buffer.from(d).toString()), reply.length >= 64 && r())));
  const t0 = performance.now();
  await conn.write(lengthHeader(BYTES));
  for (let left = BYTES; left > 0; left -= CHUNK.length) await conn.write(CHUNK);
  await timeout(done, 'upload');
  const ms = performance.now() - t0;
  conn.close();
  if (reply.slice(0, 64) !== EXPECTED) throw new Error('upload: hash mismatch');
  return BYTES / 1e6 / (ms / 1000);
}

async function download(open) {
  const conn = await open('source');
  const hash = createHash('sha256');
  let got = 0;
  const done = new Promise((r) =>
    conn.onData((d) => {
      hash.update(d);
      got += d.length;
      if (got >= BYTES) r();
    }),
  );
  const t0 = performance.now();
  await conn.write(lengthHeader(BYTES));
  await timeout(done, 'download');
  const ms = performance.now() - t0;
  conn.close();
  if (hash.digest('hex') !== EXPECTED) throw new Error('download: hash mismatch');
  return BYTES / 1e6 / (ms / 1000);
}

async function echo(open) {
  const conn = await open('echo');
  const hash = createHash('sha256');
  let got = 0;
  const done = new Promise((r) =>
    conn.onData((d) => {
      hash.update(d);
      got += d.length;
      if (got >= BYTES) r();
    }),
  );
  const t0 = performance.now();
  for (let left = BYTES; left > 0; left -= CHUNK.length) await conn.write(CHUNK);
  await timeout(done, 'echo');
  const ms = performance.now() - t0;
  conn.close();
  if (hash.digest('hex') !== EXPECTED) throw new Error('echo: hash mismatch');
  return BYTES / 1e6 / (ms / 1000);
}

async function roundTrip(open) {
  const conn = await open('echo');
  const msg = Buffer.alloc(32, 7);
  let waiting;
  let got = 0;
  conn.onData((d) => {
    got += d.length;
    if (got >= msg.length) {
      got -= msg.length;
      waiting?.();
    }
  });
  const samples = [];
  for (let i = 0; i < RTT_ROUNDS + 100; i++) {
    const t0 = performance.now();
    const p = new Promise((r) => (waiting = r));
    await conn.write(msg);
    await timeout(p, 'round trip');
    if (i >= 100) samples.push((performance.now() - t0) * 1000);
  }
  conn.close();
  samples.sort((a, b) => a - b);
  return { p50: samples[Math.floor(samples.length * 0.5)], p99: samples[Math.floor(samples.length * 0.99)] };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// ---- relays -----------------------------------------------------------------------------------------------

async function relays(backendPorts) {
  const list = [];
  list.push({ name: 'direct TCP, no relay', key: 'direct', open: (b) => tcpConn(backendPorts[b]) });
  if (existsSync('/usr/bin/socat')) {
    const ports = {};
    for (const b of Object.keys(backendPorts)) {
      ports[b] = await freePort();
      const c = start('socat', [`TCP-LISTEN:${ports[b]},bind=127.0.0.1,fork,reuseaddr`, `TCP:127.0.0.1:${backendPorts[b]}`]);
      await waitPort(ports[b], c);
    }
    list.push({ name: 'socat (TCP relay, no WebSocket)', key: 'socat', open: (b) => tcpConn(ports[b]) });
  }
  if (existsSync('/usr/bin/websockify')) {
    const ports = {};
    for (const b of Object.keys(backendPorts)) {
      ports[b] = await freePort();
      const c = start('websockify', [`127.0.0.1:${ports[b]}`, `127.0.0.1:${backendPorts[b]}`]);
      await waitPort(ports[b], c);
    }
    list.push({ name: 'websockify (Python)', key: 'websockify', open: (b) => wsConn(`ws://127.0.0.1:${ports[b]}/`, ['binary']) });
  }
  {
    const port = await freePort();
    const c = start(process.execPath, [join(root, 'bench/bare-bridge.mjs'), String(port), JSON.stringify(backendPorts)]);
    await waitPort(port, c);
    list.push({ name: 'bare Node `ws` + `net` bridge', key: 'bare', open: (b) => wsConn(`ws://127.0.0.1:${port}/${b}`) });
  }
  {
    const port = await freePort();
    const dir = mkdtempSync(join(os.tmpdir(), 'sockgate-bench-'));
    const config = join(dir, 'config.json');
    const routes = Object.fromEntries(Object.entries(backendPorts).map(([b, p]) => [b, { target: `tcp://127.0.0.1:${p}` }]));
    writeFileSync(config, JSON.stringify({ listen: `127.0.0.1:${port}`, routes, allowAnonymous: true }));
    const c = start(process.execPath, [join(root, 'dist/server/cli.js'), 'serve', '--config', config], {
      env: { ...process.env, SOCKGATE_LOG_LEVEL: 'warn' },
    });
    await waitPort(port, c);
    list.push({ name: 'sockgate raw', key: 'sockgate-raw', open: (b) => wsConn(`ws://127.0.0.1:${port}/raw/${b}`, ['binary']) });
    list.push({ name: 'sockgate mux (SDK, 1 stream)', key: 'sockgate-mux', open: (b) => muxConn(`ws://127.0.0.1:${port}/mux`, b) });
  }
  return only ? list.filter((r) => only.includes(r.key)) : list;
}

// ---- main -------------------------------------------------------------------------------------------------

const backends = start(process.execPath, [join(root, 'bench/backends.mjs')]);
const backendPorts = await new Promise((resolve, reject) => {
  backends.stdout.once('data', (d) => resolve(JSON.parse(String(d).split('\n')[0])));
  backends.once('exit', () => reject(new Error(backends.output())));
});

const rows = [];
for (const relay of await relays(backendPorts)) {
  const r = { name: relay.name, up: [], down: [], echo: [], rtt: [] };
  try {
    for (let i = 0; i < REPEATS; i++) {
      r.up.push(await upload(relay.open));
      r.down.push(await download(relay.open));
      r.echo.push(await echo(relay.open));
      r.rtt.push(await roundTrip(relay.open));
    }
    rows.push({
      name: relay.name,
      key: relay.key,
      up: median(r.up),
      down: median(r.down),
      echo: median(r.echo),
      p50: median(r.rtt.map((x) => x.p50)),
      p99: median(r.rtt.map((x) => x.p99)),
    });
  } catch (err) {
    rows.push({ name: relay.name, key: relay.key, error: String(err.message ?? err) });
  }
  const last = rows[rows.length - 1];
  process.stderr.write(`${relay.name}: ${last.error ?? `${last.up.toFixed(0)} / ${last.down.toFixed(0)} / ${last.echo.toFixed(0)} MB/s, p50 ${last.p50.toFixed(0)} us`}\n`);
}

const fmt = (x) => (x === undefined ? '-' : x.toFixed(0));
const lines = [
  `| relay | client->backend MB/s | backend->client MB/s | echo MB/s | round trip p50 | round trip p99 |`,
  `| --- | ---: | ---: | ---: | ---: | ---: |`,
  ...rows.map((r) =>
    r.error
      ? `| ${r.name} | failed: ${r.error} | | | | |`
      : `| ${r.name} | ${fmt(r.up)} | ${fmt(r.down)} | ${fmt(r.echo)} | ${fmt(r.p50)} us | ${fmt(r.p99)} us |`,
  ),
];
const byKey = Object.fromEntries(rows.filter((r) => !r.error).map((r) => [r.key, r]));
const ratios = [];
const ratio = (a, b, k) => (byKey[a] && byKey[b] ? (byKey[a][k] / byKey[b][k]).toFixed(2) + 'x' : 'n/a');
if (byKey['sockgate-raw'] && byKey.websockify) {
  ratios.push(
    `raw vs websockify (Python): upload ${ratio('sockgate-raw', 'websockify', 'up')} (target >= 1.5x), ` +
      `download ${ratio('sockgate-raw', 'websockify', 'down')} (target >= 1.2x), echo ${ratio('sockgate-raw', 'websockify', 'echo')} (target >= 1.5x), ` +
      `p50 ${ratio('sockgate-raw', 'websockify', 'p50')} (target <= 1x)`,
  );
}
if (byKey['sockgate-mux'] && byKey['sockgate-raw']) {
  ratios.push(
    `mux (1 stream) vs raw: upload ${ratio('sockgate-mux', 'sockgate-raw', 'up')}, download ${ratio('sockgate-mux', 'sockgate-raw', 'down')}, ` +
      `echo ${ratio('sockgate-mux', 'sockgate-raw', 'echo')} (target >= 0.9x)`,
  );
}
const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
const command = `BENCH_MB=${MB} BENCH_REPEATS=${REPEATS} node bench/run.mjs${args.length ? ' ' + args.join(' ') : ''}`;
const report = [
  `Command: \`${command}\``,
  `Machine: ${machine}`,
  `Date: ${new Date().toISOString()}`,
  `Each cell is the median of ${REPEATS} runs; ${MB} MiB per transfer in 64 KiB messages, sha256-checked; round trips are ${RTT_ROUNDS} 32-byte messages after 100 warm-up rounds.`,
  '',
  ...lines,
  '',
  ...ratios.map((r) => `- ${r}`),
].join('\n');
console.log(report);
if (WRITE) {
  const path = join(root, 'docs/BENCHMARKS.md');
  const head = existsSync(path) ? readFileSync(path, 'utf8').split('<!-- results -->')[0] : '# Benchmarks\n\n';
  writeFileSync(path, `${head}<!-- results -->\n${report}\n`);
}
process.exit(0);
