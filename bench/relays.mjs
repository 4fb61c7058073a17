// The relays compared side by side. Each `start(backendPorts)` launches fresh processes (its own process group,
// so forked children go with it) and returns { target, pids, stop() }; `target` is what conns.mjs#openConn
// takes. A relay whose binary is missing has `missing` set, and the table says so instead of failing.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';

const ROUTES = ['sink', 'source', 'echo', 'hold', 'flood'];

/** Keep the last bytes a process printed, for error messages; gateways log two lines per connection. */
const KEEP_OUTPUT = 16 * 1024;

const running = new Set();
/** Gateways' config directories, removed when their gateway exits, or by stopAll() if the harness goes first. */
const configDirs = new Set();
export function stopAll() {
  for (const child of running) killGroup(child, 'SIGKILL');
  for (const dir of configDirs) rmSync(dir, { recursive: true, force: true });
}

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    /* gone */
  }
}

/** Relays run as in production: without the clients' NODE_PATH shim (bench/shim). */
const { NODE_PATH: _clientsOnly, ...RELAY_ENV } = process.env;

function launch(cmd, argv, opts = {}) {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: RELAY_ENV, ...opts });
  running.add(child);
  let out = '';
  const keep = (c) => {
    out += c;
    if (out.length > 2 * KEEP_OUTPUT) out = out.slice(-KEEP_OUTPUT);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.output = () => out.slice(-KEEP_OUTPUT);
  child.exited = new Promise((r) => child.once('exit', r));
  child.once('exit', () => running.delete(child));
  return child;
}

/** SIGTERM to the process group, SIGKILL after graceMs. */
async function stopProcesses(children, graceMs = 6000) {
  for (const c of children) killGroup(c, 'SIGTERM');
  const all = Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : c.exited)));
  let t;
  await Promise.race([all, new Promise((r) => (t = setTimeout(r, graceMs)))]);
  clearTimeout(t);
  for (const c of children) killGroup(c, 'SIGKILL');
}

/**
 * Start bench/backends.mjs in its own process (killed when this one exits); resolves { child, ports }.
 * `floodBytes`: what the flood backend offers; `ipc`: a channel for its flood stats (bench/run.mjs).
 */
export async function startBackends(root, { floodBytes, ipc = false } = {}) {
  const argv = [join(root, 'bench/backends.mjs'), ...(floodBytes === undefined ? [] : [String(floodBytes)])];
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit', ...(ipc ? ['ipc'] : [])] });
  process.on('exit', () => child.kill('SIGKILL'));
  const ports = await new Promise((resolve, reject) => {
    child.stdout.once('data', (d) => resolve(JSON.parse(String(d).split('\n')[0])));
    child.once('exit', (code) => reject(new Error(`backends exited with ${code}`)));
  });
  return { child, ports };
}

/** The extra sockgate builds named in BENCH_VARIANTS ("name=/path/to/dist,..."), for relayDefs. */
export function variantsFromEnv() {
  return (process.env.BENCH_VARIANTS ?? '')
    .split(',')
    .filter(Boolean)
    .map((v) => ({ name: v.split('=')[0], dist: v.slice(v.indexOf('=') + 1) }));
}

export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Wait until `port` on 127.0.0.1 accepts a connection; throws with the child's output if it exits first. */
export async function waitPort(port, child, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) return;
    if (child.exitCode !== null) throw new Error(`process exited: ${child.output?.() ?? ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`port ${port} not listening: ${child.output?.() ?? ''}`);
}

/** One relay process per route (socat and websockify take one target each). */
async function perRoute(backendPorts, argvFor) {
  const children = [];
  const ports = {};
  try {
    for (const route of ROUTES) {
      ports[route] = await freePort();
      const [cmd, argv] = argvFor(ports[route], backendPorts[route]);
      const child = launch(cmd, argv);
      children.push(child);
      await waitPort(ports[route], child);
    }
  } catch (err) {
    await stopProcesses(children);
    throw err;
  }
  return { ports, children };
}

/**
 * Node's arguments for a `--cpu-prof` into `dir` named `<name>-<now>.cpuprofile` (bench/profile-top.mjs reads it);
 * none without a `dir`. For the relays here, and the clients of bench/run.mjs and bench/cpu-probe.mjs.
 */
export function cpuProfArgs(dir, name) {
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`] : [];
}

/**
 * @param root      the repository
 * @param variants  [{ name, dist }]: more sockgate builds to compare (e.g. a copy of dist/ before a change)
 * @param profileDir when set, sockgate runs with --cpu-prof into this directory
 * @param pageOrigin the browser section's page origin, which every sockgate gateway allows (`origins`)
 */
