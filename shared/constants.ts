/**
 * Wire constants of the sockgate protocol, version 1. Each value is pinned by
 * test/unit/protocol-doc.test.ts against docs/PROTOCOL.md section 8.
 */

/** PROTOCOL 1.2: the WebSocket subprotocol that names this version. */
export const SUBPROTOCOL = 'sockgate.v1';

/** PROTOCOL 1.2: an offered subprotocol of this prefix carries a bearer token (base64url); it is never selected. */
export const BEARER_SUBPROTOCOL_PREFIX = 'sockgate.bearer.';

/** PROTOCOL 2: type (u8), flags (u8), stream id (u32). */
export const HEADER_BYTES = 6;

/** PROTOCOL 3: a DATA frame carries 1 to 65,536 bytes. */
export const MAX_DATA_PAYLOAD = 65_536;

/** PROTOCOL 1.4: the largest message a peer may send (header + largest DATA payload). */
export const MAX_FRAME_BYTES = HEADER_BYTES + MAX_DATA_PAYLOAD;

/** PROTOCOL 3.1: the largest OPEN payload (route name and options). */
export const MAX_OPEN_PAYLOAD = 1024;

/** PROTOCOL 3.3: the longest reason in OPEN_FAIL, RESET or GOAWAY, in UTF-8 bytes. */
export const MAX_REASON_BYTES = 512;

/** PROTOCOL 3.2: the longest route name, in bytes. */
export const MAX_ROUTE_NAME_BYTES = 255;

/** PROTOCOL 5.1: every stream starts with this much credit in each direction, in bytes (256 KiB). */
export const INITIAL_WINDOW = 262_144;

/** PROTOCOL 5.2: no receive window may be larger than this, in bytes (16 MiB). */
export const MAX_WINDOW = 16_777_216;

/** PROTOCOL 6.1: PING and PONG carry exactly 8 opaque bytes. */
export const PING_PAYLOAD_BYTES = 8;

/** PROTOCOL 4.1: stream ids are u32. */
export const MAX_STREAM_ID = 0xffff_ffff;

/** PROTOCOL 11.2: the endpoint an agent dials (reverse tunnels). */
export const AGENT_PATH = '/agent';

/** PROTOCOL 11.3: the query parameter of the agent's upgrade request that lists the services it serves. */
export const AGENT_SERVICES_PARAM = 'services';

/** PROTOCOL 11.3: the most services one agent session may register. */
export const MAX_AGENT_SERVICES = 64;

/** PROTOCOL 3.2: the characters a route name may use. */
export const ROUTE_NAME_PATTERN = /^[A-Za-z0-9._-]{1,255}$/;

/** PROTOCOL 3: frame types. */
export const FrameType = {
  /** "OPEN: route name length (u8, 1..255), route name (UTF-8), options" */
  OPEN: 0x01,
  /** "OPEN_OK: options; none defined in version 1, so empty" */
  OPEN_OK: 0x02,
  /** "OPEN_FAIL: code (u16), reason (UTF-8, at most 512 bytes)" */
  OPEN_FAIL: 0x03,
  /** "DATA: 1 to 65,536 bytes of stream data" */
  DATA: 0x04,
  /** "WINDOW: consumed (u64, at most 2^53 - 1), window (u32)" */
  WINDOW: 0x05,
  /** "FIN: I will send no more DATA on this stream" */
  FIN: 0x06,
  /** "RESET: code (u16), reason" — ends both directions at once. */
  RESET: 0x07,
  /** "PING: opaque (8 bytes)" on stream 0. */
  PING: 0x08,
  /** "PONG: the opaque 8 bytes of the PING it answers" on stream 0. */
  PONG: 0x09,
  /** "GOAWAY: code (u16), reason" — the sender accepts no new streams. */
  GOAWAY: 0x0a,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Frame types whose stream id is 0 (PROTOCOL 2.3). */
export function isSessionFrameType(type: number): boolean {
  return type === FrameType.PING || type === FrameType.PONG || type === FrameType.GOAWAY;
}

/** PROTOCOL 2.2: version 1 defines no flags. */
export const KNOWN_FLAGS = 0x00;

/** PROTOCOL 3.1: an option tag with this bit set is critical. */
export const CRITICAL_OPTION_BIT = 0x80;
