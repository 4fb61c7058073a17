// A scratch copy of the current build, to measure a change side by side without touching the sources:
//   node bench/make-variant.mjs DIR [--module PATH]...
// copies dist/ and package.json into DIR and links every package of node_modules/ into DIR/node_modules, except
// `ws` and `@fastify` (whose websocket plugin creates the gateway's ws server), which are copied: Node resolves
// a linked package from its real path, and modules given with --module (e.g. a bufferutil unpacked somewhere)
// must be found from ws's own directory.
// Then edit DIR/dist/... as you like and run: BENCH_VARIANTS=name=DIR/dist npm run bench
import { cpSync, mkdirSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const dir = args[0] && resolve(args[0]);
if (!dir) {
  console.error('usage: node bench/make-variant.mjs DIR [--module PATH]...');
  process.exit(2);
}
const modules = args.flatMap((a, i) => (args[i - 1] === '--module' ? [resolve(a)] : []));

rmSync(dir, { recursive: true, force: true });
mkdirSync(join(dir, 'node_modules'), { recursive: true });
cpSync(join(root, 'dist'), join(dir, 'dist'), { recursive: true });
cpSync(join(root, 'package.json'), join(dir, 'package.json'));
const COPIED = ['ws', '@fastify'];
for (const name of readdirSync(join(root, 'node_modules'))) {
  if (COPIED.includes(name) || name.startsWith('.')) continue;
  symlinkSync(join(root, 'node_modules', name), join(dir, 'node_modules', name));
}
for (const name of COPIED) cpSync(join(root, 'node_modules', name), join(dir, 'node_modules', name), { recursive: true, verbatimSymlinks: true });
for (const m of modules) cpSync(m, join(dir, 'node_modules', basename(m)), { recursive: true });
console.log(`${basename(dir)}=${join(dir, 'dist')}`);
