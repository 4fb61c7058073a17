/**
 * Reverse tunnels end to end (PROTOCOL 11): a real gateway on 127.0.0.1, real in-process agents dialing it over
 * real WebSockets, real TCP and Unix services behind the agents, real raw and mux clients. Services are reached
 * only through their agent; bytes are checked by sha256.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { AGENT_PATH, SUBPROTOCOL } from '../../shared/constants.js';
import { resolveAgentConfig } from '../../server/agent-config.js';
import { startAgent, type AgentHandle } from '../../server/agent.js';
import { createGateway, type Gateway } from '../../server/gateway.js';
import { createLogger } from '../../server/log.js';
import { type Backend, echoHandler, patternBytes, sha256, sinkHandler, tcpBackend, unixBackend, waitFor } from '../helpers/backends.js';
import { metricValue, scrape, scrapeUntil } from '../helpers/metrics.js';
import { type MuxClient, connectMux, within } from '../helpers/mux-client.js';

const MiB = 1024 * 1024;
const AGENT_TOKEN = 'home-agent-token-0123456789abcdef';
const OTHER_TOKEN = 'other-agent-token-0123456789abcde';

/** Agent credentials: `home` may serve the test services, `other` only `elsewhere`. */
const AGENTS = [
  { name: 'home', token: AGENT_TOKEN, services: ['svc', 'sink', 'src', 'banner'] },
  { name: 'other', token: OTHER_TOKEN, services: ['elsewhere'] },
];

const ROUTES = {
  echo: { target: 'agent:svc' },
  sink: { target: 'agent:sink' },
  src: { target: 'agent:src' },
  banner: { target: 'agent:banner' },
  elsewhere: { target: 'agent:elsewhere' },
};

interface Gw {
  gateway: Gateway;
  port: number;
  wsUrl: string;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

/** A gateway whose clients are anonymous (loopback, no client credentials) and whose agents need a token. */
async function startAgentGateway(port = 0, limits?: Record<string, number>): Promise<Gw> {
  const gateway = await createGateway({ listen: `127.0.0.1:${port}`, routes: ROUTES, auth: { agents: AGENTS }, ...(limits && { limits }) }, { logger: false });
  const { port: actual } = await gateway.listen();
  cleanups.push(() => gateway.close());
  return { gateway, port: actual, wsUrl: `ws://127.0.0.1:${actual}` };
}

async function backend(kind: 'tcp' | 'unix', handler: Parameters<typeof tcpBackend>[0]): Promise<Backend> {
  const b = kind === 'tcp' ? await tcpBackend(handler) : await unixBackend(handler);
  cleanups.push(() => b.close());
  return b;
}

interface RunningAgent {
  agent: AgentHandle;
  lines: Record<string, unknown>[];
}

/** An in-process agent with fast reconnects and keepalive, logging into `lines`. */
function runAgent(wsUrl: string, services: Record<string, string>, token = AGENT_TOKEN, more: Record<string, unknown> = {}): RunningAgent {
  const lines: Record<string, unknown>[] = [];
  const config = resolveAgentConfig({
    gateway: wsUrl,
    token,
    services,
    reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
    pingIntervalMs: 500,
    pingTimeoutMs: 2000,
    connectTimeoutMs: 2000,
    ...more,
  });
  const agent = startAgent({ config, log: createLogger({ level: 'debug', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) }) });
  cleanups.push(() => agent.stop());
  return { agent, lines };
}

async function mux(url: string): Promise<MuxClient> {
  const c = await connectMux(`${url}/mux`);
  cleanups.push(() => c.close().then(() => {}));
  return c;
}

interface RawClient {
  ws: WebSocket;
  opened: Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
  chunks: Buffer[];
  bytes(): number;
}

function raw(url: string): RawClient {
  const ws = new WebSocket(url);
  const chunks: Buffer[] = [];
  let bytes = 0;
  ws.on('message', (d: Buffer) => {
    chunks.push(d);
    bytes += d.length;
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  opened.catch(() => {});
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }));
  });
  cleanups.push(async () => {
    if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
  });
  return { ws, opened, closed, chunks, bytes: () => bytes };
}

