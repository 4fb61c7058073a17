/**
 * A `ws` server over TLS on 127.0.0.1 (the self-signed test certificate in test/fixtures/tls), and a `ws` client
 * WebSocket to it with the settings of the SDK's NodeWebSocket (no permessage-deflate), which takes no TLS options
 * itself. For tests of what is written to or read from the TLSSocket under a client WebSocket.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type net from 'node:net';
import { join } from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';

export interface WssPair {
  /** The server side: its 'connection' listeners see the client. */
  wss: WebSocketServer;
  /** The client WebSocket (not yet open). */
  ws: WebSocket;
  /** The TLSSocket under `ws`, once its upgrade response arrived ('open' comes after). */
  socket(): net.Socket;
  close(): void;
}

/** Start the server, let `onConnection` set it up, then connect the client. */
export async function wssPair(onConnection: (peer: WebSocket) => void): Promise<WssPair> {
  const tlsDir = join(import.meta.dirname, '../fixtures/tls');
  const cert = readFileSync(join(tlsDir, 'cert.pem'));
  const https = createHttpsServer({ cert, key: readFileSync(join(tlsDir, 'key.pem')) });
  const wss = new WebSocketServer({ server: https });
  https.listen(0, '127.0.0.1');
  await once(https, 'listening');
  wss.on('connection', onConnection);
  const ws = new WebSocket(`wss://127.0.0.1:${(https.address() as net.AddressInfo).port}`, { ca: cert, perMessageDeflate: false });
  let socket: net.Socket | undefined;
  ws.once('upgrade', (res: IncomingMessage) => (socket = res.socket as net.Socket));
  return {
    wss,
    ws,
    socket: () => {
      if (!socket) throw new Error('no upgrade yet');
      return socket;
    },
    close() {
      ws.terminate();
      wss.close();
      https.close();
    },
  };
}