export function relayDefs({ root, variants = [], profileDir, pageOrigin }) {
  const defs = [
    {
      key: 'direct',
      name: 'direct TCP',
      ws: false,
      parallel: true,
      async start(backendPorts) {
        return { target: { kind: 'tcp', ports: backendPorts }, pids: [], stop: async () => {} };
      },
    },
    {
      key: 'socat',
      name: 'socat',
      ws: false,
      missing: existsSync('/usr/bin/socat') ? undefined : 'not installed (/usr/bin/socat)',
      async start(backendPorts) {
        const { ports, children } = await perRoute(backendPorts, (port, to) => [
          'socat',
          [`TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr,backlog=1024`, `TCP:127.0.0.1:${to}`],
        ]);
        return { target: { kind: 'tcp', ports }, pids: children.map((c) => c.pid), stop: () => stopProcesses(children) };
      },
    },
    {
      key: 'websockify',
      name: 'websockify (Python)',
      ws: true,
      missing: existsSync('/usr/bin/websockify') ? undefined : 'not installed (/usr/bin/websockify)',
      async start(backendPorts) {
        const { ports, children } = await perRoute(backendPorts, (port, to) => ['/usr/bin/websockify', [`127.0.0.1:${port}`, `127.0.0.1:${to}`]]);
        const urls = Object.fromEntries(Object.entries(ports).map(([r, p]) => [r, `ws://127.0.0.1:${p}/`]));
        return { target: { kind: 'ws', urls, protocols: ['binary'] }, pids: children.map((c) => c.pid), stop: () => stopProcesses(children) };
      },
    },
    {
      key: 'bare',
      name: 'bare ws+net bridge',
      ws: true,
      async start(backendPorts) {
        const port = await freePort();
        const prof = cpuProfArgs(profileDir, 'bare');
        const child = launch(process.execPath, [...prof, join(root, 'bench/bare-bridge.mjs'), String(port), JSON.stringify(backendPorts)]);
        await waitPort(port, child);
        const urls = Object.fromEntries(ROUTES.map((r) => [r, `ws://127.0.0.1:${port}/${r}`]));
        return { target: { kind: 'ws', urls }, pids: [child.pid], stop: () => stopProcesses([child]) };
      },
    },
  ];
  for (const { name, dist } of [{ name: '', dist: join(root, 'dist') }, ...variants]) {
    const suffix = name ? `@${name}` : '';
    const gateway = async (backendPorts, label) => {
      const port = await freePort();
      const dir = mkdtempSync(join(os.tmpdir(), 'sockgate-bench-'));
      configDirs.add(dir);
      const config = join(dir, 'config.json');
      const routes = Object.fromEntries(Object.entries(backendPorts).map(([b, p]) => [b, { target: `tcp://127.0.0.1:${p}` }]));
      // The memory probe holds up to 8,000 sessions from 127.0.0.1; the defaults allow 100 per address.
      const limits = { maxSessions: 20_000, maxSessionsPerIp: 20_000 };
      // The browser section's page (bench/browser.mjs) is served from its own loopback port: allow its origin.
      const origins = pageOrigin ? [pageOrigin] : [];
      writeFileSync(config, JSON.stringify({ listen: `127.0.0.1:${port}`, routes, allowAnonymous: true, limits, origins }));
      const prof = cpuProfArgs(profileDir, `${label}${suffix}`);
      const cli = join(dist, 'server/cli.js');
      const child = launch(process.execPath, [...prof, cli, 'serve', '--config', config]);
      child.once('exit', () => {
        rmSync(dir, { recursive: true, force: true });
        configDirs.delete(dir);
      });
      await waitPort(port, child);
      return { port, child };
    };
    defs.push(
      {
        key: `sockgate-raw${suffix}`,
        name: `sockgate raw${suffix}`,
        ws: true,
        sockgate: true,
        parallel: true,
        async start(backendPorts) {
          const { port, child } = await gateway(backendPorts, 'raw');
          const urls = Object.fromEntries(ROUTES.map((r) => [r, `ws://127.0.0.1:${port}/raw/${r}`]));
          return { target: { kind: 'ws', urls, protocols: ['binary'] }, pids: [child.pid], stop: () => stopProcesses([child]) };
        },
      },
      {
        key: `sockgate-mux${suffix}`,
        name: `sockgate mux${suffix}`,
        ws: true,
        sockgate: true,
        mux: true,
        async start(backendPorts) {
          const { port, child } = await gateway(backendPorts, 'mux');
          return { target: { kind: 'mux', url: `ws://127.0.0.1:${port}/mux`, dist }, pids: [child.pid], stop: () => stopProcesses([child]) };
        },
      },
    );
  }
  return defs;
}
