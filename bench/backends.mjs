// Benchmark backends, run as their own process so their CPU does not count against the relay or the client.
// Prints one JSON line { sink, source, echo, hold, flood } with the TCP ports, then serves until killed.
//   sink:   reads an 8-byte big-endian length, then that many bytes; answers the sha256 hex of them.
//   source: reads an 8-byte big-endian length, then writes that many pattern bytes.
//   echo:   writes back what it reads.
//   hold:   accepts and never reads (the backpressure probe "backend stops reading").
//   flood:  writes FLOOD_BYTES (argv[2], default 512 MiB) as fast as the kernel takes them, from the first moment
//           (the probe "client stops reading"). Over IPC, { flood: 'reset' } forgets the last connection and
//           { flood: 'stats' } answers { connected, accepted }: the bytes the kernel took on the latest one.
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import net from 'node:net';

const CHUNK = Buffer.alloc(64 * 1024);
for (let i = 0; i < CHUNK.length; i++) CHUNK[i] = (i * 31) & 0xff;

function withLength(socket, onLength) {
  let head = Buffer.alloc(0);
  const onData = (c) => {
    head = Buffer.concat([head, c]);
    if (head.length < 8) return;
    socket.off('data', onData);
    const n = Number(head.readBigUInt64BE(0));
    onLength(n, head.subarray(8));
  };
  socket.on('data', onData);
}

const sink = net.createServer((socket) => {
  socket.on('error', () => {});
  withLength(socket, (n, rest) => {
    const hash = createHash('sha256');
    let got = 0;
    const take = (c) => {
      hash.update(c);
      got += c.length;
      if (got >= n) socket.end(hash.digest('hex'));
    };
    if (rest.length) take(rest);
    if (got < n) socket.on('data', take);
  });
});

const source = net.createServer((socket) => {
  socket.on('error', () => {});
  withLength(socket, (n) => {
    let left = n;
    const pump = () => {
      while (left > 0) {
        const k = Math.min(left, CHUNK.length);
        left -= k;
        if (!socket.write(k === CHUNK.length ? CHUNK : CHUNK.subarray(0, k))) return void socket.once('drain', pump);
      }
    };
    pump();
  });
});

const echo = net.createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => {});
  socket.pipe(socket);
});

const FLOOD_BYTES = Number(process.argv[2] ?? 512 * 1024 * 1024);

const hold = net.createServer((socket) => {
  socket.on('error', () => {});
  socket.pause();
});

let lastFlood = { handed: 0, socket: undefined };
const flood = net.createServer((socket) => {
  socket.on('error', () => {});
  const state = { handed: 0, socket };
  lastFlood = state;
  let stopped = false;
  socket.on('close', () => (stopped = true));
  const pump = () => {
    while (!stopped && state.handed < FLOOD_BYTES) {
      const k = Math.min(FLOOD_BYTES - state.handed, CHUNK.length);
      state.handed += k;
      if (!socket.write(k === CHUNK.length ? CHUNK : CHUNK.subarray(0, k))) return void socket.once('drain', pump);
    }
  };
  pump();
});
process.on('message', (m) => {
  // 'reset' before each probe, so that stats never report an earlier probe's connection.
  if (m.flood === 'reset') lastFlood = { handed: 0, socket: undefined };
  if (m.flood === 'stats') {
    process.send({ connected: lastFlood.socket !== undefined, accepted: lastFlood.handed - (lastFlood.socket?.writableLength ?? 0) });
  }
});

const listen = (s) => new Promise((r) => s.listen(0, '127.0.0.1', () => r(s.address().port)));
const ports = { sink: await listen(sink), source: await listen(source), echo: await listen(echo), hold: await listen(hold), flood: await listen(flood) };
process.stdout.write(JSON.stringify(ports) + '\n');
process.on('SIGTERM', () => process.exit(0));
