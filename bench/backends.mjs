// Benchmark backends, run as their own process so their CPU does not count against the relay or the client.
// Prints one JSON line { sink, source, echo, hold, flood } with the TCP ports, then serves until killed.
//   sink:   reads an 8-byte big-endian length, then that many bytes, checked against the pattern (pattern.mjs);
//           answers 64 characters: `ok` or where the bytes first differ, padded with spaces.
//   source: reads an 8-byte big-endian length, then writes that many pattern bytes, at most SOURCE_TURN_BYTES
//           at a time before the other connections get a turn.
//   echo:   writes back what it reads.
//   hold:   accepts and never reads (the backpressure probe "backend stops reading").
//   flood:  writes FLOOD_BYTES (argv[2], default 512 MiB) as fast as the kernel takes them, from the first moment
//           (the probe "client stops reading"). Over IPC, { flood: 'reset' } forgets the last connection and
//           { flood: 'stats' } answers { connected, accepted }: the bytes the kernel took on the latest one.
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { setImmediate } from 'node:timers';
import { FILLER, MESSAGE, PatternCheck, patternAt } from './pattern.mjs';

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
    const check = new PatternCheck();
    let got = 0;
    const take = (c) => {
      check.update(got + c.length > n ? c.subarray(0, n - got) : c);
      got += c.length;
      if (got >= n) socket.end((check.error ?? 'ok').padEnd(64).slice(0, 64));
    };
    if (rest.length) take(rest);
    if (got < n) socket.on('data', take);
  });
});

/**
 * Bytes the source writes to one connection before it lets the others have a turn. Without a limit, each
 * connection took all the kernel would buffer (several MB) before the next was served, so with 100 connections
 * asking at once the last one's first byte came 130-160 ms after the first, even over direct TCP.
 */
const SOURCE_TURN_BYTES = 256 * 1024;

const source = net.createServer((socket) => {
  socket.on('error', () => {});
  withLength(socket, (n) => {
    let sent = 0;
    const pump = () => {
      for (let turn = 0; sent < n; ) {
        if (turn >= SOURCE_TURN_BYTES) return void setImmediate(pump);
        const k = Math.min(n - sent, MESSAGE);
        const piece = patternAt(sent, k);
        sent += k;
        turn += k;
        if (!socket.write(piece)) return void socket.once('drain', pump);
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
      const k = Math.min(FLOOD_BYTES - state.handed, FILLER.length);
      state.handed += k;
      if (!socket.write(k === FILLER.length ? FILLER : FILLER.subarray(0, k))) return void socket.once('drain', pump);
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