/** `text` sent on a new stream to route 'echo' (through the agent) comes back whole, and the stream ends cleanly. */
async function expectEcho(client: MuxClient, text: string, what = 'stream'): Promise<void> {
  const s = client.open('echo');
  await s.write(Buffer.from(text));
  s.end();
  expect(await within(s.closed, 5000, what)).toBeUndefined();
  expect(s.data().toString()).toBe(text);
}

/** The HTTP refusal of an upgrade: status and JSON body. */
function refusal(url: string, headers: Record<string, string> = {}, protocols: string[] = []): Promise<{ status: number; body: { code?: string; message?: string } }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { headers });
    ws.on('open', () => {
      ws.terminate();
      reject(new Error(`upgrade to ${url} succeeded`));
    });
    ws.on('error', () => {});
    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { code?: string } });
        ws.terminate();
      });
    });
  });
}

/** Send `data` over a raw WebSocket in 64 KiB messages, pacing on the client's own buffer (bounded loop). */
async function sendPaced(ws: WebSocket, data: Buffer): Promise<void> {
  for (let at = 0; at < data.length; at += 64 * 1024) {
    ws.send(data.subarray(at, at + 64 * 1024));
    for (let i = 0; i < 2000 && ws.bufferedAmount > MiB; i++) await new Promise((r) => setTimeout(r, 5));
  }
}

/** The gateway-side WebSockets of agents (their upgrade path is /agent). */
function agentSockets(gw: Gw): WebSocket[] {
  return [...gw.gateway.app.websocketServer.clients].filter((ws) => agentWs.has(ws));
}
const agentWs = new WeakSet<WebSocket>();
/** Remember which server-side sockets are agents', by watching upgrades. */
function watchAgents(gw: Gw): void {
  gw.gateway.app.websocketServer.on('connection', (ws: WebSocket, req: IncomingMessage) => {
    if ((req.url ?? '').startsWith(AGENT_PATH)) agentWs.add(ws);
  });
}

describe('agent sessions in the metrics', () => {
  it('count in sockgate_sessions_open and _opened_total with mode="agent" while connected', async () => {
    const gw = await startAgentGateway();
    const echo = await backend('tcp', echoHandler);
    const metricsUrl = `${gw.wsUrl.replace('ws:', 'http:')}/metrics`;
    const { agent } = runAgent(gw.wsUrl, { svc: echo.target });
    await within(agent.connected(), 5000, 'agent registered');
    const during = await scrape(metricsUrl);
    expect(metricValue(during, 'sockgate_sessions_open', { mode: 'agent', route: '' })).toBe(1);
    expect(metricValue(during, 'sockgate_sessions_opened_total', { mode: 'agent' })).toBe(1);
    await agent.stop();
    const after = await scrapeUntil(metricsUrl, (x) => metricValue(x, 'sockgate_sessions_open', { mode: 'agent', route: '' }) === 0);
    expect(metricValue(after, 'sockgate_sessions_open', { mode: 'agent', route: '' })).toBe(0);
    expect(metricValue(after, 'sockgate_sessions_opened_total', { mode: 'agent' })).toBe(1);
  });
});

