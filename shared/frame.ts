/** PROTOCOL 3: the frames of sockgate v1, as decoded values. Payload bytes are views, never copies. */
import { FrameType } from './constants.js';

/** PROTOCOL 3.1: one option of OPEN / OPEN_OK. */
export interface FrameOption {
  readonly tag: number;
  readonly value: Uint8Array;
}

export interface OpenFrame {
  readonly type: typeof FrameType.OPEN;
  readonly streamId: number;
  readonly route: string;
  readonly options: readonly FrameOption[];
}
export interface OpenOkFrame {
  readonly type: typeof FrameType.OPEN_OK;
  readonly streamId: number;
  readonly options: readonly FrameOption[];
}
export interface OpenFailFrame {
  readonly type: typeof FrameType.OPEN_FAIL;
  readonly streamId: number;
  readonly code: number;
  readonly reason: string;
}
export interface DataFrame {
  readonly type: typeof FrameType.DATA;
  readonly streamId: number;
  readonly data: Uint8Array;
}
export interface WindowFrame {
  readonly type: typeof FrameType.WINDOW;
  readonly streamId: number;
  /** Cumulative bytes of this stream the receiver has consumed (at most 2^53 - 1). */
  readonly consumed: number;
  /** Receive window offered from `consumed` on; the new credit limit is consumed + window. */
  readonly window: number;
}
export interface FinFrame {
  readonly type: typeof FrameType.FIN;
  readonly streamId: number;
}
export interface ResetFrame {
  readonly type: typeof FrameType.RESET;
  readonly streamId: number;
  readonly code: number;
  readonly reason: string;
}
export interface PingFrame {
  readonly type: typeof FrameType.PING;
  readonly streamId: 0;
  readonly opaque: Uint8Array;
}
export interface PongFrame {
  readonly type: typeof FrameType.PONG;
  readonly streamId: 0;
  readonly opaque: Uint8Array;
}
export interface GoAwayFrame {
  readonly type: typeof FrameType.GOAWAY;
  readonly streamId: 0;
  readonly code: number;
  readonly reason: string;
}

export type Frame =
  | OpenFrame
  | OpenOkFrame
  | OpenFailFrame
  | DataFrame
  | WindowFrame
  | FinFrame
  | ResetFrame
  | PingFrame
  | PongFrame
  | GoAwayFrame;
