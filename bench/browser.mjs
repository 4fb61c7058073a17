// The `browser` section of the benchmark: the same transfers from inside Chromium, where sockgate's users are.
// Raw-mode relays are driven with the page's own WebSocket, sockgate mux with the SDK's browser bundle; the page
// checks every byte it receives against the pattern (bench/pattern.mjs, rebuilt in the page) in plain JS, which
// costs the same for every relay and is part of the MB/s. Chromium is Debian's /usr/bin/chromium, driven by
// playwright-core; it is never downloaded.
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { MESSAGE, PERIOD, fillPattern } from './pattern.mjs';

export const CHROMIUM_PATH = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'];

/**
 * A page server on 127.0.0.1 and a Chromium page loaded from it (a page from the network, not page.route():
 * Chromium's Local Network Access checks would block WebSockets to 127.0.0.1 from a page without an address).
 * `/sockgate.js?dist=DIR` serves DIR/browser/sockgate.js, so every build's bundle can be measured. `port`: the
 * page server's port (its origin must be one the gateways allow).
 */
export async function openBrowserBench(port = 0) {
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`Chromium missing (${CHROMIUM_PATH}; apt-get install -y chromium)`);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/sockgate.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(readFileSync(join(url.searchParams.get('dist'), 'browser/sockgate.js')));
    } else res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>sockgate bench</title>');
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ARGS });
  const page = await browser.newPage();
  const origin = `http://127.0.0.1:${server.address().port}`;
  await page.goto(`${origin}/`);
  await page.evaluate(PAGE_SETUP, { MESSAGE, PERIOD, fill: fillPattern.toString() });
  const sdks = new Set();
  return {
    /**
     * One transfer in the page: 'down' reads `bytes` pattern bytes from the source route, 'up' writes them to the
     * sink route (which checks them). target: { kind: 'ws', urls, protocols } or { kind: 'mux', url, dist }.
     * Resolves to MB/s; rejects with what went wrong.
     */
    async transfer(target, phase, bytes, timeoutMs) {
      if (target.kind === 'mux' && !sdks.has(target.dist)) {
        await page.evaluate(async (src) => (globalThis.sdk = await import(src)), `${origin}/sockgate.js?dist=${encodeURIComponent(target.dist)}`);
        sdks.add(target.dist);
      }
      const route = phase === 'down' ? 'source' : 'sink';
      const args = { phase, bytes, timeoutMs, mux: target.kind === 'mux', url: target.kind === 'mux' ? target.url : target.urls[route], protocols: target.protocols ?? [], route };
      const r = await page.evaluate(PAGE_TRANSFER, args);
      if (r.error) throw new Error(r.error);
      return r.mbs;
    },
    async close() {
      await browser.close();
      await new Promise((r) => server.close(r));
    },
  };
}

/** In the page: the pattern and its checker, as bench/pattern.mjs makes them. */
const PAGE_SETUP = ({ MESSAGE, PERIOD, fill }) => {
  // bench/pattern.mjs's fillPattern, from its source: the same bytes as the backends send.
  const pattern = new Function(`return (${fill})`)()(new Uint8Array(PERIOD + MESSAGE), PERIOD, MESSAGE);
  globalThis.bench = {
    MESSAGE,
    patternAt: (offset, len) => pattern.subarray(offset % PERIOD, (offset % PERIOD) + len),
    checker() {
      const c = {
        received: 0,
        error: undefined,
        update(chunk) {
          if (c.error) return;
          let o = c.received % PERIOD;
          for (let i = 0; i < chunk.length; i++) {
            if (chunk[i] !== pattern[o]) {
              c.error = `byte ${c.received + i} differs from the pattern`;
              return;
            }
            if (++o === PERIOD) o = 0;
          }
          c.received += chunk.length;
        },
      };
      return c;
    },
  };
};

