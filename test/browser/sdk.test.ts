/**
 * The SDK's browser bundle (dist/browser/sockgate.js) in real Chromium: through the gateway to a TCP echo
 * backend, and against the in-process mux server (test/helpers/mux-server.ts) where the server side's credit
 * can be inspected. Run `npm run build` first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INITIAL_WINDOW } from '../../shared/constants.js';
import { echoHandler, patternBytes, sha256, tcpBackend, waitFor, type Backend } from '../helpers/backends.js';
import { launchBrowser, requireBuilt, type BrowserSession } from '../helpers/browser.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startMuxServer, type MuxServer } from '../helpers/mux-server.js';

/** The module the bundle exports, as the page sees it on globalThis.sockgate. */
type Sdk = typeof import('../../client/index.js');
type PageGlobals = typeof globalThis & { sockgate: Sdk; held?: import('../../client/index.js').SockgateSocket };

const MiB = 1024 * 1024;
let browser: BrowserSession;
let echo: Backend;
let gw: TestGateway;
let server: MuxServer;

beforeAll(async () => {
  requireBuilt();
  echo = await tcpBackend(echoHandler);
  gw = await startGateway({ allowAnonymous: true, demo: true, routes: { echo: { target: echo.target } } });
  server = await startMuxServer();
  browser = await launchBrowser();
});
afterAll(async () => {
  // The browser first: the gateway's close() would wait for Chromium's idle keep-alive connections.
  await browser?.close();
  await gw?.close();
  await echo?.close();
  await server?.close();
});

/**
 * Open `pageUrl` (a page the server really serves) and load the SDK bundle from its /sockgate.js. The page must
 * come from the network, not from page.route(): Chromium gives a fulfilled response no address, treats it as
 * public, and its Local Network Access checks then block WebSockets to 127.0.0.1.
 */
async function loadSdk(pageUrl: string): Promise<void> {
  const { page } = browser;
  await page.goto(pageUrl);
  await page.addScriptTag({ type: 'module', content: "import * as sdk from '/sockgate.js'; globalThis.sockgate = sdk;" });
  await page.waitForFunction(() => 'sockgate' in globalThis, undefined, { timeout: 10_000 });
}

/**
 * In the page: send n pattern bytes (the patternBytes of test/helpers/backends.ts) through a socket to `route`
 * while reading what comes back; returns the byte count and SHA-256 of what came back.
 */
function pageEcho(args: { url: string; route: string; n: number }): Promise<{ got: number; sha256: string }> {
  return browser.page.evaluate(async ({ url, route, n }) => {
    const { openSession } = (globalThis as PageGlobals).sockgate;
    const session = await openSession(url);
    const socket = session.connect(route);
    const { readable, writable } = await socket.opened;
    const data = new Uint8Array(n);
    for (let i = 0; i < n; i++) data[i] = (i * 31 + (i >> 8)) & 0xff;
    const writer = writable.getWriter();
    const writing = (async () => {
      for (let at = 0; at < n; at += 65_536) await writer.write(data.subarray(at, at + 65_536));
      await writer.close();
    })();
    const received = new Uint8Array(n);
    let got = 0;
    const reader = readable.getReader();
    for (let i = 0; i < 1_000_000; i++) {
      const { done, value } = await reader.read();
      if (done) break;
      if (got + value.length > n) throw new Error(`more than ${n} bytes came back`);
      received.set(value, got);
      got += value.length;
    }
    await writing;
    await socket.closed;
    await session.close();
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', received.subarray(0, got)));
    return { got, sha256: [...digest].map((b) => b.toString(16).padStart(2, '0')).join('') };
  }, args);
}

describe('SDK bundle in Chromium, through the gateway', () => {
  it('round-trips 1 MiB through a stream to a TCP echo backend, intact', async () => {
    await loadSdk(`${gw.url}/healthz`);
    const n = MiB + 4321;
    const result = await pageEcho({ url: `${gw.wsUrl}/mux`, route: 'echo', n });
    expect(result).toEqual({ got: n, sha256: sha256(patternBytes(n)) });
    expect(browser.errors).toEqual([]);
  });

  it('reports registry codes and measures RTT in the page', async () => {
    await loadSdk(`${gw.url}/healthz`);
    const out = await browser.page.evaluate(async (url) => {
      const { openSession } = (globalThis as PageGlobals).sockgate;
      const session = await openSession(url);
      const unknown = await session.connect('nope').opened.then(
        () => 'opened',
        (err: { code?: string }) => err.code,
      );
      const rtt = await session.ping();
      await session.close();
      return { unknown, rtt, state: session.state };
    }, `${gw.wsUrl}/mux`);
    expect(out.unknown).toBe('SOCKGATE_ERR_ROUTE_UNKNOWN');
    expect(out.rtt).toBeGreaterThanOrEqual(0);
    expect(out.state).toBe('closed');
  });
});

