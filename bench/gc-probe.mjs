// One relay, one transfer direction, and what it cost the relay's process: CPU (user and system, from /proc),
// minor page faults, and the garbage collections V8 reported (--trace-gc). The probe that found the allocation
// churn docs/BENCHMARKS.md describes; use it to check a change to the data path side by side:
//   node bench/gc-probe.mjs raw|mux|bare up|down|echo [MiB=1024] [DIST=dist]
//   NODE_FLAGS="--min-semi-space-size=16" node bench/gc-probe.mjs raw up      (flags for the relay's node)
//   BARE=path/to/bridge.mjs node bench/gc-probe.mjs bare up                   (another bare relay script)
// Prints one line: MB/s, CPU ms per GiB (user / system), scavenges, mark-compacts, minor faults. One 128 MiB
// transfer warms the relay up first and is not counted. Run it several times: the machine is noisy.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startBackends, waitPort } from './relays.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [mode = 'raw', phase = 'down', mib = '1024', distArg] = process.argv.slice(2);
const dist = resolve(distArg ?? join(root, 'dist'));
const dir = mkdtempSync(join(os.tmpdir(), 'sockgate-gc-probe-'));
const children = [];
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const { ports } = await startBackends(root);
const port = await freePort();
const flags = ['--trace-gc', ...(process.env.NODE_FLAGS ?? '').split(' ').filter(Boolean)];
const out = join(dir, 'relay.out');
let argv;
let target;
const urls = (prefix) => Object.fromEntries(Object.keys(ports).map((r) => [r, `ws://127.0.0.1:${port}${prefix}/${r}`]));
if (mode === 'bare') {
  argv = [...flags, process.env.BARE ?? join(root, 'bench/bare-bridge.mjs'), String(port), JSON.stringify(ports)];
  target = { kind: 'ws', urls: urls('') };
} else {
  const routes = Object.fromEntries(Object.entries(ports).map(([b, p]) => [b, { target: `tcp://127.0.0.1:${p}` }]));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ listen: `127.0.0.1:${port}`, routes, allowAnonymous: true }));
  argv = [...flags, join(dist, 'server/cli.js'), 'serve', '--config', join(dir, 'config.json')];
  target = mode === 'mux' ? { kind: 'mux', url: `ws://127.0.0.1:${port}/mux`, dist } : { kind: 'ws', urls: urls('/raw'), protocols: ['binary'] };
}
// V8 prints --trace-gc with stdio buffering: to a file, complete once the relay exits.
const relay = spawn(process.execPath, argv, { stdio: ['ignore', openSync(out, 'w'), 'inherit'] });
children.push(relay);
await waitPort(port, relay);
const stat = () => {
  const f = readFileSync(`/proc/${relay.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const tick = 1000 / Number(execFileSync('getconf', ['CLK_TCK']).toString());
  return { faults: Number(f[7]), user: Number(f[11]) * tick, sys: Number(f[12]) * tick };
};
const transfer = (bytes) =>
  JSON.parse(execFileSync(process.execPath, [join(root, 'bench/client.mjs'), JSON.stringify({ task: 'throughput', target, bytes, phases: [phase] })]).toString());
transfer(128 * 1024 * 1024);
const s0 = stat();
const result = transfer(Number(mib) * 1024 * 1024);
const s1 = stat();
relay.kill('SIGTERM');
await new Promise((r) => relay.once('exit', r));
// The file has the warm-up's collections too: V8 flushes its lines in blocks, so they cannot be told apart.
const lines = readFileSync(out, 'utf8').split('\n');
const gb = Number(mib) / 1024;
const count = (what) => lines.filter((l) => l.includes(what)).length;
console.log(
  `${mode} ${phase}: ${result[phase].toFixed(0)} MB/s, CPU ${((s1.user - s0.user) / gb).toFixed(0)} user + ${((s1.sys - s0.sys) / gb).toFixed(0)} sys ms/GiB, ` +
    `${count('Scavenge')} scavenges, ${count('Mark-Compact')} mark-compacts (warm-up included), ${s1.faults - s0.faults} minor faults`,
);
process.exit(0);
