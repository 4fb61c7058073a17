// Debian's Chromium as sockgate launches it, in the browser tests (test/helpers/browser.ts) and the benchmark's
// browser section (bench/browser.mjs): never downloaded, headless, nothing in the background.
export const CHROMIUM_PATH = '/usr/bin/chromium';
export const CHROMIUM_ARGS = Object.freeze([
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
]);
