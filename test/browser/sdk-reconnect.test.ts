/**
 * openSession(url, { reconnect }) in real Chromium across a gateway restart on the same port. The page (and
 * /sockgate.js) come from one gateway (`demo: true`); the session goes to a second one, which the test closes
 * and starts again: closing the page's own gateway would wait for Chromium's keep-alive connections.
 * Run `npm run build` first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway } from '../../server/gateway.js';
import { launchBrowser, requireBuilt, type BrowserSession } from '../helpers/browser.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

type Sdk = typeof import('../../client/index.js');
type PageGlobals = typeof globalThis & {
  sockgate: Sdk;
  rs?: import('../../client/index.js').ReconnectingSession;
  events?: string[];
  lost?: Promise<string>;
};

let browser: BrowserSession;
let page: TestGateway;
let mux: Gateway | undefined;

async function muxGateway(port: number): Promise<number> {
  mux = await createGateway(
    { listen: `127.0.0.1:${port}`, allowAnonymous: true, origins: [page.url], routes: { echo: { target: 'builtin:echo' } } },
    { logger: false },
  );
  return (await mux.listen()).port;
}

beforeAll(async () => {
  requireBuilt();
  page = await startGateway({ allowAnonymous: true, demo: true, routes: { echo: { target: 'builtin:echo' } } });
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
  await mux?.close();
  await page?.close();
});

describe('SDK reconnect in Chromium', () => {
  it('reconnects after a gateway restart; open streams end with a code; a connect() during the outage succeeds', async () => {
    const port = await muxGateway(0);
    const p = browser.page;
    await p.goto(`${page.url}/`);
    await p.addScriptTag({ type: 'module', content: "import * as sdk from '/sockgate.js'; globalThis.sockgate = sdk;" });
    await p.waitForFunction(() => 'sockgate' in globalThis, undefined, { timeout: 10_000 });

    await p.evaluate(async (url) => {
      const g = globalThis as PageGlobals;
      const rs = await g.sockgate.openSession(url, { reconnect: { initialDelayMs: 50, maxDelayMs: 200 }, openTimeoutMs: 10_000 });
      const events: string[] = [];
      rs.addEventListener('reconnecting', (e) => events.push(`reconnecting:${e.attempt}`));
      rs.addEventListener('reconnected', () => events.push('reconnected'));
      rs.addEventListener('close', () => events.push('close'));
      const socket = rs.connect('echo');
      await socket.opened;
      g.rs = rs;
      g.events = events;
      g.lost = socket.closed.then(
        () => 'resolved',
        (err: { code?: string }) => String(err.code),
      );
    }, `ws://127.0.0.1:${port}/mux`);

    await mux!.close();
    expect(await p.evaluate(() => (globalThis as PageGlobals).lost)).toMatch(/^SOCKGATE_ERR_SESSION_/);
    await p.waitForFunction(() => (globalThis as PageGlobals).rs?.state === 'reconnecting', undefined, { timeout: 5000 });

    // A connect() while the gateway is down, answered once it is back.
    const echoed = p.evaluate(async () => {
      const socket = (globalThis as PageGlobals).rs!.connect('echo');
      const { readable, writable } = await socket.opened;
      const writer = writable.getWriter();
      await writer.write(new TextEncoder().encode('back again'));
      const reader = readable.getReader();
      let text = '';
      for (let i = 0; i < 100 && text.length < 10; i++) {
        const { done, value } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      await writer.close();
      return text;
    });
    await p.waitForFunction(() => ((globalThis as PageGlobals).events ?? []).length >= 2, undefined, { timeout: 5000 });
    await muxGateway(port);
    expect(await echoed).toBe('back again');

    const events = await p.evaluate(() => (globalThis as PageGlobals).events!);
    expect(events[0]).toBe('reconnecting:1');
    expect(events.at(-1)).toBe('reconnected');
    expect(events.slice(0, -1).every((e) => e.startsWith('reconnecting:'))).toBe(true);
    expect(await p.evaluate(() => (globalThis as PageGlobals).rs!.state)).toBe('open');
    await p.evaluate(() => (globalThis as PageGlobals).rs!.close());
    expect(await p.evaluate(() => (globalThis as PageGlobals).events!.at(-1))).toBe('close');
    expect(browser.errors.filter((e) => !/WebSocket connection to .* failed/.test(e))).toEqual([]);
  });
});
