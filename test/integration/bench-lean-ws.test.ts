/**
 * bench/lean-ws.mjs against a real `ws` server on loopback: the handshake, messages of every length encoding, a
 * fragmented message, ping and pong, a write, a close, and the handshakes it must refuse. The frame reader's
 * own cases: test/unit/bench-lean-ws.test.ts.
 */
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { leanWsConn } from '../../bench/lean-ws.mjs';

const servers: { close(): void }[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A ws server on 127.0.0.1 that runs `onConnection`; `protocol` is the subprotocol it selects (false: none). */
async function wsServer(onConnection: (ws: WebSocket) => void, protocol: string | false = 'binary'): Promise<string> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => protocol, verifyClient: ({ req }: { req: { url?: string } }) => req.url !== '/refuse' });
  servers.push(wss);
  wss.on('connection', onConnection);
  await new Promise((r) => wss.once('listening', r));
  return `ws://127.0.0.1:${(wss.address() as net.AddressInfo).port}`;
}

const bytes = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));

function until(what: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (what()) resolve();
      else if (Date.now() > deadline) reject(new Error('timed out'));
      else setTimeout(tick, 5);
    };
    tick();
  });
}

describe('leanWsConn', () => {
  it('receives every byte in order, answers a ping, and writes a binary message', async () => {
    const parts = [bytes(5, 1), bytes(200, 2), bytes(70_000, 3), bytes(300_000, 4), bytes(1, 5), bytes(40_000, 6)];
    let serverGot: Buffer | undefined;
    let pong: Buffer | undefined;
    const url = await wsServer((ws) => {
      ws.on('message', (m: Buffer, isBinary) => (serverGot = isBinary ? m : undefined));
      ws.on('pong', (p) => (pong = p));
      ws.send(parts[0]!);
      ws.ping(Buffer.from('ping!'));
      ws.send(parts[1]!);
      ws.send(parts[2]!);
      ws.send(parts[3]!, { fin: false }); // one message in two frames
      ws.send(parts[4]!, { fin: true });
      ws.send(parts[5]!);
    });
    const conn = await leanWsConn(`${url}/x`, ['binary']);
    const got: Buffer[] = [];
    conn.onData((view) => got.push(Buffer.from(view))); // views are valid only during the call: copy
    const expected = Buffer.concat(parts);
    await until(() => got.reduce((n, b) => n + b.length, 0) >= expected.length);
    expect(Buffer.concat(got).equals(expected)).toBe(true);

    await conn.write(bytes(1000, 7));
    await until(() => serverGot !== undefined && pong !== undefined);
    expect(serverGot!.equals(bytes(1000, 7))).toBe(true);
    expect(pong!.toString()).toBe('ping!');
    expect(conn.error()).toBeUndefined();
    conn.close();
  });

  it('ends with an error naming the close code when the server closes, and takes nothing after it as data', async () => {
    // The close frame and more bytes in one write: a server must not send this, and the client must not count it.
    const url = await wsServer((ws) => {
      const raw = (ws as unknown as { _socket: net.Socket })._socket;
      raw.write(Buffer.from([0x82, 0x01, 0x07, 0x88, 0x02, 0x10, 0xe1, 0x82, 0x01, 0x09]));
    });
    const conn = await leanWsConn(url, ['binary']);
    const got: number[] = [];
    conn.onData((view) => got.push(...view));
    const ended = new Promise<Error>((r) => conn.onClose(r));
    expect((await ended).message).toMatch(/closed the WebSocket \(4321\)/);
    expect(got).toEqual([7]);
    await expect(conn.write(Buffer.from([1]))).rejects.toThrow(/4321/);
  });

  it('refuses a refused upgrade, a server that picks no subprotocol, and a wrong Sec-WebSocket-Accept', async () => {
    const url = await wsServer(() => {});
    await expect(leanWsConn(`${url}/refuse`, ['binary'])).rejects.toThrow(/handshake refused: HTTP\/1\.1 401/);
    const none = await wsServer(() => {}, false);
    await expect(leanWsConn(none, ['binary'])).rejects.toThrow(/chose subprotocol undefined/);

    const liar = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IGl0\r\n\r\n'));
    });
    servers.push(liar);
    await new Promise<void>((r) => liar.listen(0, '127.0.0.1', r));
    await expect(leanWsConn(`ws://127.0.0.1:${(liar.address() as net.AddressInfo).port}/`)).rejects.toThrow(/Sec-WebSocket-Accept/);
  });
});
