/**
 * sockgate/client: the SDK for browsers and any runtime with a WebSocket class. Node gets client/node.ts
 * (same API, `ws` by default, plus toDuplex) through the package's "node" export condition.
 */
export { openSession, SockgateSession, type OpenSessionOptions, type SessionState } from './session.js';
export { SockgateSocket, type SocketOpenInfo } from './socket.js';
export {
  ReconnectingSession,
  SessionReconnectedEvent,
  SessionReconnectingEvent,
  type ReconnectOptions,
  type ReconnectingSessionEventMap,
  type ReconnectingState,
  type SocketLike,
} from './reconnect.js';
export { SessionCloseEvent, SessionErrorEvent, SessionGoAwayEvent, type SessionEventMap } from './events.js';
export type { WebSocketConstructor, WebSocketLike } from './transport.js';
export { SockgateError, isSockgateError, type ErrorCode } from './errors.js';
export { SUBPROTOCOL } from '../shared/constants.js';
