// The PTY server of the web terminal example: one shell per connection on a Unix socket, through node-pty.
// Bytes from the client are framed (see README.md): 0 = data (u16 length + bytes), 1 = resize (u16 cols,
// u16 rows). Bytes to the client are the PTY's output, unframed.
import { Buffer } from 'node:buffer';
import { chmodSync, rmSync } from 'node:fs';
import net from 'node:net';
import pty from 'node-pty';

const TYPE_DATA = 0;
const TYPE_RESIZE = 1;
/** A resize outside this range is a bug or an attack, not a terminal. */
const MAX_DIMENSION = 1000;

/** Start the server on `socketPath`; resolves to { close() }. */
export async function startPtyServer(socketPath, { shell = process.env.SHELL || '/bin/sh' } = {}) {
  rmSync(socketPath, { force: true });
  const server = net.createServer((socket) => serve(socket, shell));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, resolve);
  });
  // Only this user may open a shell through the socket.
  chmodSync(socketPath, 0o600);
  return {
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const sockets = new Set();

function serve(socket, shell) {
  sockets.add(socket);
  const term = pty.spawn(shell, [], {
    name: 'xterm-256color',
    cols: 80,
    rows: 24,
    cwd: process.env.HOME || '/',
    env: { ...process.env, TERM: 'xterm-256color' },
  });
  // Backpressure: a slow browser pauses the shell's output instead of growing a buffer here.
  term.onData((data) => {
    if (!socket.write(data)) {
      term.pause();
      socket.once('drain', () => term.resume());
    }
  });
  term.onExit(() => socket.end());
  socket.on('close', () => {
    sockets.delete(socket);
    try {
      term.kill();
    } catch {
      // already exited
    }
  });
  socket.on('error', () => socket.destroy());

  let pending = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    for (;;) {
      if (pending.length < 1) return;
      const type = pending[0];
      if (type === TYPE_DATA) {
        if (pending.length < 3) return;
        const n = pending.readUInt16BE(1);
        if (pending.length < 3 + n) return;
        term.write(pending.subarray(3, 3 + n).toString('utf8'));
        pending = pending.subarray(3 + n);
      } else if (type === TYPE_RESIZE) {
        if (pending.length < 5) return;
        const cols = pending.readUInt16BE(1);
        const rows = pending.readUInt16BE(3);
        if (cols >= 1 && rows >= 1 && cols <= MAX_DIMENSION && rows <= MAX_DIMENSION) term.resize(cols, rows);
        pending = pending.subarray(5);
      } else {
        socket.destroy(); // not our format
        return;
      }
    }
  });
}
