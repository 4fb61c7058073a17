// The browser bundle of the SDK (dist/browser/sockgate.js) and the demo page (dist/demo/). Fails when the
// bundle would pull in a Node built-in or `ws`: the browser SDK must run on the platform's WebSocket alone.
import { build } from 'esbuild';
import { builtinModules } from 'node:module';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = join(root, 'dist/browser/sockgate.js');

const result = await build({
  entryPoints: [join(root, 'client/index.ts')],
  outfile,
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: 'linked',
  metafile: true,
  logLevel: 'warning',
  legalComments: 'none',
});

// Every input must be our own browser-safe source: no node:*, no bare built-in, nothing from ws.
const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const offenders = [];
for (const [path, input] of Object.entries(result.metafile.inputs)) {
  if (/(^|\/)node_modules\/ws\//.test(path) || path.startsWith('node:') || builtins.has(path)) offenders.push(path);
  for (const imp of input.imports) {
    if (imp.external || imp.path.startsWith('node:') || builtins.has(imp.path) || imp.path === 'ws') offenders.push(`${path} imports ${imp.path}`);
  }
  if (!path.startsWith('client/') && !path.startsWith('shared/')) offenders.push(`${path} is outside client/ and shared/`);
}
for (const output of Object.values(result.metafile.outputs)) {
  for (const imp of output.imports ?? []) offenders.push(`bundle imports ${imp.path}`);
}
if (offenders.length > 0) {
  console.error(`bundle: the browser bundle must not use Node built-ins or ws:\n  ${offenders.join('\n  ')}`);
  process.exit(1);
}

const code = readFileSync(outfile);
console.log(`bundle: dist/browser/sockgate.js ${code.length} bytes minified, ${gzipSync(code).length} bytes gzipped`);

// The demo page and its assets, served by the gateway when `demo: true`.
const demoSrc = join(root, 'server/demo');
const demoOut = join(root, 'dist/demo');
mkdirSync(demoOut, { recursive: true });
let copied = 0;
for (const name of readdirSync(demoSrc)) {
  const from = join(demoSrc, name);
  if (!statSync(from).isFile()) continue;
  copyFileSync(from, join(demoOut, name));
  copied++;
}
console.log(`bundle: copied ${copied} demo file(s) to dist/demo/`);
