/**
 * examples/web-terminal in real Chromium: `npm run example:terminal`'s script (PORT=0) starts the PTY server and
 * the gateway; the page types a command into xterm.js and the shell's answer shows in the terminal's buffer.
 * Run `npm run build` first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, requireBuilt, type BrowserSession } from '../helpers/browser.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
type PageGlobals = typeof globalThis & {
  term?: {
    buffer: { active: { length: number; getLine(i: number): { translateToString(trim?: boolean): string } | undefined } };
    resize(cols: number, rows: number): void;
  };
};

let browser: BrowserSession;
let child: ChildProcess | undefined;
let url: string;

/** Start the example and wait (bounded) for the line that names its URL. */
async function startExample(): Promise<string> {
  const proc = spawn(process.execPath, [join(root, 'examples/web-terminal/start.mjs')], {
    cwd: root,
    env: { ...process.env, PORT: '0', SHELL: '/bin/sh' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child = proc;
  let out = '';
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the example did not start within 15 s: ${out}`)), 15_000);
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      const m = /web terminal: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the example exited with ${code}: ${out}`));
    });
  });
}

beforeAll(async () => {
  requireBuilt();
  url = await startExample();
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child!.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

/** Wait (bounded) until a line of the terminal's buffer reads exactly `text`. */
async function waitForLine(text: string): Promise<void> {
  await browser.page.waitForFunction(
    (want) => {
      const buf = (globalThis as PageGlobals).term?.buffer.active;
      if (!buf) return false;
      for (let i = 0; i < buf.length; i++) {
        if (buf.getLine(i)?.translateToString(true).trim() === want) return true;
      }
      return false;
    },
    text,
    { timeout: 10_000 },
  );
}

describe('web terminal example', () => {
  it('runs a command in the shell, shows its output in xterm.js, and resizes the PTY', async () => {
    const { page } = browser;
    const res = await page.goto(url);
    expect(res?.status()).toBe(200);
    await page.waitForSelector('#status[data-state="open"]', { timeout: 10_000 });
    await page.click('#terminal');
    await page.keyboard.type('echo hello-$((1+1))-sockgate');
    await page.keyboard.press('Enter');
    // The typed line echoes `$((1+1))`; only the shell's output says `hello-2-sockgate`.
    await waitForLine('hello-2-sockgate');

    // Resize travels in-band: the PTY takes the terminal's size (100x30 on the page), then a new one.
    await page.keyboard.type('stty size');
    await page.keyboard.press('Enter');
    await waitForLine('30 100');
    await page.evaluate(() => (globalThis as PageGlobals).term!.resize(90, 20));
    await page.keyboard.type('stty size');
    await page.keyboard.press('Enter');
    await waitForLine('20 90');
    expect(browser.errors).toEqual([]);
  });
});