describe('a service reached only through an agent', () => {
  it.each(['tcp', 'unix'] as const)('mux: 4 MiB each way through a %s echo service, byte-exact, and a 3 MiB upload with FIN', async (kind) => {
    const gw = await startAgentGateway();
    const echo = await backend(kind, echoHandler);
    const results: { bytes: number; sha256: string }[] = [];
    const sink = await backend(kind, sinkHandler(results));
    const { agent } = runAgent(gw.wsUrl, { svc: echo.target, sink: sink.target });
    await within(agent.connected(), 5000, 'agent registered');

    const client = await mux(gw.wsUrl);
    const payload = randomBytes(4 * MiB + 123);
    const s = client.open('echo', { keep: false });
    const upload = randomBytes(3 * MiB + 7);
    const u = client.open('sink', { keep: false });
    await Promise.all([s.write(payload), u.write(upload)]);
    s.end();
    u.end();
    expect(await within(s.closed, 20_000, 'echo stream')).toBeUndefined();
    expect(s.received).toBe(payload.length);
    expect(s.digest()).toBe(sha256(payload));
    expect(await within(u.closed, 20_000, 'sink stream')).toBeUndefined();
    expect(results).toEqual([{ bytes: upload.length, sha256: sha256(upload) }]);
    await waitFor(() => echo.connections.size === 0 && sink.connections.size === 0, 5000, 'local connections released');
  });

  it('raw: 3 MiB up and back through an echo service, and 4 MiB down from a source, byte-exact', async () => {
    const gw = await startAgentGateway();
    const echo = await backend('tcp', echoHandler);
    const source = await backend('unix', (socket) => {
      const data = patternBytes(4 * MiB);
      socket.end(data);
    });
    const { agent } = runAgent(gw.wsUrl, { svc: echo.target, src: source.target });
    await within(agent.connected(), 5000, 'agent registered');

    const c = raw(`${gw.wsUrl}/raw/echo`);
    await within(c.opened, 5000, 'raw open');
    const payload = randomBytes(3 * MiB + 5);
    await sendPaced(c.ws, payload);
    await waitFor(() => c.bytes() >= payload.length, 20_000, 'the echo');
    expect(sha256(Buffer.concat(c.chunks))).toBe(sha256(payload));
    c.ws.close(1000);
    expect((await within(c.closed, 5000, 'close')).code).toBe(1000);
    await waitFor(() => echo.connections.size === 0, 5000, 'the agent ends its local connection');

    const d = raw(`${gw.wsUrl}/raw/src`);
    const closed = await within(d.closed, 20_000, 'the source to finish');
    expect(closed.code).toBe(1000);
    expect(d.bytes()).toBe(4 * MiB);
    expect(sha256(Buffer.concat(d.chunks))).toBe(sha256(patternBytes(4 * MiB)));
  });

  it('carries half-close both ways: the service answers after the client FIN', async () => {
    const gw = await startAgentGateway();
    const svc = await backend('tcp', (socket) => {
      let bytes = 0;
      socket.on('data', (c: Buffer) => (bytes += c.length));
      socket.on('end', () => socket.end(`got ${bytes}\n`));
    });
    const { agent } = runAgent(gw.wsUrl, { svc: svc.target });
    await within(agent.connected(), 5000, 'agent registered');
    const client = await mux(gw.wsUrl);
    const s = client.open('echo');
    await s.write(randomBytes(MiB));
    s.end();
    expect(await within(s.closed, 10_000, 'stream')).toBeUndefined();
    expect(s.data().toString()).toBe(`got ${MiB}\n`);
  });

  it('passes the agent\'s OPEN_FAIL code on: a refused local service is SOCKGATE_ERR_BACKEND_REFUSED', async () => {
    const gw = await startAgentGateway();
    const closedPort = await new Promise<number>((resolve) => {
      const srv = net.createServer();
      srv.listen(0, '127.0.0.1', () => {
        const port = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(port));
      });
    });
    const { agent } = runAgent(gw.wsUrl, { svc: `tcp://127.0.0.1:${closedPort}` });
    await within(agent.connected(), 5000, 'agent registered');
    const client = await mux(gw.wsUrl);
    const s = client.open('echo');
    const err = await within(s.closed, 5000, 'OPEN_FAIL');
    expect(err?.code).toBe('SOCKGATE_ERR_BACKEND_REFUSED');
    expect(err?.message).toContain('ECONNREFUSED');
  });
});

