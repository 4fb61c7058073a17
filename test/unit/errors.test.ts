/** shared/errors.ts: the registry and the mapping between error codes, wire codes and close codes. */
import { describe, expect, it } from 'vitest';
import {
  ERRORS,
  SockgateError,
  backendCodeForErrno,
  closeCodeOf,
  codeFromClose,
  codeFromWire,
  isErrorCode,
  wireCodeOf,
  type ErrorCode,
} from '../../shared/errors.js';

type Spec = { message: string; wireCode?: number; closeCode?: number };
const entries = Object.entries(ERRORS) as [ErrorCode, Spec][];

describe('the registry', () => {
  it('wire codes are unique u16 values', () => {
    const wire = entries.filter(([, s]) => s.wireCode !== undefined).map(([, s]) => s.wireCode!);
    expect(new Set(wire).size).toBe(wire.length);
    for (const w of wire) expect(Number.isInteger(w) && w >= 0 && w <= 0xffff).toBe(true);
  });

  it('close codes are ones a WebSocket may carry (1000-1011 registered, 4000-4999 ours)', () => {
    for (const [code, s] of entries) {
      if (s.closeCode === undefined) continue;
      const ok = (s.closeCode >= 1000 && s.closeCode <= 1011) || (s.closeCode >= 4000 && s.closeCode <= 4999);
      expect(ok, code).toBe(true);
    }
  });

  it('no code has both a wire code and a close code, and each has a message', () => {
    for (const [code, s] of entries) {
      expect(s.wireCode !== undefined && s.closeCode !== undefined, code).toBe(false);
      expect(s.message.length, code).toBeGreaterThan(0);
    }
  });

  it('codes are named SOCKGATE_ERR_<AREA>_<WHAT>', () => {
    for (const [code] of entries) expect(code).toMatch(/^SOCKGATE_ERR_[A-Z]+(_[A-Z0-9]+)*$/);
  });

  it('isErrorCode accepts registry codes only', () => {
    expect(isErrorCode('SOCKGATE_ERR_STREAM_CLOSED')).toBe(true);
    expect(isErrorCode('SOCKGATE_ERR_NOPE')).toBe(false);
    expect(isErrorCode('toString')).toBe(false);
    expect(isErrorCode(undefined)).toBe(false);
  });
});

describe('SockgateError', () => {
  it('carries its code, its numbers, a message with the detail and the cause', () => {
    const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
    const err = new SockgateError('SOCKGATE_ERR_BACKEND_REFUSED', 'ECONNREFUSED: 127.0.0.1:9', { cause });
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('SockgateError');
    expect(err.code).toBe('SOCKGATE_ERR_BACKEND_REFUSED');
    expect(err.wireCode).toBe(3);
    expect(err.closeCode).toBeUndefined();
    expect(err.message).toBe('the backend refused the connection: ECONNREFUSED: 127.0.0.1:9');
    expect(err.cause).toBe(cause);
  });

  it('without a detail the message is the registry message', () => {
    expect(new SockgateError('SOCKGATE_ERR_PROTOCOL').message).toBe(ERRORS.SOCKGATE_ERR_PROTOCOL.message);
    expect(new SockgateError('SOCKGATE_ERR_PROTOCOL').closeCode).toBe(1002);
  });
});

describe('wire codes', () => {
  it('every stream code maps to its wire code and back', () => {
    for (const [code, s] of entries) {
      if (s.wireCode === undefined) continue;
      expect(wireCodeOf(new SockgateError(code))).toBe(s.wireCode);
      expect(codeFromWire(s.wireCode)).toBe(code);
    }
  });

  it('anything that is not a SockgateError with a wire code goes out as internal, never as a normal close', () => {
    const internal = ERRORS.SOCKGATE_ERR_STREAM_INTERNAL.wireCode;
    expect(wireCodeOf(new Error('bug'))).toBe(internal);
    expect(wireCodeOf(new TypeError('x is undefined'))).toBe(internal);
    expect(wireCodeOf(undefined)).toBe(internal);
    expect(wireCodeOf('string')).toBe(internal);
    expect(wireCodeOf({ code: 'SOCKGATE_ERR_STREAM_CLOSED', wireCode: 0 })).toBe(internal);
    // A session error has no wire code: ending a stream with it is internal too.
    expect(wireCodeOf(new SockgateError('SOCKGATE_ERR_PROTOCOL'))).toBe(internal);
    expect(internal).not.toBe(ERRORS.SOCKGATE_ERR_STREAM_CLOSED.wireCode);
  });

  it('an unknown wire code reads as SOCKGATE_ERR_STREAM_UNKNOWN (PROTOCOL 7)', () => {
    for (const w of [0x0010, 0x1234, 0x8000, 0xfffe]) expect(codeFromWire(w)).toBe('SOCKGATE_ERR_STREAM_UNKNOWN');
  });
});

