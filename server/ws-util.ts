/** Small pieces every WebSocket endpoint of the gateway (raw, mux, agents, operations) shares. */
import { Buffer } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import type { FastifyReply } from 'fastify';
import type { RawData } from 'ws';
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
