/**
 * The demo page works: served by the gateway (`demo: true`) at `/`, it loads /sockgate.js, connects to the
 * `echo` route and echoes what the user types. Driven through its stable ids (#status, #input, #send, #output,
 * #rtt) as a user would, in real Chromium. Run `npm run build` first (the page and bundle come from dist/).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, requireBuilt, type BrowserSession } from '../helpers/browser.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

let browser: BrowserSession;
let gw: TestGateway;

beforeAll(async () => {
  requireBuilt();
  // The same routes as `npm start`'s demo config: echo is the gateway's built-in echo server.
  gw = await startGateway({ allowAnonymous: true, demo: true, routes: { echo: { target: 'builtin:echo' } } });
  browser = await launchBrowser();
});
afterAll(async () => {
  // The browser first: the gateway's close() would wait for Chromium's idle keep-alive connections.
  await browser?.close();
  await gw?.close();
});

describe('demo page', () => {
  it('connects, echoes typed text and shows the round-trip time', async () => {
    const { page } = browser;
    const res = await page.goto(`${gw.url}/`);
    expect(res?.status()).toBe(200);
    await page.waitForSelector('#status[data-state="open"]', { timeout: 10_000 });
    expect(await page.textContent('#status')).toContain('Connected');

    await page.getByLabel('Message').fill('hello sockgate');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.waitForFunction(() => document.querySelector('#output')?.textContent?.includes('hello sockgate'), undefined, { timeout: 10_000 });

    // Enter submits too, and each message gets its own line.
    await page.fill('#input', 'second line ✓');
    await page.press('#input', 'Enter');
    await page.waitForFunction(() => document.querySelector('#output')?.textContent === 'hello sockgate\nsecond line ✓\n', undefined, {
      timeout: 10_000,
    });
    expect(await page.inputValue('#input')).toBe('');

    await page.waitForFunction(() => /^\d+(\.\d)? ms$/.test(document.querySelector('#rtt')?.textContent ?? ''), undefined, { timeout: 10_000 });
    expect(browser.errors).toEqual([]);
  });

  it('is self-contained: every request stays on the gateway', async () => {
    const { page } = browser;
    const origins = new Set<string>();
    page.on('request', (req) => origins.add(new URL(req.url()).origin));
    await page.goto(`${gw.url}/`);
    await page.waitForSelector('#status[data-state="open"]', { timeout: 10_000 });
    expect([...origins]).toEqual([gw.url]);
  });
});
