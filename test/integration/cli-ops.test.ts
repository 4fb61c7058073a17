/**
 * Signals to the built CLI (`node dist/server/cli.js serve`): SIGTERM drains (a transfer under way finishes
 * intact, new connections are refused, exit 0) and SIGHUP reloads the config file (a new route works, a stream
 * keeps flowing across the reload, a bad file is refused with one log line and the running config stays).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, echoHandler, patternBytes, sha256, tcpBackend, waitFor } from '../helpers/backends.js';
import { ensureBuilt, killAll, rawEcho, serve } from '../helpers/cli.js';
import { connectMux, within } from '../helpers/mux-client.js';

let dir: string;
let echo: Backend;

beforeAll(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'sockgate-cli-ops-'));
  echo = await tcpBackend(echoHandler);
}, 150_000);

afterAll(async () => {
  await echo.close();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(() => killAll());

describe('sockgate serve: signals', () => {
  it('SIGTERM: GOAWAY, a multi-MiB transfer under way finishes intact, new connections are refused, exit 0', async () => {
    const file = join(dir, 'drain.yaml');
    writeFileSync(
      file,
      [
        'listen: 127.0.0.1:0',
        'admin: { listen: 127.0.0.1:0 }',
        'routes:',
        `  echo: { target: "${echo.target}" }`,
        'limits: { drainTimeoutMs: 20000 }',
      ].join('\n'),
    );
    const gw = await serve(['--config', file]);
    expect(gw.adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const ws = gw.url.replace(/^http/, 'ws');
    const client = await connectMux(`${ws}/mux`);
    const s = client.open('echo', { keep: false });
    await s.opened;
    const data = patternBytes(4 * 1024 * 1024);
    const first = 1024 * 1024;
    await s.write(data.subarray(0, first));
    await waitFor(() => s.received >= 256 * 1024, 10_000, 'the first echoed bytes');

    gw.signal('SIGTERM');
    await waitFor(() => client.session.goingAway, 10_000, 'GOAWAY');
    const ready = await fetch(`${gw.adminUrl}/readyz`);
    expect(ready.status).toBe(503);
    // The port is closed: no new connection, WebSocket or not.
    await expect(fetch(`${gw.url}/healthz`, { signal: AbortSignal.timeout(5000) })).rejects.toThrow();
    await expect(rawEcho(`${ws}/raw/echo`, 'late')).rejects.toThrow();

    // The stream under way goes on to the end, every byte intact.
    await s.write(data.subarray(first));
    s.end();
    await within(s.ended$, 20_000, 'the echo to end');
    expect(await within(s.closed, 5000, 'the stream close')).toBeUndefined();
    expect(s.received).toBe(data.length);
    expect(s.digest()).toBe(sha256(data));
    expect((await within(client.closed, 5000, 'the session close')).code).toBe(1001);

    expect(await gw.exited()).toBe(0);
    expect(gw.logs().find((l) => l.msg === 'drained')).toMatchObject({ finished: 1, atDeadline: 0 });
  });

  it('SIGHUP: reloads the file; a new route works, an open stream keeps flowing, a bad file is refused', async () => {
    const file = join(dir, 'reload.yaml');
    const routes = (names: string[]): string => ['routes:', ...names.map((n) => `  ${n}: { target: "${echo.target}" }`)].join('\n');
    writeFileSync(file, `listen: 127.0.0.1:0\n${routes(['a'])}\n`);
    const gw = await serve(['--config', file]);
    const ws = gw.url.replace(/^http/, 'ws');
    const client = await connectMux(`${ws}/mux`);
    const kept = client.open('a', { keep: false });
    await kept.opened;
    const data = patternBytes(3 * 1024 * 1024);
    const third = data.length / 3;
    await kept.write(data.subarray(0, third));
    await expect(client.open('b').opened).rejects.toMatchObject({ code: 'SOCKGATE_ERR_ROUTE_UNKNOWN' });

    // Add route b.
    writeFileSync(file, `listen: 127.0.0.1:0\n${routes(['a', 'b'])}\n`);
    gw.signal('SIGHUP');
    expect(await gw.waitForLog((l) => l.msg === 'configuration reloaded', 'the reload line')).toMatchObject({ routes: ['a', 'b'] });
    const b = client.open('b');
    await b.opened;
    await b.write(Buffer.from('through b'));
    b.end();
    await within(b.ended$, 5000, 'the echo on b');
    expect(b.data().toString()).toBe('through b');
    expect(await rawEcho(`${ws}/raw/b`, 'raw b')).toBe('raw b');
    await kept.write(data.subarray(third, 2 * third));

    // A bad file: one error line, and the running config stays.
    writeFileSync(file, 'routes:\n  x: { target: "ftp://nope" }\n');
    gw.signal('SIGHUP');
    const failed = await gw.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('config reload failed'), 'the reload failure line');
    expect(failed.level).toBe(50);
    expect(failed.msg).toContain('routes.x.target');
    expect(failed.msg).toContain(file);
    expect(gw.logs().filter((l) => typeof l.msg === 'string' && l.msg.includes('reload'))).toHaveLength(2);
    expect(await rawEcho(`${ws}/raw/b`, 'still b')).toBe('still b');

    // A listen change is not applied: the reload says a restart is needed, the rest is swapped in.
    writeFileSync(file, `listen: 127.0.0.1:1\n${routes(['a', 'b', 'c'])}\n`);
    gw.signal('SIGHUP');
    const restart = await gw.waitForLog((l) => Array.isArray(l.restartNeeded), 'the restart-needed line');
    expect(restart).toMatchObject({ level: 40, restartNeeded: ['listen'], routes: ['a', 'b', 'c'] });
    expect(await rawEcho(`${ws}/raw/c`, 'on the same port')).toBe('on the same port');

    // The stream opened before the first reload finishes intact.
    await kept.write(data.subarray(2 * third));
    kept.end();
    await within(kept.ended$, 20_000, 'the kept stream to end');
    expect(kept.received).toBe(data.length);
    expect(kept.digest()).toBe(sha256(data));
    await client.close();

    gw.signal('SIGTERM');
    expect(await gw.exited()).toBe(0);
  });
});