describe('SDK bundle in Chromium, against the in-process mux server', () => {
  it('a page that stops reading withholds credit; reading later gets every byte', async () => {
    await loadSdk(`${server.httpUrl}/blank`);
    const total = 4 * MiB;
    const route = `source-${total}`;
    await browser.page.evaluate(
      async ({ url, route }) => {
        const g = globalThis as PageGlobals;
        const session = await g.sockgate.openSession(url);
        g.held = session.connect(route);
        await g.held.opened;
      },
      { url: server.url, route },
    );
    const stream = () => server.ctx.streams.find((s) => s.route === route)!.stream;
    await waitFor(() => stream()?.credit.sent === INITIAL_WINDOW, 10_000, 'one window sent to the page');
    // Still exactly one window after the page had every chance to read (it must not, unasked).
    await browser.page.evaluate(() => new Promise((r) => setTimeout(r, 100)));
    expect(stream().credit.sent).toBe(INITIAL_WINDOW);

    const result = await browser.page.evaluate(async () => {
      const socket = (globalThis as PageGlobals).held!;
      const chunks: Uint8Array[] = [];
      let got = 0;
      const reader = socket.readable.getReader();
      for (let i = 0; i < 1_000_000; i++) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        got += value.length;
      }
      const all = new Uint8Array(got);
      let at = 0;
      for (const c of chunks) {
        all.set(c, at);
        at += c.length;
      }
      await socket.writable.close();
      await socket.closed;
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
      return { got, sha256: [...digest].map((b) => b.toString(16).padStart(2, '0')).join('') };
    });
    expect(result).toEqual({ got: total, sha256: sha256(patternBytes(total)) });
  });

  it('uploads 8 MiB from the page without awaiting reads (transport backpressure and drain polling)', async () => {
    await loadSdk(`${server.httpUrl}/blank`);
    const n = 8 * MiB;
    const before = server.ctx.sinkResults.length;
    await browser.page.evaluate(
      async ({ url, n }) => {
        const { openSession } = (globalThis as PageGlobals).sockgate;
        const session = await openSession(url);
        const socket = session.connect('sink');
        const data = new Uint8Array(n);
        for (let i = 0; i < n; i++) data[i] = (i * 31 + (i >> 8)) & 0xff;
        const writer = socket.writable.getWriter();
        // Queue every write at once: the WritableStream holds them, the session sends as credit and transport allow.
        const writes: Promise<void>[] = [];
        for (let at = 0; at < n; at += 256 * 1024) writes.push(writer.write(data.subarray(at, at + 256 * 1024)));
        writes.push(writer.close());
        await Promise.all(writes);
        await socket.closed;
        await session.close();
      },
      { url: server.url, n },
    );
    expect(server.ctx.sinkResults.slice(before)).toEqual([{ bytes: n, sha256: sha256(patternBytes(n)) }]);
  });

  it('refuses a server that selects no subprotocol (browsers would accept it)', async () => {
    const none = await startMuxServer({ subprotocol: null });
    try {
      await loadSdk(`${none.httpUrl}/blank`);
      const code = await browser.page.evaluate(
        (url) =>
          (globalThis as PageGlobals).sockgate.openSession(url).then(
            () => 'opened',
            (err: { code?: string }) => err.code,
          ),
        none.url,
      );
      expect(code).toBe('SOCKGATE_ERR_SDK_HANDSHAKE');
    } finally {
      await none.close();
    }
  });

  it('reports a refused upgrade as SOCKGATE_ERR_SDK_HANDSHAKE', async () => {
    const refusing = await startMuxServer({ rejectStatus: 403 });
    try {
      await loadSdk(`${refusing.httpUrl}/blank`);
      const code = await browser.page.evaluate(
        (url) =>
          (globalThis as PageGlobals).sockgate.openSession(url).then(
            () => 'opened',
            (err: { code?: string }) => err.code,
          ),
        refusing.url,
      );
      expect(code).toBe('SOCKGATE_ERR_SDK_HANDSHAKE');
    } finally {
      await refusing.close();
    }
  });
});
