/**
 * Mux mode end to end: the real `ws` client and engine against the real gateway (createGateway), bridged to
 * real TCP and Unix backends on 127.0.0.1. Bytes are checked by sha256, half-close both ways, open failures by code.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { INITIAL_WINDOW, MAX_DATA_PAYLOAD } from '../../shared/constants.js';
import {
  type Backend,
  echoHandler,
  refusedPort,
  sha256,
  sinkHandler,
  tcpBackend,
  unixBackend,
  waitFor,
} from '../helpers/backends.js';
import { type MuxClient, type MuxServer, connectMux, startMuxGateway, within } from '../helpers/mux-client.js';

/** mulberry32: a small seeded PRNG, so a failing size mix can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(n: number, rand: () => number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (rand() * 256) | 0;
  return b;
}

/** Sizes from a few KiB to a few MiB (log-uniform), plus the edges of a frame and of the initial window. */
function streamSizes(count: number, rand: () => number): number[] {
  const edges = [1, MAX_DATA_PAYLOAD, MAX_DATA_PAYLOAD + 1, INITIAL_WINDOW, INITIAL_WINDOW + 1];
  const sizes = [...edges];
  while (sizes.length < count) sizes.push(Math.floor(4096 * Math.pow(1024, rand()))); // 4 KiB .. 4 MiB
  return sizes;
}

const SEED = 0x5eed_0001;

describe.each([
  ['TCP', tcpBackend],
  ['Unix', unixBackend],
] as const)('mux over a %s echo backend', (_kind, makeBackend) => {
  let echo: Backend;
  let server: MuxServer;
  let client: MuxClient | undefined;

  beforeAll(async () => {
    echo = await makeBackend(echoHandler);
    server = await startMuxGateway({ echo: echo.target });
  });
  afterEach(async () => {
    if (client) await client.close().catch(() => {});
    client = undefined;
  });
  afterAll(async () => {
    await server.close();
    await echo.close();
  });

  it('carries 64 concurrent streams of random sizes, each byte-exact', async () => {
    client = await connectMux(server.url);
    const rand = prng(SEED);
    const sizes = streamSizes(64, rand);
    const runs = sizes.map(async (size) => {
      const payload = randomBytes(size, rand);
      const s = client!.open('echo', { keep: false });
      await s.write(payload);
      s.end();
      const err = await within(s.closed, 20_000, `stream of ${size} bytes`);
      return { size, err, received: s.received, ended: s.ended, expected: sha256(payload), got: s.digest() };
    });
    const results = await Promise.all(runs);
    for (const r of results) {
      expect(r.err, `stream of ${r.size} bytes`).toBeUndefined();
      expect(r.ended).toBe(true);
      expect(r.received).toBe(r.size);
      expect(r.got).toBe(r.expected);
    }
    expect(client.session.streamCount).toBe(0);
    expect(client.internalErrors).toEqual([]);
    await waitFor(() => echo.connections.size === 0, 5000, 'backend connections to close');
  });

  it('delivers DATA and FIN sent before OPEN_OK (held within the initial window)', async () => {
    client = await connectMux(server.url);
    const payload = randomBytes(INITIAL_WINDOW, prng(SEED + 1));
    const s = client.open('echo');
    // Both go out at once, before the gateway has even connected the backend.
    expect(s.stream.write(payload)).toBe(true);
    s.end();
    expect(await within(s.closed, 10_000, 'stream close')).toBeUndefined();
    expect(sha256(s.data())).toBe(sha256(payload));
  });
});

describe('mux half-close', () => {
  let server: MuxServer;
  let client: MuxClient | undefined;
  const backends: Backend[] = [];
  afterEach(async () => {
    if (client) await client.close().catch(() => {});
    client = undefined;
    await server?.close();
    for (const b of backends.splice(0)) await b.close();
  });

  it('client FIN reaches the backend as EOF, and the backend can still answer', async () => {
    const seen: { bytes: number; eofBeforeReply: boolean }[] = [];
    const backend = await tcpBackend((socket) => {
      let bytes = 0;
      let eof = false;
      socket.on('data', (c: Buffer) => (bytes += c.length));
      socket.on('end', () => {
        eof = true;
        // Answer after our EOF, in two writes a moment apart, then end our side.
        socket.write(`got ${bytes}\n`);
        setTimeout(() => {
          seen.push({ bytes, eofBeforeReply: eof });
          socket.end('bye\n');
        }, 50);
      });
    });
    backends.push(backend);
    server = await startMuxGateway({ b: backend.target });
    client = await connectMux(server.url);
    const payload = randomBytes(3 * INITIAL_WINDOW + 17, prng(SEED + 2));
    const s = client.open('b');
    await s.write(payload);
    s.end();
    expect(await within(s.closed, 10_000, 'stream close')).toBeUndefined();
    expect(s.data().toString()).toBe(`got ${payload.length}\nbye\n`);
    expect(seen).toEqual([{ bytes: payload.length, eofBeforeReply: true }]);
  });

  it('backend EOF ends the client stream, and the client can still send', async () => {
    const results: { bytes: number; sha256: string }[] = [];
    const sink = sinkHandler(results);
    const backend = await tcpBackend((socket) => {
      socket.end('banner\n'); // EOF at once; allowHalfOpen keeps our read side open
      sink(socket);
    });
    backends.push(backend);
    server = await startMuxGateway({ b: backend.target });
    client = await connectMux(server.url);
    const s = client.open('b');
    await within(s.ended$, 5000, 'FIN from the backend');
    expect(s.data().toString()).toBe('banner\n');
    expect(s.isClosed).toBe(false);
    const payload = randomBytes(2 * 1024 * 1024 + 5, prng(SEED + 3));
    await s.write(payload);
    s.end();
    expect(await within(s.closed, 10_000, 'stream close')).toBeUndefined();
    await waitFor(() => results.length === 1, 5000, 'the sink to see EOF');
    expect(results[0]).toEqual({ bytes: payload.length, sha256: sha256(payload) });
    await waitFor(() => backend.connections.size === 0, 5000, 'backend connection to close');
  });
});