describe('close codes', () => {
  it('every session code maps to its close code', () => {
    for (const [code, s] of entries) {
      if (s.closeCode === undefined) continue;
      expect(closeCodeOf(new SockgateError(code))).toBe(s.closeCode);
    }
  });

  it('a close code reads as the general code for it (1002 is SOCKGATE_ERR_PROTOCOL, not a decoder code)', () => {
    expect(codeFromClose(1000)).toBe('SOCKGATE_ERR_SESSION_CLOSED');
    expect(codeFromClose(1001)).toBe('SOCKGATE_ERR_SESSION_GOING_AWAY');
    expect(codeFromClose(1002)).toBe('SOCKGATE_ERR_PROTOCOL');
    expect(codeFromClose(1003)).toBe('SOCKGATE_ERR_PROTOCOL_TEXT_FRAME');
    expect(codeFromClose(1006)).toBe('SOCKGATE_ERR_SESSION_LOST');
    expect(codeFromClose(1008)).toBe('SOCKGATE_ERR_SESSION_POLICY');
    expect(codeFromClose(1009)).toBe('SOCKGATE_ERR_PROTOCOL_TOO_BIG');
    expect(codeFromClose(1011)).toBe('SOCKGATE_ERR_INTERNAL');
    expect(codeFromClose(4001)).toBe('SOCKGATE_ERR_SESSION_PING_TIMEOUT');
    expect(codeFromClose(4004)).toBe('SOCKGATE_ERR_SESSION_IDS_EXHAUSTED');
  });

  it('unknown close codes: 4000-4999 read as policy, anything else as lost', () => {
    expect(codeFromClose(4999)).toBe('SOCKGATE_ERR_SESSION_POLICY');
    expect(codeFromClose(4000)).toBe('SOCKGATE_ERR_SESSION_POLICY');
    expect(codeFromClose(1005)).toBe('SOCKGATE_ERR_SESSION_LOST');
    expect(codeFromClose(3000)).toBe('SOCKGATE_ERR_SESSION_LOST');
  });

  it('anything that is not a SockgateError with a close code closes as internal (1011)', () => {
    expect(closeCodeOf(new Error('bug'))).toBe(1011);
    expect(closeCodeOf(undefined)).toBe(1011);
    expect(closeCodeOf(new SockgateError('SOCKGATE_ERR_STREAM_CLOSED'))).toBe(1011);
    expect(closeCodeOf({ closeCode: 1000 })).toBe(1011);
  });
});

describe('backendCodeForErrno', () => {
  it('keeps refused, timeout and unreachable apart while connecting', () => {
    expect(backendCodeForErrno('ECONNREFUSED', 'connect')).toBe('SOCKGATE_ERR_BACKEND_REFUSED');
    expect(backendCodeForErrno('ETIMEDOUT', 'connect')).toBe('SOCKGATE_ERR_BACKEND_TIMEOUT');
    for (const e of ['ENOENT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EACCES', undefined, 'EWHATEVER']) {
      expect(backendCodeForErrno(e, 'connect'), String(e)).toBe('SOCKGATE_ERR_BACKEND_UNREACHABLE');
    }
  });

  it('after the connection was open everything but a refusal is a reset', () => {
    for (const e of ['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOENT', undefined]) {
      expect(backendCodeForErrno(e, 'open'), String(e)).toBe('SOCKGATE_ERR_BACKEND_RESET');
    }
  });
});