describe('agent credentials and registration', () => {
  it('refuses a wrong agent token with 401, a missing one too, and a client may not dial /agent', async () => {
    const gw = await startAgentGateway();
    const url = `${gw.wsUrl}${AGENT_PATH}?services=svc`;
    const wrong = await refusal(url, { authorization: 'Bearer not-the-agent-token-at-all' }, [SUBPROTOCOL]);
    expect(wrong.status).toBe(401);
    expect(wrong.body.code).toBe('SOCKGATE_ERR_AUTH_INVALID');
    const none = await refusal(url, {}, [SUBPROTOCOL]);
    expect(none.status).toBe(401);
    expect(none.body.code).toBe('SOCKGATE_ERR_AUTH_MISSING');
    const noProtocol = await refusal(url, { authorization: `Bearer ${AGENT_TOKEN}` });
    expect(noProtocol.status).toBe(400);
    const noServices = await refusal(`${gw.wsUrl}${AGENT_PATH}`, { authorization: `Bearer ${AGENT_TOKEN}` }, [SUBPROTOCOL]);
    expect(noServices).toMatchObject({ status: 400, body: { code: 'SOCKGATE_ERR_AGENT_BAD_SERVICES' } });
    const badName = await refusal(`${gw.wsUrl}${AGENT_PATH}?services=svc,a%2Fb`, { authorization: `Bearer ${AGENT_TOKEN}` }, [SUBPROTOCOL]);
    expect(badName).toMatchObject({ status: 400, body: { code: 'SOCKGATE_ERR_AGENT_BAD_SERVICES' } });

    // The agent gives up on a refusal no retry can fix, with the gateway's code.
    const { agent, lines } = runAgent(gw.wsUrl, { svc: 'tcp://127.0.0.1:9' }, 'not-the-agent-token-at-all');
    const err = await within(agent.done, 5000, 'the agent to stop');
    expect(err?.code).toBe('SOCKGATE_ERR_AUTH_INVALID');
    expect(agent.state).toBe('stopped');
    expect(lines.some((l) => l.msg === 'agent registration refused; not retrying')).toBe(true);
    // Nothing was registered: the route is unavailable.
    expect((await refusal(`${gw.wsUrl}/raw/echo`)).status).toBe(503);
  });

  it("an agent may not register a service its token does not allow, nor take over another agent's service", async () => {
    const gw = await startAgentGateway();
    const echo = await backend('tcp', echoHandler);
    const home = runAgent(gw.wsUrl, { svc: echo.target });
    await within(home.agent.connected(), 5000, 'home registered');

    // `other` may serve only `elsewhere`: listing `svc` too is refused before the upgrade.
    const intruder = runAgent(gw.wsUrl, { svc: 'tcp://127.0.0.1:9', elsewhere: 'tcp://127.0.0.1:9' }, OTHER_TOKEN);
    const err = await within(intruder.agent.done, 5000, 'the intruder to stop');
    expect(err?.code).toBe('SOCKGATE_ERR_ROUTE_FORBIDDEN');
    expect(err?.message).toContain('"svc"');
    expect(
      (await refusal(`${gw.wsUrl}${AGENT_PATH}?services=svc`, { authorization: `Bearer ${OTHER_TOKEN}` }, [SUBPROTOCOL])).status,
    ).toBe(403);

    // `home` still serves svc, on its first connection.
    expect(home.agent.state).toBe('connected');
    expect(home.agent.connections).toBe(1);
    const client = await mux(gw.wsUrl);
    await expectEcho(client, 'still home');
  });

  it('a newer agent for the same service replaces the older one, which is closed with 4005 and stops', async () => {
    const gw = await startAgentGateway();
    const first = await backend('tcp', (socket) => socket.end('first\n'));
    const second = await backend('tcp', (socket) => socket.end('second\n'));
    const a = runAgent(gw.wsUrl, { svc: first.target });
    await within(a.agent.connected(), 5000, 'first registered');
    const client = await mux(gw.wsUrl);
    const read = async (): Promise<string> => {
      const s = client.open('echo');
      s.end();
      expect(await within(s.closed, 5000, 'stream')).toBeUndefined();
      return s.data().toString();
    };
    expect(await read()).toBe('first\n');

    const b = runAgent(gw.wsUrl, { svc: second.target });
    await within(b.agent.connected(), 5000, 'second registered');
    const err = await within(a.agent.done, 5000, 'the first agent to stop');
    expect(err?.code).toBe('SOCKGATE_ERR_SESSION_REPLACED');
    expect(a.lines.some((l) => l.msg === 'agent replaced by a newer agent; not reconnecting')).toBe(true);
    expect(await read()).toBe('second\n');
  });
});