/** In the page: one transfer (see transfer()). Returns { mbs } or { error }. */
const PAGE_TRANSFER = async ({ phase, bytes, timeoutMs, mux, url, protocols, route }) => {
  const { MESSAGE, patternAt, checker } = globalThis.bench;
  const header = new Uint8Array(8);
  new DataView(header.buffer).setBigUint64(0, BigInt(bytes));
  let timer;
  const deadline = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${phase} timed out after ${timeoutMs} ms`)), timeoutMs)));
  try {
    if (mux) {
      const session = await globalThis.sdk.openSession(url);
      try {
        const socket = session.connect(route);
        const { readable, writable } = await socket.opened;
        const writer = writable.getWriter();
        const reader = readable.getReader();
        const t0 = performance.now();
        await writer.write(header);
        if (phase === 'down') {
          const check = checker();
          const reading = (async () => {
            while (check.received < bytes && !check.error) {
              const { value, done } = await reader.read();
              if (done) break;
              check.update(value);
            }
          })();
          reading.catch(() => {}); // after a timeout the session closes under it
          await Promise.race([reading, deadline]);
          if (check.error || check.received < bytes) return { error: check.error ?? `only ${check.received} bytes arrived` };
        } else {
          const sending = (async () => {
            for (let sent = 0; sent < bytes; sent += MESSAGE) {
              await writer.ready;
              // The pattern is never written to, so a view of it is safe to hand over.
              writer.write(patternAt(sent, Math.min(MESSAGE, bytes - sent))).catch(() => {});
            }
            let reply = '';
            const decoder = new TextDecoder();
            while (reply.length < 64) {
              const { value, done } = await reader.read();
              if (done) break;
              reply += decoder.decode(value);
            }
            return reply.trim();
          })();
          sending.catch(() => {}); // after a timeout the session closes under it
          const reply = await Promise.race([sending, deadline]);
          if (reply !== 'ok') return { error: `the sink says ${reply}` };
        }
        const mbs = bytes / 1e6 / ((performance.now() - t0) / 1000);
        socket.reset();
        return { mbs };
      } finally {
        await session.close().catch(() => {});
      }
    }
    const ws = new globalThis.WebSocket(url, protocols); // the page's (this function runs in Chromium)
    ws.binaryType = 'arraybuffer';
    await Promise.race([new Promise((resolve, reject) => ((ws.onopen = resolve), (ws.onerror = () => reject(new Error('WebSocket failed'))))), deadline]);
    try {
      const t0 = performance.now();
      ws.send(header);
      if (phase === 'down') {
        const check = checker();
        const reading = new Promise((resolve) => {
          ws.onmessage = (e) => {
            check.update(new Uint8Array(e.data));
            if (check.received >= bytes || check.error) resolve();
          };
          ws.onclose = resolve;
        });
        await Promise.race([reading, deadline]);
        if (check.error || check.received < bytes) return { error: check.error ?? `only ${check.received} bytes arrived` };
      } else {
        let reply = '';
        const decoder = new TextDecoder();
        const replied = new Promise((resolve) => {
          ws.onmessage = (e) => {
            reply += decoder.decode(new Uint8Array(e.data));
            if (reply.length >= 64) resolve();
          };
          ws.onclose = resolve;
        });
        const sending = (async () => {
          for (let sent = 0; sent < bytes && ws.readyState === ws.OPEN; sent += MESSAGE) {
            // A browser WebSocket has no drain event: while more than 4 MiB is queued, yield.
            while (ws.bufferedAmount > 4 * 1024 * 1024 && ws.readyState === ws.OPEN) await new Promise((r) => setTimeout(r, 0));
            ws.send(patternAt(sent, Math.min(MESSAGE, bytes - sent)));
          }
          await replied;
        })();
        await Promise.race([sending, deadline]);
        if (reply.trim() !== 'ok') return { error: `the sink says ${reply.trim()}` };
      }
      return { mbs: bytes / 1e6 / ((performance.now() - t0) / 1000) };
    } finally {
      ws.close();
    }
  } catch (err) {
    return { error: String(err?.message ?? err) };
  } finally {
    clearTimeout(timer);
  }
};
