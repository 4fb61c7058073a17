// Types for bench/chromium.mjs (the benchmark is plain JavaScript; test/helpers/browser.ts imports it).
export const CHROMIUM_PATH: string;
export const CHROMIUM_ARGS: readonly string[];
