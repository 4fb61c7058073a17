/** The Node entry (client/node.ts): ws as the default WebSocket, and toDuplex() over a real WebSocket. */
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterEach, describe, expect, it } from 'vitest';
import { openSession, toDuplex, type SockgateSession } from '../../client/node.js';
import { sha256, waitFor } from '../helpers/backends.js';
import { noiseBytes, startMuxServer, type MuxServer } from '../helpers/mux-server.js';

let server: MuxServer | undefined;
let session: SockgateSession | undefined;
afterEach(async () => {
  await session?.close();
  await server?.close();
  session = server = undefined;
});

async function setup(): Promise<{ server: MuxServer; session: SockgateSession }> {
  server = await startMuxServer();
  // Node 20 has no global WebSocket: this goes through the ws default of client/node.ts.
  session = await openSession(server.url);
  return { server, session };
}

describe('toDuplex', () => {
  it('pipes bytes through a Duplex, half-closing with end()', async () => {
    const { session } = await setup();
    const duplex = toDuplex(session.connect('echo'));
    const data = noiseBytes(1024 * 1024 + 3, 4);
    const [, received] = await Promise.all([pipeline(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), duplex), buffer(duplex)]);
    expect(sha256(received)).toBe(sha256(data));
  });

  it('keeps writing after the backend EOF with allowHalfOpen', async () => {
    const { server, session } = await setup();
    const duplex = toDuplex(session.connect('source-5'), { allowHalfOpen: true });
    duplex.resume();
    await once(duplex, 'end');
    await new Promise<void>((resolve, reject) => duplex.write(Buffer.from('late'), (err) => (err ? reject(err) : resolve())));
    duplex.end();
    await once(duplex, 'close');
    // 'close' means our FIN went to the WebSocket; the server sees the stream close once it arrives.
    const stream = server.ctx.streams[0]!.stream;
    await waitFor(() => stream.isClosed, 5000, 'server stream closed');
    expect([stream.bytesIn, stream.error]).toEqual([4, undefined]);
  });

  it('destroys the Duplex with the sockgate error code', async () => {
    const { session } = await setup();
    const duplex = toDuplex(session.connect('refused'));
    duplex.resume();
    const [err] = (await once(duplex, 'error')) as [Error & { code?: string }];
    expect(err.code).toBe('SOCKGATE_ERR_BACKEND_REFUSED');
  });
});
