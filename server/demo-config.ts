/**
 * The configuration `sockgate serve` uses without `--config` (the demo on loopback), and where the built demo
 * assets and package.json are found from the running file, which is `server/*.ts` under vitest and
 * `dist/server/*.js` once built.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ConfigInput } from './config.js';

/**
 * `npm start`: the demo page and SDK bundle at http://127.0.0.1:8080/, one route to the built-in echo server.
 * No credentials and no allowAnonymous: it runs under the loopback rule (server/config.ts resolveConfig), so it
 * works for this machine's browser out of the box, logs a warning, and refuses `--listen` beyond loopback unless
 * `--allow-anonymous` is given too (docs/SECURITY.md section 4).
 */
export const DEMO_CONFIG = Object.freeze({
  listen: '127.0.0.1:8080',
  demo: true,
  routes: { echo: { target: 'builtin:echo' } },
}) satisfies ConfigInput;

let root: string | undefined;

/**
 * The directory holding sockgate's package.json: the nearest one above this file. Both layouts are two levels
 * deep, but walking up keeps this right if either moves.
 */
export function packageRoot(): string {
  if (root !== undefined) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'package.json'))) return (root = dir);
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new Error(`sockgate: no package.json above ${fileURLToPath(import.meta.url)}`);
}
