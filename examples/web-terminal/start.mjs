// `npm run example:terminal`: the PTY server on a Unix socket and a gateway on 127.0.0.1 (never another
// address: whoever reaches it gets a shell) that routes `shell` to that socket and serves the page.
// PORT picks the port (default 8090; 0 for any free one). Needs `npm run build` (the gateway and SDK bundle).
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import { startPtyServer } from './pty-server.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
for (const built of ['dist/server/index.js', 'dist/browser/sockgate.js']) {
  if (!existsSync(join(root, built))) {
    console.error(`web terminal: ${built} is missing: run \`npm run build\` first`);
    process.exit(1);
  }
}
const { sockgatePlugin } = await import('../../dist/server/index.js');
const port = Number(process.env.PORT ?? 8090);

const dir = mkdtempSync(join(tmpdir(), 'sockgate-terminal-'));
const socketPath = join(dir, 'pty.sock');
const ptyServer = await startPtyServer(socketPath);

const app = Fastify({ logger: false, forceCloseConnections: true });
await app.register(sockgatePlugin, {
  config: { listen: `127.0.0.1:${port}`, allowAnonymous: true, routes: { shell: { target: `unix:${socketPath}` } } },
});

// The page and what it loads: read once, served by exact path only.
const files = {
  '/': ['index.html', join(here, 'index.html'), 'text/html; charset=utf-8'],
  '/terminal.js': ['terminal.js', join(here, 'terminal.js'), 'text/javascript; charset=utf-8'],
  '/sockgate.js': ['sockgate.js', join(root, 'dist/browser/sockgate.js'), 'text/javascript; charset=utf-8'],
  '/xterm.mjs': ['xterm.mjs', join(root, 'node_modules/@xterm/xterm/lib/xterm.mjs'), 'text/javascript; charset=utf-8'],
  '/xterm.css': ['xterm.css', join(root, 'node_modules/@xterm/xterm/css/xterm.css'), 'text/css; charset=utf-8'],
};
for (const [path, [, file, type]] of Object.entries(files)) {
  const body = readFileSync(file);
  app.get(path, (_req, reply) => reply.type(type).header('cache-control', 'no-store').send(body));
}

await app.listen({ host: '127.0.0.1', port });
const address = app.server.address();
console.log(`web terminal: http://127.0.0.1:${address.port}/`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await app.close().catch(() => {});
  await ptyServer.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