describe('agent credentials across a configuration reload', () => {
  it('an agent whose entry a reload removed serves nothing more: its next stream is refused and it is cut off', async () => {
    const gw = await startAgentGateway();
    const echo = await backend('tcp', echoHandler);
    const { agent } = runAgent(gw.wsUrl, { svc: echo.target });
    await within(agent.connected(), 5000, 'agent registered');
    const client = await mux(gw.wsUrl);
    const before = client.open('echo');
    await before.write(Buffer.from('x'));
    await waitFor(() => before.received === 1, 5000, 'echo');

    // The same routes; `home` now has another token, so the running agent's is revoked.
    await gw.gateway.reload({ listen: `127.0.0.1:${gw.port}`, routes: ROUTES, auth: { agents: [{ ...AGENTS[0]!, token: 'rotated-agent-token-0123456789ab' }, AGENTS[1]!] } });
    const err = await within(client.open('echo').closed, 5000, 'OPEN_FAIL');
    expect(err?.code).toBe('SOCKGATE_ERR_ROUTE_UNAVAILABLE');
    expect(err?.message).toContain('revoked');
    // Its reconnection is refused (401): no retry can fix that.
    expect((await within(agent.done, 5000, 'the agent to stop'))?.code).toBe('SOCKGATE_ERR_AUTH_INVALID');
    // The stream opened before the reload ended with the agent's session.
    expect((await within(before.closed, 5000, 'the old stream'))?.code).toBe('SOCKGATE_ERR_BACKEND_RESET');
  });
});

describe('no agent, agent loss and return', () => {
  it('no agent connected: raw is refused with 503 before the upgrade, mux OPEN with SOCKGATE_ERR_ROUTE_UNAVAILABLE', async () => {
    const gw = await startAgentGateway();
    const r = await refusal(`${gw.wsUrl}/raw/echo`);
    expect(r.status).toBe(503);
    expect(r.body.code).toBe('SOCKGATE_ERR_ROUTE_UNAVAILABLE');
    // An unknown route is still 404, a known one without its agent 503.
    expect((await refusal(`${gw.wsUrl}/raw/nope`)).status).toBe(404);
    const client = await mux(gw.wsUrl);
    const err = await within(client.open('echo').closed, 5000, 'OPEN_FAIL');
    expect(err?.code).toBe('SOCKGATE_ERR_ROUTE_UNAVAILABLE');
    expect(gw.gateway.app.sockgate.sessions).toBe(1); // the refused raw upgrade gave its slot back
  });

  it('an agent whose connection dies: open streams fail with a clear code, the agent reconnects and the route is back', async () => {
    const gw = await startAgentGateway();
    watchAgents(gw);
    const echo = await backend('tcp', echoHandler);
    const { agent, lines } = runAgent(gw.wsUrl, { svc: echo.target });
    await within(agent.connected(), 5000, 'agent registered');
    const client = await mux(gw.wsUrl);
    const s = client.open('echo');
    await s.write(Buffer.from('before'));
    await waitFor(() => s.received === 6, 5000, 'echo before the loss');

    // Kill the agent's connection without a close handshake.
    const sockets = agentSockets(gw);
    expect(sockets).toHaveLength(1);
    sockets[0]!.terminate();
    const err = await within(s.closed, 5000, 'the stream to fail');
    expect(err?.code).toBe('SOCKGATE_ERR_BACKEND_RESET');
    expect(err?.message).toContain('SOCKGATE_ERR_SESSION_LOST');
    await waitFor(() => echo.connections.size === 0, 5000, 'the agent drops the local connection');

    await waitFor(() => agent.connections === 2 && agent.state === 'connected', 5000, 'the agent to reconnect');
    expect(lines.filter((l) => l.msg === 'agent disconnected; reconnecting')).toHaveLength(1);
    await expectEcho(client, 'after', 'stream after the return');
  });

  it('an agent that stops: the route is unavailable; a new agent restores it', async () => {
    const gw = await startAgentGateway();
    const echo = await backend('tcp', echoHandler);
    const first = runAgent(gw.wsUrl, { svc: echo.target });
    await within(first.agent.connected(), 5000, 'agent registered');
    const client = await mux(gw.wsUrl);
    await first.agent.stop();
    await waitFor(() => gw.gateway.app.websocketServer.clients.size === 1, 5000, 'the gateway to see the agent go');
    expect((await within(client.open('echo').closed, 5000, 'OPEN_FAIL'))?.code).toBe('SOCKGATE_ERR_ROUTE_UNAVAILABLE');

    const second = runAgent(gw.wsUrl, { svc: echo.target });
    await within(second.agent.connected(), 5000, 'new agent registered');
    await expectEcho(client, 'restored');
  });

  it('a gateway restarted on the same port: the agent reconnects by itself and serves again', async () => {
    const gw = await startAgentGateway();
    const echo = await backend('tcp', echoHandler);
    const { agent, lines } = runAgent(gw.wsUrl, { svc: echo.target });
    await within(agent.connected(), 5000, 'agent registered');
    await gw.gateway.close();
    await waitFor(() => agent.state !== 'connected', 5000, 'the agent to notice');

    const again = await startAgentGateway(gw.port);
    await waitFor(() => agent.state === 'connected' && agent.connections === 2, 10_000, 'the agent to come back');
    const c = raw(`${again.wsUrl}/raw/echo`);
    await within(c.opened, 5000, 'raw open');
    c.ws.send(Buffer.from('back again'));
    await waitFor(() => Buffer.concat(c.chunks).toString() === 'back again', 5000, 'echo');
    c.ws.close();
    // One line per change of state: connecting, connected, disconnected, (failed attempts), connected.
    const msgs = lines.map((l) => l.msg);
    expect(msgs.filter((m) => m === 'agent connected')).toHaveLength(2);
    expect(msgs).toContain('agent disconnected; reconnecting');
  });
});

