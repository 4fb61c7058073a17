import { describe, expect, it } from 'vitest';
import { sessionPair } from '../helpers/session-pair.js';
import { INITIAL_WINDOW } from '../../shared/constants.js';

describe('session engine smoke', () => {
  it('opens, echoes with flow control and half-closes', async () => {
    const pair = sessionPair({}, {
      onStream(stream) {
        stream.onData = (chunk) => {
          stream.write(chunk);
          stream.consume(chunk.length);
        };
        stream.onEnd = () => stream.end();
        stream.accept();
      },
    });
    const s = pair.client.open('echo');
    const got: Uint8Array[] = [];
    let ended = false;
    let closed: unknown = 'pending';
    s.onData = (c) => {
      got.push(c.slice());
      s.consume(c.length);
    };
    s.onEnd = () => (ended = true);
    s.onClose = (e) => (closed = e);
    const total = INITIAL_WINDOW * 3 + 123;
    const payload = new Uint8Array(total).map((_, i) => i % 251);
    s.write(payload);
    s.end();
    for (let i = 0; i < 20 && !ended; i++) await pair.settle();
    const joined = new Uint8Array(got.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of got) { joined.set(c, at); at += c.length; }
    expect(joined).toEqual(payload);
    expect(ended).toBe(true);
    expect(closed).toBeUndefined();
    expect(pair.client.streamCount).toBe(0);
    expect(pair.server.streamCount).toBe(0);
  });
});