describe('mux open failures', () => {
  let server: MuxServer;
  let client: MuxClient;
  let missingDir: Backend;
  let refused: number;

  beforeAll(async () => {
    refused = await refusedPort();
    // A real directory whose socket file we remove: the path is valid but nothing is there (ENOENT).
    missingDir = await unixBackend(echoHandler);
    const missingPath = missingDir.target.replace(/backend\.sock$/, 'nothing-here.sock');
    server = await startMuxGateway({
      refused: `tcp://127.0.0.1:${refused}`,
      missing: missingPath,
      echo: missingDir.target,
    });
    client = await connectMux(server.url);
  });
  afterAll(async () => {
    await client.close().catch(() => {});
    await server.close();
    await missingDir.close();
  });

  it('unknown route: OPEN_FAIL SOCKGATE_ERR_ROUTE_UNKNOWN', async () => {
    const s = client.open('no-such-route');
    await expect(within(s.opened, 5000, 'OPEN_FAIL')).rejects.toMatchObject({ code: 'SOCKGATE_ERR_ROUTE_UNKNOWN' });
    const err = await s.closed;
    expect(err?.message).toContain('no-such-route');
  });

  it('refused backend: SOCKGATE_ERR_BACKEND_REFUSED, the reason starting with ECONNREFUSED', async () => {
    const s = client.open('refused');
    const err = await within(s.closed, 5000, 'OPEN_FAIL');
    expect(err?.code).toBe('SOCKGATE_ERR_BACKEND_REFUSED');
    // PROTOCOL 7: the reason on the wire starts with the errno; the receiver prefixes the code's message.
    expect(err?.message).toMatch(/^the backend refused the connection: ECONNREFUSED: /);
  });

  it('missing Unix socket: SOCKGATE_ERR_BACKEND_UNREACHABLE with ENOENT', async () => {
    const s = client.open('missing');
    const err = await within(s.closed, 5000, 'OPEN_FAIL');
    expect(err?.code).toBe('SOCKGATE_ERR_BACKEND_UNREACHABLE');
    expect(err?.message).toContain('ENOENT');
  });

  it('the session survives failed opens', async () => {
    const s = client.open('echo');
    await s.write(Buffer.from('still here'));
    s.end();
    expect(await within(s.closed, 5000, 'stream close')).toBeUndefined();
    expect(s.data().toString()).toBe('still here');
  });

  it('refuses streams past maxStreamsPerSession with SOCKGATE_ERR_STREAM_TOO_MANY', async () => {
    const small = await startMuxGateway({ echo: missingDir.target }, { limits: { maxStreamsPerSession: 2 } });
    const c = await connectMux(small.url);
    try {
      const a = c.open('echo');
      const b = c.open('echo');
      const third = c.open('echo');
      await within(Promise.all([a.opened, b.opened]), 5000, 'two opens');
      expect((await within(third.closed, 5000, 'OPEN_FAIL'))?.code).toBe('SOCKGATE_ERR_STREAM_TOO_MANY');
      a.end();
      await within(a.closed, 5000, 'a to close'); // the echo ends after our FIN: a slot frees up
      const fourth = c.open('echo');
      await within(fourth.opened, 5000, 'an open after a slot freed');
    } finally {
      await c.close().catch(() => {});
      await small.close();
    }
  });
});

describe('mux backend failures after open', () => {
  it('a backend reset reaches the client as RESET SOCKGATE_ERR_BACKEND_RESET', async () => {
    const backend = await tcpBackend((socket) => {
      socket.once('data', () => socket.resetAndDestroy());
    });
    const server = await startMuxGateway({ b: backend.target });
    const client = await connectMux(server.url);
    try {
      const s = client.open('b');
      await within(s.opened, 5000, 'OPEN_OK');
      s.stream.write(Buffer.from('hello'));
      const err = await within(s.closed, 5000, 'RESET');
      expect(err?.code).toBe('SOCKGATE_ERR_BACKEND_RESET');
      expect(err?.message).toContain('ECONNRESET');
      // Only that stream: the session goes on.
      expect(client.session.closed).toBe(false);
    } finally {
      await client.close().catch(() => {});
      await server.close();
      await backend.close();
    }
  });

  it('a stream reset by the client while connecting never leaves a backend socket behind', async () => {
    const backend = await tcpBackend(echoHandler);
    const server = await startMuxGateway({ b: backend.target });
    const client = await connectMux(server.url);
    try {
      for (let i = 0; i < 20; i++) client.open('b').stream.reset();
      const s = client.open('b');
      await within(s.opened, 5000, 'a later open');
      s.end();
      await within(s.closed, 5000, 'stream close');
      await waitFor(() => backend.connections.size === 0, 5000, 'backend connections to close');
      expect(backend.accepted.length).toBeLessThanOrEqual(21);
    } finally {
      await client.close().catch(() => {});
      await server.close();
      await backend.close();
    }
  });
});
