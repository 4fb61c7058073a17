/**
 * Real Chromium for browser tests: Debian's /usr/bin/chromium driven by playwright-core (which never downloads
 * a browser), headless, with a fresh profile per launch. A missing Chromium fails the test with a clear message:
 * browser tests are never skipped.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../../bench/chromium.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Browser tests load the built bundle and demo page from dist/: fail clearly when they are not there. */
export function requireBuilt(): void {
  for (const file of ['dist/browser/sockgate.js', 'dist/demo/index.html']) {
    if (!existsSync(join(root, file))) throw new Error(`${file} is missing: run \`npm run build\` before the browser tests`);
  }
}

export interface BrowserSession {
  context: BrowserContext;
  page: Page;
  /** Uncaught page errors and console errors seen so far (favicon 404s aside), for assertions and failure messages. */
  readonly errors: string[];
  close(): Promise<void>;
}

/**
 * Launch Chromium with a fresh temporary profile and open one page. Close it before closing a gateway it
 * visited: Chromium keeps speculative keep-alive connections open that a server's close() would wait for.
 */
export async function launchBrowser(): Promise<BrowserSession> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}: browser tests need Debian's chromium package (apt-get install -y chromium). ` +
        'They never download a browser and are never skipped.',
    );
  }
  // playwright takes the profile directory as userDataDir (it refuses --user-data-dir in args).
  const profile = mkdtempSync(join(tmpdir(), 'sockgate-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [...CHROMIUM_ARGS],
      timeout: 30_000,
    });
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw new Error(`could not launch ${CHROMIUM_PATH}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    // Chromium asks every origin for /favicon.ico; a 404 there is not the page's error.
    if (msg.type() === 'error' && !msg.location().url.endsWith('/favicon.ico')) errors.push(`console: ${msg.text()}`);
  });
  return {
    context,
    page,
    errors,
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
