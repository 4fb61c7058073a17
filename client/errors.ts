/**
 * The SDK's errors: the one registry from shared/ (PROTOCOL 7). Branch on `err.code`, never on `instanceof`
 * (two copies of the SDK in one page, or an error crossing a realm, break instanceof) or on the message.
 */
import { ERRORS, SockgateError, isErrorCode, type ErrorCode } from '../shared/errors.js';

export { ERRORS, SockgateError, isErrorCode, type ErrorCode };

/** True for any error carrying a sockgate code, from this copy of the SDK or another one. */
export function isSockgateError(err: unknown): err is SockgateError {
  return typeof err === 'object' && err !== null && isErrorCode((err as { code?: unknown }).code);
}

/** A SockgateError for anything thrown by code that is not ours (a bug, or a platform error). */
export function toSockgateError(err: unknown, code: ErrorCode = 'SOCKGATE_ERR_INTERNAL'): SockgateError {
  if (err instanceof SockgateError) return err;
  return new SockgateError(code, err instanceof Error ? err.message : String(err), { cause: err });
}
