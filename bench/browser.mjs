// The `browser` section of the benchmark: the same transfers from inside Chromium, where sockgate's users are.
// Raw-mode relays are driven with the page's own WebSocket, sockgate mux with the SDK's browser bundle; the page
// checks every byte it receives against the pattern (bench/pattern.mjs, rebuilt in the page) in plain JS, which
// costs the same for every relay and is part of the MB/s. Chromium is Debian's /usr/bin/chromium, driven by
// playwright-core; it is never downloaded.
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from './chromium.mjs';
import { MESSAGE, PERIOD, fillPattern } from './pattern.mjs';

/** Past a transfer's own deadline (enforced in the page), how long its clean-up may take before Node gives up. */
const CLEANUP_MARGIN_MS = 10_000;

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
  // The port was chosen free minutes ago: if it is taken now, that is this section's error, not the process's.
  await new Promise((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  let browser;
  const close = async () => {
    await browser?.close();
    await new Promise((r) => server.close(r));
  };
  let page;
  try {
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: [...CHROMIUM_ARGS] });
    page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    await page.evaluate(PAGE_SETUP, { MESSAGE, PERIOD, fill: fillPattern.toString() });
  } catch (err) {
    await close().catch(() => {});
    throw err;
  }
  const origin = `http://127.0.0.1:${server.address().port}`;
  /** Builds whose SDK bundle the page has imported (into globalThis.sdks, by dist). */
  const sdks = new Set();
  return {
    /**
     * One transfer in the page: 'down' reads `bytes` pattern bytes from the source route, 'up' writes them to the
     * sink route (which checks them). target: { kind: 'ws', urls, protocols } or { kind: 'mux', url, dist }.
     * Resolves to MB/s; rejects with what went wrong.
     */
    async transfer(target, phase, bytes, timeoutMs) {
      if (target.kind === 'mux' && !sdks.has(target.dist)) {
        const src = `${origin}/sockgate.js?dist=${encodeURIComponent(target.dist)}`;
        await page.evaluate(async ({ dist, src }) => ((globalThis.sdks ??= {})[dist] = await import(src)), { dist: target.dist, src });
        sdks.add(target.dist);
      }
      const route = phase === 'down' ? 'source' : 'sink';
      const mux = target.kind === 'mux';
      const args = { phase, bytes, timeoutMs, dist: mux ? target.dist : undefined, url: mux ? target.url : target.urls[route], protocols: target.protocols ?? [], route };
      // The page enforces timeoutMs itself; this only stops a page that never answers (its clean-up hung).
      let timer;
      const stuck = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${phase}: the page did not answer`)), timeoutMs + CLEANUP_MARGIN_MS)));
      const r = await Promise.race([page.evaluate(PAGE_TRANSFER, args), stuck]).finally(() => clearTimeout(timer));
      if (r.error) throw new Error(r.error);
      return r.mbs;
    },
    close,
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

/**
 * In the page: one transfer (see transfer()). Returns { mbs } or { error }. The connection is the page's own
 * WebSocket (raw mode) or an SDK socket (mux, `dist` names the build), behind one small shape; the whole transfer,
 * opening included, races one deadline, and whatever was opened is closed however it ended.
 */
const PAGE_TRANSFER = async ({ phase, bytes, timeoutMs, dist, url, protocols, route }) => {
  const { MESSAGE, patternAt, checker } = globalThis.bench;

  /** { opened, send(chunk) (waits while the connection is backed up), receive(onChunk, onEnd), isOpen(), close() } */
  const connect = () => {
    if (dist === undefined) {
      const ws = new globalThis.WebSocket(url, protocols); // the page's (this function runs in Chromium)
      ws.binaryType = 'arraybuffer';
      return {
        opened: new Promise((resolve, reject) => ((ws.onopen = resolve), (ws.onerror = () => reject(new Error('WebSocket failed'))))),
        async send(chunk) {
          // A browser WebSocket has no drain event: while more than 4 MiB is queued, yield.
          while (ws.bufferedAmount > 4 * 1024 * 1024 && ws.readyState === ws.OPEN) await new Promise((r) => setTimeout(r, 0));
          ws.send(chunk);
        },
        receive(onChunk, onEnd) {
          ws.onmessage = (e) => onChunk(new Uint8Array(e.data));
          ws.onclose = onEnd;
        },
        isOpen: () => ws.readyState === ws.OPEN,
        close: async () => ws.close(),
      };
    }
    const session = globalThis.sdks[dist].openSession(url);
    const socket = session.then((s) => s.connect(route));
    const streams = socket.then((s) => s.opened);
    const writer = streams.then(({ writable }) => writable.getWriter());
    writer.catch(() => {}); // a failed open is run()'s to report
    let open = true;
    return {
      opened: streams,
      async send(chunk) {
        const w = await writer;
        await w.ready;
        // The pattern is never written to, so a view of it is safe to hand over.
        w.write(chunk).catch(() => {});
      },
      receive(onChunk, onEnd) {
        (async () => {
          const reader = (await streams).readable.getReader();
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            onChunk(value);
          }
        })().then(onEnd, onEnd);
      },
      isOpen: () => open,
      async close() {
        open = false;
        await socket.then((s) => s.reset()).catch(() => {});
        await session.then((s) => s.close()).catch(() => {});
      },
    };
  };

  const conn = connect();
  const run = async () => {
    await conn.opened;
    const header = new Uint8Array(8);
    new DataView(header.buffer).setBigUint64(0, BigInt(bytes));
    const t0 = performance.now();
    await conn.send(header);
    if (phase === 'down') {
      const check = checker();
      await new Promise((resolve) =>
        conn.receive((chunk) => {
          check.update(chunk);
          if (check.received >= bytes || check.error) resolve();
        }, resolve),
      );
      if (check.error || check.received < bytes) return { error: check.error ?? `only ${check.received} bytes arrived` };
    } else {
      let reply = '';
      const decoder = new TextDecoder();
      const replied = new Promise((resolve) =>
        conn.receive((chunk) => {
          reply += decoder.decode(chunk);
          if (reply.length >= 64) resolve();
        }, resolve),
      );
      for (let sent = 0; sent < bytes && conn.isOpen(); sent += MESSAGE) await conn.send(patternAt(sent, Math.min(MESSAGE, bytes - sent)));
      await replied;
      if (reply.trim() !== 'ok') return { error: `the sink says ${reply.trim()}` };
    }
    return { mbs: bytes / 1e6 / ((performance.now() - t0) / 1000) };
  };
  let timer;
  const deadline = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${phase} timed out after ${timeoutMs} ms`)), timeoutMs)));
  try {
    return await Promise.race([run(), deadline]);
  } catch (err) {
    return { error: String(err?.message ?? err) };
  } finally {
    clearTimeout(timer);
    await conn.close(); // a loop still running after a timeout stops on the closed connection
  }
};
