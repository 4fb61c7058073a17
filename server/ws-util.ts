/** Small pieces every WebSocket endpoint of the gateway (raw, mux, agents, operations) shares. */
import { Buffer } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import type { SockgateError } from '../shared/errors.js';
import { MAX_CLOSE_REASON_BYTES, truncateUtf8 } from '../shared/utf8.js';

/** A ws message as one Buffer (ws gives a Buffer with binaryType 'nodebuffer'; the others only in theory). */
export function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** A close reason ws accepts: at most 123 bytes of UTF-8 (RFC 6455 5.5; ws throws on longer ones). */
export function closeReasonBytes(reason: string): Buffer {
  return Buffer.from(truncateUtf8(reason, MAX_CLOSE_REASON_BYTES));
}

/** The subprotocols a WebSocket upgrade request offers. */
export function offeredSubprotocols(req: IncomingMessage): Set<string> {
  const header = req.headers['sec-websocket-protocol'];
  const text = Array.isArray(header) ? header.join(',') : (header ?? '');
  return new Set(text.split(',').map((p) => p.trim()).filter(Boolean));
}

/** An HTTP refusal with the registry code and message as a JSON body. */
export function sendError(reply: FastifyReply, status: number, err: SockgateError): FastifyReply {
  return reply.code(status).type('application/json; charset=utf-8').send({ code: err.code, message: err.message });
}

/**
 * A WebSocket's errors. ws reports a client's protocol violation (oversized message, bad opcode, invalid UTF-8:
 * `WS_ERR_*`) as an 'error' after it has already started the close with the right code (1009, 1002, ...): that is
 * the client's fault, logged at debug so hostile input cannot flood the error log, and the close is left to finish
 * (terminate() could cut off the close frame). Anything else is our bug: logged as an error, and the connection
 * terminated.
 */
export function onWebSocketError(err: Error, socket: WebSocket, log: FastifyBaseLogger): void {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('WS_ERR_')) {
    log.debug({ err: code, reason: err.message }, 'websocket protocol error from the client');
    return;
  }
  log.error({ err }, 'websocket handler failed');
  socket.terminate();
}

/**
 * Call first thing in a WebSocket route handler: lets the HTTP request that carried the upgrade be collected.
 *
 * @fastify/websocket leaves it reachable for as long as the WebSocket lives, in two ways: its 'error' listener on
 * the WebSocket closes over the Fastify request and reply, and the ServerResponse it assigned to the TCP socket
 * stays there, with Fastify's listeners on it holding both again. Together with the request's headers that is
 * about 3 KiB per connection (docs/BENCHMARKS.md). The listener is replaced by one that holds only the logger
 * (onWebSocketError, as before), and the response is detached from the socket: after the upgrade nothing
 * answers on it, and Fastify does not log upgrades as requests.
 */
export function releaseUpgradeRequest(socket: WebSocket, req: FastifyRequest): void {
  const log = req.log;
  // @fastify/websocket adds its listener right before calling the handler, after the server's 'connection' event
  // (where an embedding app may have added its own): the last one is the library's.
  const library = socket.listeners('error').at(-1) as ((err: Error) => void) | undefined;
  if (library) socket.removeListener('error', library);
  socket.on('error', (err: Error) => onWebSocketError(err, socket, log));
  const tcp = req.raw.socket as Socket & { _httpMessage?: ServerResponse | null };
  tcp._httpMessage?.detachSocket(tcp);
}
