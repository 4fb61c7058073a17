/**
 * Typed events on the platform's EventTarget (browsers and Node 20 both have it), so listeners get
 * addEventListener's options ({ once, signal }) and its error reporting for free.
 */
import type { SockgateError } from '../shared/errors.js';

/** The session ended. `code` and `reason` are the WebSocket close code and reason sent or received. */
export class SessionCloseEvent extends Event {
  constructor(
    readonly code: number,
    readonly reason: string,
    /** Why the session ended, when it was not a normal close (1000 or 1001). Branch on `error.code`. */
    readonly error: SockgateError | undefined,
  ) {
    super('close');
  }
}

/** The gateway will accept no new streams (PROTOCOL 6.2); sockets already open go on until they finish. */
export class SessionGoAwayEvent extends Event {
  constructor(readonly error: SockgateError) {
    super('goaway');
  }
}

/** The session is ending because of an error; a `close` event follows. */
export class SessionErrorEvent extends Event {
  constructor(readonly error: SockgateError) {
    super('error');
  }
}

export interface SessionEventMap {
  close: SessionCloseEvent;
  goaway: SessionGoAwayEvent;
  error: SessionErrorEvent;
}

type Listener<E> = ((event: E) => void) | { handleEvent(event: E): void };

/** EventTarget whose addEventListener / removeEventListener know the event type of each name in M. */
export class TypedEventTarget<M extends { [K in keyof M]: Event }> extends EventTarget {
  override addEventListener<K extends keyof M & string>(
    type: K,
    listener: Listener<M[K]> | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener as EventListenerOrEventListenerObject | null, options);
  }

  override removeEventListener<K extends keyof M & string>(
    type: K,
    listener: Listener<M[K]> | null,
    options?: boolean | EventListenerOptions,
  ): void {
    super.removeEventListener(type, listener as EventListenerOrEventListenerObject | null, options);
  }

  /** @internal Dispatch one of our own events. */
  protected emit(event: M[keyof M]): void {
    this.dispatchEvent(event);
  }
}
