/**
 * The benchmark's round trips (bench/client.mjs, task `roundTrips`) against TCP servers on loopback: every relay
 * measured in turn, one round trip each, so that all are measured over the same stretch of time; and a relay that
 * fails (refuses the connection, stops echoing) reported as failed without holding back the others.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');
const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A TCP server on 127.0.0.1 that echoes each 32-byte message (the first `limit` only) and calls `heard` for each. */
async function echoServer(heard: () => void, limit = Infinity): Promise<number> {
  const server = net.createServer((socket) => {
    let got = 0;
    let echoed = 0;
    socket.on('data', (d: Buffer) => {
      got += d.length;
      for (; got >= 32; got -= 32) {
        heard();
        if (echoed++ < limit) socket.write(Buffer.alloc(32, 7));
      }
    });
    socket.on('error', () => {});
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

/** Run bench/client.mjs with `task`; its one JSON line. */
function runTask(task: object): Promise<Record<string, { p50?: number; p99?: number; error?: string }>> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [join(root, 'bench/client.mjs'), JSON.stringify(task)], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}: ${stderr}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop()!));
    });
  });
}

const tcp = (port: number): object => ({ kind: 'tcp', ports: { echo: port } });

describe('bench round trips', () => {
  it('measures every relay in turn, one round trip each, the first of each turn moving on', { timeout: 40_000 }, async () => {
    const order: string[] = [];
    const keys = ['a', 'b', 'c'];
    const ports = await Promise.all(keys.map((k) => echoServer(() => order.push(k))));
    const rounds = 300;
    const warmup = 40;
    const r = await runTask({ task: 'roundTrips', targets: Object.fromEntries(keys.map((k, i) => [k, tcp(ports[i]!)])), rounds, warmup });
    for (const k of keys) {
      expect(r[k]!.error).toBeUndefined();
      expect(r[k]!.p50).toBeGreaterThan(0);
      expect(r[k]!.p99).toBeGreaterThanOrEqual(r[k]!.p50!);
    }
    // `warmup` unmeasured passes first (bench/run.mjs RTT_WARMUP), then the measured ones.
    const passes = warmup + rounds;
    expect(order).toHaveLength(passes * keys.length);
    for (let i = 0; i < passes; i++) {
      const pass = order.slice(i * keys.length, (i + 1) * keys.length);
      expect(pass, `pass ${i}`).toEqual(keys.map((_, j) => keys[(i + j) % keys.length]));
    }
  });

  it('reports a relay that refuses or stops answering as failed, and still measures the others', { timeout: 40_000 }, async () => {
    let heard = 0;
    const good = await echoServer(() => heard++);
    const stops = await echoServer(() => {}, 150);
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const refused = (closed.address() as net.AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const rounds = 200;
    const r = await runTask({ task: 'roundTrips', targets: { good: tcp(good), stops: tcp(stops), refused: tcp(refused) }, rounds, warmup: 100, timeoutMs: 500 });
    expect(r.refused!.error).toMatch(/ECONNREFUSED/);
    expect(r.stops!.error).toBe('round trip timed out after 500 ms');
    expect(r.good!.p50).toBeGreaterThan(0);
    expect(heard).toBe(100 + rounds);
  });
});
