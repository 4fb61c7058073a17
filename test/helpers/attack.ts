/**
 * Tools for the security tests: upgrade attempts that report the HTTP refusal (status, headers, body) instead of
 * failing, and "is a good client still served?" round trips in raw and mux mode. Everything is on 127.0.0.1 and
 * every wait is bounded.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { expect } from 'vitest';
import { WebSocket } from 'ws';
import { type MuxClient, connectMux, type ConnectMuxOptions, within } from './mux-client.js';

export interface UpgradeOptions {
  /** Offered subprotocols. */
  protocols?: string[];
  /** Request headers (`authorization`, `host`, ...). */
  headers?: Record<string, string>;
  /** The `Origin` header. */
  origin?: string;
  /** ws's maxPayload for the client (0: no limit). */
  maxPayload?: number;
}

export interface UpgradeResult {
  /** The open WebSocket when the upgrade succeeded. */
  ws?: WebSocket;
  /** The HTTP answer when it was refused. */
  status?: number;
  headers?: IncomingHttpHeaders;
  body?: string;
  /** `body` parsed, when JSON. */
  json?: { code?: string; message?: string };
}

/** Try a WebSocket upgrade; resolves with the open socket, or with the HTTP status, headers and body of a refusal. */
export function tryUpgrade(url: string, opts: UpgradeOptions = {}): Promise<UpgradeResult> {
  return within(
    new Promise<UpgradeResult>((resolve, reject) => {
      const ws = new WebSocket(url, opts.protocols ?? [], {
        perMessageDeflate: false,
        ...(opts.headers && { headers: opts.headers }),
        ...(opts.origin !== undefined && { origin: opts.origin }),
        ...(opts.maxPayload !== undefined && { maxPayload: opts.maxPayload }),
      });
      ws.once('open', () => resolve({ ws }));
      ws.once('unexpected-response', (_req, res: IncomingMessage) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => {
          let json: UpgradeResult['json'];
          try {
            json = JSON.parse(body) as UpgradeResult['json'];
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode, headers: res.headers, body, json });
        });
        res.on('error', reject);
      });
      ws.once('error', reject);
    }),
    5000,
    `upgrade to ${url}`,
  );
}

/** Expect the upgrade to be refused with this status and code; returns the result for further checks. */
export async function expectRefused(url: string, status: number, code: string, opts: UpgradeOptions = {}): Promise<UpgradeResult> {
  const r = await tryUpgrade(url, opts);
  if (r.ws) {
    r.ws.terminate();
    throw new Error(`expected ${status} ${code} from ${url}, but the upgrade succeeded`);
  }
  expect(r.status, `${url}: ${r.body}`).toBe(status);
  expect(r.json?.code, r.body).toBe(code);
  expect(r.headers?.['content-type']).toMatch(/^application\/json/);
  return r;
}

/** Close a WebSocket and wait for it (bounded), terminating it if the close handshake stalls. */
export async function closeSocket(ws: WebSocket, code = 1000): Promise<{ code: number; reason: string }> {
  if (ws.readyState === WebSocket.CLOSED) return { code: 1006, reason: '' };
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once('close', (c: number, r: Buffer) => resolve({ code: c, reason: r.toString() })),
  );
  if (ws.readyState === WebSocket.OPEN) ws.close(code);
  try {
    return await within(closed, 5000, 'WebSocket close');
  } catch (err) {
    ws.terminate();
    throw err;
  }
}

/** Wait for a WebSocket's close event (bounded) and return its code and reason. */
export function closeOf(ws: WebSocket, timeoutMs = 5000): Promise<{ code: number; reason: string }> {
  return within(
    new Promise((resolve) => {
      if (ws.readyState === WebSocket.CLOSED) resolve({ code: -1, reason: 'already closed' });
      ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }));
    }),
    timeoutMs,
    'the WebSocket to close',
  );
}

/** One raw-mode echo round trip on `ws://.../raw/ROUTE`: the good client every attack test ends with. */
export async function expectRawEcho(url: string, opts: UpgradeOptions = {}): Promise<void> {
  const r = await tryUpgrade(url, opts);
  expect(r.ws, `raw upgrade refused: ${r.status} ${r.body}`).toBeDefined();
  const ws = r.ws!;
  const text = `hello ${Math.random()}`;
  const got = new Promise<string>((resolve) => {
    let acc = '';
    ws.on('message', (d: Buffer) => {
      acc += d.toString();
      if (acc.length >= text.length) resolve(acc);
    });
  });
  ws.send(Buffer.from(text));
  expect(await within(got, 5000, 'the raw echo')).toBe(text);
  await closeSocket(ws);
}

/** Open a mux session, round-trip bytes through `route` on one stream, and close it: a good mux client. */
export async function expectMuxEcho(url: string, route = 'echo', opts: ConnectMuxOptions = {}): Promise<void> {
  const c = await connectMux(url, opts);
  try {
    await muxEcho(c, route);
  } finally {
    await c.close().catch(() => c.ws.terminate());
  }
}

/** Round-trip a few bytes on a new stream of an open session. */
export async function muxEcho(c: MuxClient, route = 'echo'): Promise<void> {
  const s = c.open(route);
  const payload = Buffer.from(`mux ${Math.random()}`);
  await s.write(payload);
  s.end();
  expect(await within(s.closed, 5000, `the ${route} echo`)).toBeUndefined();
  expect(s.data().toString()).toBe(payload.toString());
}
