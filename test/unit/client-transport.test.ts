/** client/transport.ts and client/events.ts: the pieces that differ between browsers and ws. */
import { describe, expect, expectTypeOf, it } from 'vitest';
import WsWebSocket from 'ws';
import { SessionCloseEvent, SessionGoAwayEvent, TypedEventTarget, type SessionEventMap } from '../../client/events.js';
import { closeWebSocket, messageData, WebSocketTransport, type WebSocketConstructor, type WebSocketLike } from '../../client/transport.js';
import { HEADER_BYTES } from '../../shared/constants.js';
import { encodeData, encodeWindow } from '../../shared/encode.js';
import { SockgateError } from '../../shared/errors.js';
import { bufferless } from '../helpers/frames.js';

/** Closes the way a browser's WebSocket does: scripts may send only 1000 and 3000-4999, reasons up to 123 bytes. */
function browserLikeSocket(): WebSocketLike & { closedWith?: [number | undefined, string | undefined] } {
  const ws = {
    binaryType: 'arraybuffer',
    bufferedAmount: 0,
    protocol: 'sockgate.v1',
    readyState: 1,
    closedWith: undefined as [number | undefined, string | undefined] | undefined,
    send() {},
    addEventListener() {},
    close(code?: number, reason?: string) {
      if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) throw new DOMException('bad code', 'InvalidAccessError');
      if (reason !== undefined && new TextEncoder().encode(reason).length > 123) throw new DOMException('long reason', 'SyntaxError');
      ws.closedWith = [code, reason];
    },
  };
  return ws;
}

describe('WebSocketConstructor', () => {
  it('accepts the browser WebSocket class and ws without a cast (checked by tsc)', () => {
    expectTypeOf(globalThis.WebSocket).toExtend<WebSocketConstructor>();
    expectTypeOf(WsWebSocket).toExtend<WebSocketConstructor>();
  });
});

describe('closeWebSocket', () => {
  it('sends codes a browser allows as they are', () => {
    const ws = browserLikeSocket();
    closeWebSocket(ws, 4001, 'ping timeout');
    expect(ws.closedWith).toEqual([4001, 'ping timeout']);
  });

  it('falls back to 1000 with the real code in the reason where a browser refuses the code', () => {
    const ws = browserLikeSocket();
    closeWebSocket(ws, 1002, 'protocol error');
    expect(ws.closedWith).toEqual([1000, '1002 protocol error']);
  });

  it('cuts a long reason to 123 bytes of UTF-8 without splitting a character', () => {
    const ws = browserLikeSocket();
    closeWebSocket(ws, 1000, 'é'.repeat(100));
    expect(ws.closedWith?.[1]).toBe('é'.repeat(61));
  });
});

describe('messageData', () => {
  it('reads ArrayBuffers and views as bytes, text as text, and nothing else', () => {
    const buf = new Uint8Array([1, 2, 3, 4]).buffer;
    expect(messageData(buf)).toEqual(new Uint8Array([1, 2, 3, 4]));
    expect(messageData(new Uint8Array(buf, 1, 2))).toEqual(new Uint8Array([2, 3]));
    expect(messageData('text')).toBe('text');
    expect(messageData(new Blob([]))).toBeUndefined();
  });
});

describe('TypedEventTarget', () => {
  class Target extends TypedEventTarget<SessionEventMap> {
    fire(ev: SessionEventMap[keyof SessionEventMap]): void {
      this.emit(ev);
    }
  }

  it('types each listener by event name and honours once', () => {
    const t = new Target();
    const codes: number[] = [];
    t.addEventListener(
      'close',
      (ev) => {
        expectTypeOf(ev).toEqualTypeOf<SessionCloseEvent>();
        codes.push(ev.code);
      },
      { once: true },
    );
    t.fire(new SessionCloseEvent(1000, '', undefined));
    t.fire(new SessionCloseEvent(1001, '', undefined));
    expect(codes).toEqual([1000]);
  });

  it('removes listeners', () => {
    const t = new Target();
    let n = 0;
    const listener = (): void => void n++;
    t.addEventListener('goaway', listener);
    t.removeEventListener('goaway', listener);
    t.fire(new SessionGoAwayEvent(new SockgateError('SOCKGATE_ERR_STREAM_SHUTTING_DOWN')));
    expect(n).toBe(0);
  });
});

describe('WebSocketTransport.send', () => {
  it("asks a WebSocket that can batch a turn's writes to do so before every send, and works without it", () => {
    const calls: string[] = [];
    const batching = { ...browserLikeSocket(), corkTurn: (deferrable?: boolean) => calls.push(`cork ${deferrable}`), send: () => calls.push('send') };
    const transport = new WebSocketTransport(batching);
    transport.send(new Uint8Array(7));
    transport.send(new Uint8Array(7), true); // a WINDOW: it may wait for the loop's pending I/O
    expect(calls).toEqual(['cork false', 'send', 'cork true', 'send']);
    const plain = { ...browserLikeSocket(), send: () => calls.push('plain send') };
    new WebSocketTransport(plain).send(new Uint8Array(7));
    expect(calls.at(-1)).toBe('plain send');
  });

  it('never asks a control frame for its ArrayBuffer (V8 would move it off the heap), and recycles DATA frames', () => {
    const sent: string[] = [];
    let callback: (() => void) | undefined;
    const nodeLike = {
      ...browserLikeSocket(),
      on() {}, // send callbacks, as ws has: DATA frames are recycled
      sendSmall: (m: Uint8Array) => (sent.push(`small ${m.length}`), true),
      send: (m: Uint8Array, done?: () => void) => (sent.push(`send ${m.length}`), (callback = done)),
    };
    const transport = new WebSocketTransport(nodeLike);
    transport.send(bufferless(encodeWindow(1, 1000, 262_144)), true);
    const frame = transport.frameBuffer(HEADER_BYTES + 20_000)!;
    transport.send(encodeData(3, new Uint8Array(20_000), frame));
    expect(sent).toEqual(['small 18', 'send 20006']);
    callback!(); // ws wrote it: the frame's memory is taken again next
    expect(transport.frameBuffer(HEADER_BYTES + 20_000)!.buffer).toBe(frame.buffer);
  });
});
