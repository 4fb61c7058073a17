/**
 * The one registry of sockgate error codes (PROTOCOL section 7). Every error sockgate reports carries one of
 * these string codes; users branch on `err.code`, never on `instanceof` or the message.
 */

interface ErrorSpec {
  readonly message: string;
  /** WebSocket close code, for errors that end a session. */
  readonly closeCode?: number;
  /** u16 wire code for OPEN_FAIL / RESET / GOAWAY, for errors that end a stream. */
  readonly wireCode?: number;
  /** HTTP status, for errors that refuse a WebSocket upgrade before it happens (PROTOCOL 7.3). */
  readonly httpStatus?: number;
}

export const ERRORS = {
  // 7.1 stream codes
  SOCKGATE_ERR_STREAM_CLOSED: { message: 'stream closed', wireCode: 0x0000 },
  SOCKGATE_ERR_ROUTE_UNKNOWN: { message: 'no route has that name', wireCode: 0x0001 },
  SOCKGATE_ERR_ROUTE_FORBIDDEN: { message: 'the credentials do not allow that route', wireCode: 0x0002 },
  SOCKGATE_ERR_BACKEND_REFUSED: { message: 'the backend refused the connection', wireCode: 0x0003 },
  SOCKGATE_ERR_BACKEND_UNREACHABLE: { message: 'the backend cannot be reached', wireCode: 0x0004 },
  SOCKGATE_ERR_BACKEND_TIMEOUT: { message: 'the backend did not accept the connection in time', wireCode: 0x0005 },
  SOCKGATE_ERR_BACKEND_RESET: { message: 'the backend connection failed', wireCode: 0x0006 },
  SOCKGATE_ERR_STREAM_FLOW_CONTROL: { message: 'flow-control violation', wireCode: 0x0007 },
  SOCKGATE_ERR_STREAM_SHUTTING_DOWN: { message: 'the gateway is shutting down', wireCode: 0x0008 },
  SOCKGATE_ERR_STREAM_TOO_MANY: { message: 'too many streams on this session', wireCode: 0x0009 },
  SOCKGATE_ERR_ROUTE_UNAVAILABLE: { message: 'the route is not available now', wireCode: 0x000a },
  SOCKGATE_ERR_STREAM_CANCELLED: { message: 'the stream was aborted', wireCode: 0x000b },
  SOCKGATE_ERR_STREAM_INTERNAL: { message: 'internal error on the peer', wireCode: 0x000c },
  SOCKGATE_ERR_STREAM_BAD_OPEN: { message: 'bad OPEN: route name or critical option', wireCode: 0x000d },
  SOCKGATE_ERR_STREAM_STATE: { message: 'frame not allowed in the stream state', wireCode: 0x000e },
  SOCKGATE_ERR_STREAM_RATE_LIMITED: { message: 'streams opened or reset too fast', wireCode: 0x000f },
  SOCKGATE_ERR_STREAM_UNKNOWN: { message: 'unknown stream error code', wireCode: 0xffff },

  // 7.2 session codes
  SOCKGATE_ERR_SESSION_CLOSED: { message: 'session closed', closeCode: 1000 },
  SOCKGATE_ERR_SESSION_GOING_AWAY: { message: 'the peer is going away', closeCode: 1001 },
  SOCKGATE_ERR_PROTOCOL: { message: 'protocol error', closeCode: 1002 },
  SOCKGATE_ERR_PROTOCOL_TEXT_FRAME: { message: 'text messages are not accepted', closeCode: 1003 },
  SOCKGATE_ERR_SESSION_LOST: { message: 'the connection was lost', closeCode: 1006 },
  SOCKGATE_ERR_SESSION_POLICY: { message: 'closed by policy', closeCode: 1008 },
  SOCKGATE_ERR_PROTOCOL_TOO_BIG: { message: 'message too big', closeCode: 1009 },
  SOCKGATE_ERR_INTERNAL: { message: 'internal error', closeCode: 1011 },
  SOCKGATE_ERR_SESSION_PING_TIMEOUT: { message: 'the peer did not answer a ping in time', closeCode: 4001 },
  SOCKGATE_ERR_SESSION_IDLE_TIMEOUT: { message: 'idle timeout', closeCode: 4002 },
  SOCKGATE_ERR_SESSION_DRAIN_TIMEOUT: { message: 'drain deadline passed', closeCode: 4003 },
  SOCKGATE_ERR_SESSION_IDS_EXHAUSTED: { message: 'no stream ids left on this session', closeCode: 4004 },
  SOCKGATE_ERR_SESSION_REPLACED: { message: 'a newer agent registered the same service', closeCode: 4005 },
  SOCKGATE_ERR_PROTOCOL_TRUNCATED: { message: 'frame truncated', closeCode: 1002 },
  SOCKGATE_ERR_PROTOCOL_BAD_TYPE: { message: 'unknown frame type', closeCode: 1002 },
  SOCKGATE_ERR_PROTOCOL_BAD_FLAGS: { message: 'reserved flags set', closeCode: 1002 },
  SOCKGATE_ERR_PROTOCOL_BAD_STREAM_ID: { message: 'bad stream id', closeCode: 1002 },
  SOCKGATE_ERR_PROTOCOL_BAD_LENGTH: { message: 'bad payload length', closeCode: 1002 },
  SOCKGATE_ERR_PROTOCOL_BAD_VALUE: { message: 'value out of range', closeCode: 1002 },

  // 7.3 local only
  SOCKGATE_ERR_CONFIG_INVALID: { message: 'invalid configuration' },
  SOCKGATE_ERR_SDK_NOT_CONNECTED: { message: 'the session is not connected' },
  SOCKGATE_ERR_SDK_HANDSHAKE: { message: 'the WebSocket upgrade was refused' },
  // 7.3 refused before the upgrade, with an HTTP status
  SOCKGATE_ERR_AUTH_MISSING: { message: 'no credentials were presented', httpStatus: 401 },
  SOCKGATE_ERR_AUTH_INVALID: { message: 'the credentials are not valid', httpStatus: 401 },
  SOCKGATE_ERR_AUTH_EXPIRED: { message: 'the credentials have expired', httpStatus: 401 },
  SOCKGATE_ERR_ORIGIN_FORBIDDEN: { message: 'the request Origin or Host is not allowed', httpStatus: 403 },
  SOCKGATE_ERR_LIMIT_SESSIONS: { message: 'the gateway has too many sessions', httpStatus: 503 },
  SOCKGATE_ERR_LIMIT_SESSIONS_PER_IP: { message: 'too many sessions from this address', httpStatus: 429 },
  SOCKGATE_ERR_AGENT_BAD_SERVICES: { message: 'the services an agent registers are missing or malformed', httpStatus: 400 },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

const byWireCode = new Map<number, ErrorCode>();
const byCloseCode = new Map<number, ErrorCode>();
for (const [code, spec] of Object.entries(ERRORS) as [ErrorCode, ErrorSpec][]) {
  if (spec.wireCode !== undefined) byWireCode.set(spec.wireCode, code);
  // The first code registered for a close code is the general one (e.g. 1002 -> SOCKGATE_ERR_PROTOCOL).
  if (spec.closeCode !== undefined && !byCloseCode.has(spec.closeCode)) byCloseCode.set(spec.closeCode, code);
}

export class SockgateError extends Error {
  readonly code: ErrorCode;
  /** WebSocket close code when this error ends a session. */
  readonly closeCode: number | undefined;
  /** u16 wire code when this error ends a stream. */
  readonly wireCode: number | undefined;
  /** HTTP status when this error refuses a WebSocket upgrade. */
  readonly httpStatus: number | undefined;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    const spec: ErrorSpec = ERRORS[code];
    super(detail ? `${spec.message}: ${detail}` : spec.message, options);
    this.name = 'SockgateError';
    this.code = code;
    this.closeCode = spec.closeCode;
    this.wireCode = spec.wireCode;
    this.httpStatus = spec.httpStatus;
  }
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERRORS, code);
}