/**
 * A TCP relay on 127.0.0.1 between the agent and the gateway that can black-hole a link: after freeze(), the
 * connections open then have their bytes read and dropped both ways and are never closed, as when a NAT forgets a
 * mapping; later connections are relayed normally.
 */
async function relay(targetPort: number): Promise<{ port: number; freeze(): void }> {
  const frozen = new WeakSet<net.Socket>();
  const pairs: net.Socket[] = [];
  const server = net.createServer((inbound) => {
    const outbound = net.connect({ host: '127.0.0.1', port: targetPort });
    pairs.push(inbound, outbound);
    for (const [from, to] of [
      [inbound, outbound],
      [outbound, inbound],
    ] as const) {
      from.on('data', (c: Buffer) => {
        if (!frozen.has(from)) to.write(c);
      });
      from.on('error', () => {});
      // A black-holed link does not pass a close on either: the gateway must find out by itself.
      from.on('close', () => {
        if (!frozen.has(from)) to.destroy();
      });
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(async () => {
    for (const s of pairs) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze: () => {
      for (const s of pairs) frozen.add(s);
    },
  };
}

describe('keepalive and the agent\'s own limits', () => {
  it('a dead link (no close, no bytes) is found by the PING timeout; the agent reconnects and replaces its stale registration', async () => {
    const gw = await startAgentGateway();
    const echo = await backend('tcp', echoHandler);
    const link = await relay(gw.port);
    const { agent, lines } = runAgent(`ws://127.0.0.1:${link.port}`, { svc: echo.target }, AGENT_TOKEN, { pingIntervalMs: 200, pingTimeoutMs: 300 });
    await within(agent.connected(), 5000, 'agent registered');
    const client = await mux(gw.wsUrl);
    link.freeze();
    await waitFor(() => lines.some((l) => l.msg === 'gateway did not answer a PING; dropping the connection'), 5000, 'the PING timeout');
    // The gateway has not noticed (its keepalive is 30 s): the agent's new registration replaces the stale one,
    // which is closed (4005) and, as it answers nothing, terminated after AGENT_CLOSE_GRACE_MS.
    await waitFor(() => agent.state === 'connected' && agent.connections === 2, 10_000, 'the agent to reconnect');
    expect(agent.state).toBe('connected'); // the 4005 went to the dead link, not to the live one
    await waitFor(() => gw.gateway.app.websocketServer.clients.size === 2, 5000, 'the stale session to go'); // the mux client and the agent
    await expectEcho(client, 'alive');
  });

  it("a live agent answers the gateway's keepalive PINGs: its session stays up through many timeouts' worth", async () => {
    // The gateway reads an agent's frames beside ws (WsTransport.bind), so its keepalive must hear them there.
    const gw = await startAgentGateway(0, { keepaliveIntervalMs: 50, keepaliveTimeoutMs: 100 });
    const echo = await backend('tcp', echoHandler);
    const { agent } = runAgent(gw.wsUrl, { svc: echo.target });
    await within(agent.connected(), 5000, 'agent registered');
    await new Promise((r) => setTimeout(r, 1000));
    expect([agent.state, agent.connections]).toEqual(['connected', 1]);
    expect(metricValue(await scrape(`http://127.0.0.1:${gw.port}/metrics`), 'sockgate_keepalive_timeouts_total', { mode: 'agent' })).toBe(0);
    const client = await mux(gw.wsUrl);
    await expectEcho(client, 'alive');
  });

  it('an agent cannot open streams: its credential reaches no route (OPEN_FAIL SOCKGATE_ERR_ROUTE_UNKNOWN)', async () => {
    const gw = await startAgentGateway();
    const echo = await backend('tcp', echoHandler);
    runAgent(gw.wsUrl, { sink: echo.target }); // a real agent serving something else, to show it is not about that
    const rogue = await connectMux(`${gw.wsUrl}${AGENT_PATH}?services=svc`, { headers: { authorization: `Bearer ${AGENT_TOKEN}` } });
    cleanups.push(() => rogue.close().then(() => {}));
    const err = await within(rogue.open('echo').closed, 5000, 'OPEN_FAIL');
    expect(err?.code).toBe('SOCKGATE_ERR_ROUTE_UNKNOWN');
  });
});

describe('backpressure through an agent', () => {
  /** A Unix-socket source (fixed kernel buffers, unlike TCP's autotuning) that writes until told to stop. */
  async function endlessSource(): Promise<{ backend: Backend; taken: () => number }> {
    let taken = 0;
    const chunk = patternBytes(64 * 1024);
    const b = await backend('unix', (socket) => {
      const pump = (): void => {
        // Bounded: at most 256 MiB, far past what any buffer on the way may hold.
        while (taken < 256 * MiB) {
          taken += chunk.length;
          if (!socket.write(chunk)) {
            socket.once('drain', pump);
            return;
          }
        }
      };
      socket.on('error', () => {});
      pump();
    });
    return { backend: b, taken: () => taken };
  }

  /** Wait until `taken` stops growing (two equal readings 300 ms apart), bounded. */
  async function settled(taken: () => number): Promise<number> {
    let last = -1;
    for (let i = 0; i < 50; i++) {
      await new Promise((r) => setTimeout(r, 300));
      const now = taken();
      if (now === last) return now;
      last = now;
    }
    throw new Error('the source never stopped');
  }

  it('mux: a client that reads nothing holds the far service back; reading again lets it go on', async () => {
    const gw = await startAgentGateway();
    const { backend: source, taken } = await endlessSource();
    const { agent } = runAgent(gw.wsUrl, { src: source.target });
    await within(agent.connected(), 5000, 'agent registered');
    const client = await mux(gw.wsUrl);
    const s = client.open('src', { keep: false });
    s.pause();
    const held = await settled(taken);
    // Two stream windows (256 KiB, growing only as bytes are consumed), a frame or two in the bridges and the Unix
    // socket's kernel buffers: a few MiB at most of the 256 MiB on offer.
    expect(held).toBeLessThan(8 * MiB);
    expect(s.received).toBeLessThanOrEqual(4 * MiB);
    s.resume();
    await waitFor(() => taken() > held + 8 * MiB, 10_000, 'the source to go on once the client reads');
    s.stream.reset();
  });

  it('raw: a browser that stops reading holds the far service back', async () => {
    const gw = await startAgentGateway();
    const { backend: source, taken } = await endlessSource();
    const { agent } = runAgent(gw.wsUrl, { src: source.target });
    await within(agent.connected(), 5000, 'agent registered');
    const c = raw(`${gw.wsUrl}/raw/src`);
    await within(c.opened, 5000, 'raw open');
    c.ws.pause(); // stop reading the TCP socket, as a stalled tab would
    const held = await settled(taken);
    // The same, plus maxTransportBufferedBytes and the loopback TCP buffers between the gateway and this client
    // (which the kernel may grow to several MiB).
    expect(held).toBeLessThan(48 * MiB);
    c.ws.resume();
    await waitFor(() => taken() > held + 8 * MiB, 10_000, 'the source to go on once the client reads');
  });
});
