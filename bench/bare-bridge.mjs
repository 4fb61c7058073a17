// The baseline relay: a bare Node `ws` + `net` bridge with pause/resume backpressure and nothing else
// (no auth, no limits, no protocol). sockgate raw mode is measured against it.
//   node bench/bare-bridge.mjs PORT '{"echo":1234,...}'   -> ws://127.0.0.1:PORT/<name>
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2]);
const backends = JSON.parse(process.argv[3]);
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
wss.on('connection', (ws, req) => {
  const target = backends[req.url.slice(1)];
  if (!target) return ws.close(1008);
  const socket = net.connect(target, '127.0.0.1');
  socket.setNoDelay(true);
  ws.on('message', (d) => {
    if (!socket.write(d)) {
      ws.pause();
      socket.once('drain', () => ws.resume());
    }
  });
  socket.on('data', (d) => {
    ws.send(d);
    if (ws.bufferedAmount > 1024 * 1024) {
      socket.pause();
      ws.send(Buffer.alloc(0), () => socket.resume());
    }
  });
  socket.on('close', () => ws.close());
  socket.on('error', () => ws.terminate());
  ws.on('close', () => socket.destroy());
  ws.on('error', () => socket.destroy());
});
process.on('SIGTERM', () => process.exit(0));
