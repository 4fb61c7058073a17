/**
 * PROTOCOL 5: flow-control arithmetic, kept apart from I/O so it can be tested on its own.
 * Credit is cumulative (bytes since the stream began), which keeps at most one window unacknowledged (5.3).
 */
import { INITIAL_WINDOW, MAX_WINDOW } from './constants.js';

/** The sending side of one direction: how much we may still send. */
export class SendCredit {
  /** Total DATA bytes sent. */
  sent = 0;
  /** The peer's current limit (PROTOCOL 5.1). */
  limit = INITIAL_WINDOW;

  get available(): number {
    return this.limit - this.sent;
  }

  take(n: number): void {
    this.sent += n;
  }

  /**
   * Apply a WINDOW frame (PROTOCOL 5.2). Returns a description of the rule broken, or undefined when the
   * update is valid. A valid update never lowers the limit.
   */
  update(consumed: number, window: number): string | undefined {
    if (window < INITIAL_WINDOW || window > MAX_WINDOW) return `window ${window} outside ${INITIAL_WINDOW}..${MAX_WINDOW}`;
    if (consumed > this.sent) return `consumed ${consumed} > sent ${this.sent}`;
    const limit = consumed + window;
    if (limit < this.limit) return `limit lowered from ${this.limit} to ${limit}`;
    this.limit = limit;
    return undefined;
  }
}

export interface WindowUpdate {
  readonly consumed: number;
  readonly window: number;
}

/** The receiving side of one direction: what we have granted and when to grant more. */
export class ReceiveWindow {
  /** Total DATA bytes received. */
  received = 0;
  /** Total bytes consumed (written onward without backpressure). */
  consumed = 0;
  /** The window currently offered; grows by auto-tuning up to maxWindow. */
  window = INITIAL_WINDOW;
  /** The limit granted to the peer: consumed-at-last-update + window. */
  limit = INITIAL_WINDOW;
  private advertisedConsumed = 0;
  private lastUpdateAt = -Infinity;

  /** @param maxWindow largest window this receiver will offer, in bytes (INITIAL_WINDOW..MAX_WINDOW). */
  constructor(readonly maxWindow: number = INITIAL_WINDOW) {
    if (!(maxWindow >= INITIAL_WINDOW && maxWindow <= MAX_WINDOW)) {
      throw new RangeError(`maxWindow ${maxWindow} outside ${INITIAL_WINDOW}..${MAX_WINDOW}`);
    }
  }

  /** Account for n received bytes; false when they go past the limit (PROTOCOL 5.4), and then nothing changes. */
  receive(n: number): boolean {
    if (this.received + n > this.limit) return false;
    this.received += n;
    return true;
  }

  /** Bytes received but not yet consumed: what this receiver is holding. */
  get held(): number {
    return this.received - this.consumed;
  }

  /**
   * Record n bytes consumed. Returns the WINDOW to send once half the window has been consumed since the last
   * one (PROTOCOL 5.5), else undefined. With a known round-trip time, a half window consumed within one RTT
   * (a whole window within two) doubles the window, up to maxWindow and `ceiling`.
   *
   * `ceiling` is this stream's share of a session-wide budget (PROTOCOL 5.7): a window above it halves at each
   * update until it fits (never below INITIAL_WINDOW), so streams that grew while they were alone give the room
   * back when others start. Halving keeps the limit from decreasing: at least half a window was consumed since it
   * was granted.
   */
  consume(n: number, now: number, rttMs: number | undefined, ceiling: number = this.maxWindow): WindowUpdate | undefined {
    this.consumed = Math.min(this.consumed + n, this.received);
    if (this.consumed - this.advertisedConsumed < this.window / 2) return undefined;
    const cap = Math.max(INITIAL_WINDOW, Math.floor(Math.min(ceiling, this.maxWindow)));
    if (this.window > cap) {
      this.window = Math.max(cap, Math.floor(this.window / 2));
    } else if (rttMs !== undefined && now - this.lastUpdateAt < rttMs && this.window < cap) {
      this.window = Math.min(this.window * 2, cap);
    }
    this.lastUpdateAt = now;
    this.advertisedConsumed = this.consumed;
    this.limit = this.consumed + this.window;
    return { consumed: this.consumed, window: this.window };
  }
}