/** The code a received wire code stands for (PROTOCOL 7: unknown codes read as SOCKGATE_ERR_STREAM_UNKNOWN). */
export function codeFromWire(wireCode: number): ErrorCode {
  return byWireCode.get(wireCode) ?? 'SOCKGATE_ERR_STREAM_UNKNOWN';
}

/** The code a WebSocket close code stands for. */
export function codeFromClose(closeCode: number): ErrorCode {
  if (byCloseCode.has(closeCode)) return byCloseCode.get(closeCode)!;
  return closeCode >= 4000 && closeCode <= 4999 ? 'SOCKGATE_ERR_SESSION_POLICY' : 'SOCKGATE_ERR_SESSION_LOST';
}

/**
 * The wire code to send for an error ending a stream. Anything that is not a SockgateError with a wire code is
 * an internal bug and goes out as "internal": a plain Error must never look like a normal close.
 */
export function wireCodeOf(err: unknown): number {
  if (err instanceof SockgateError && err.wireCode !== undefined) return err.wireCode;
  return ERRORS.SOCKGATE_ERR_STREAM_INTERNAL.wireCode;
}

/** The WebSocket close code for an error ending a session; internal for anything not ours. */
export function closeCodeOf(err: unknown): number {
  if (err instanceof SockgateError && err.closeCode !== undefined) return err.closeCode;
  return ERRORS.SOCKGATE_ERR_INTERNAL.closeCode;
}

/** Map a Node-style errno (kept as text so shared/ stays platform-neutral) to a backend error code. */
export function backendCodeForErrno(errno: string | undefined, phase: 'connect' | 'open'): ErrorCode {
  switch (errno) {
    case 'ECONNREFUSED':
      return 'SOCKGATE_ERR_BACKEND_REFUSED';
    case 'ETIMEDOUT':
      return phase === 'connect' ? 'SOCKGATE_ERR_BACKEND_TIMEOUT' : 'SOCKGATE_ERR_BACKEND_RESET';
    case 'ENOENT':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EHOSTDOWN':
    case 'EACCES':
    case 'EADDRNOTAVAIL':
    case 'ENOTSOCK':
    case 'EPERM':
      return phase === 'connect' ? 'SOCKGATE_ERR_BACKEND_UNREACHABLE' : 'SOCKGATE_ERR_BACKEND_RESET';
    default:
      return phase === 'connect' ? 'SOCKGATE_ERR_BACKEND_UNREACHABLE' : 'SOCKGATE_ERR_BACKEND_RESET';
  }
}
