import http from 'node:http';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ConnectionCounter,
  IdleTimer,
  LIMIT_DEFAULTS,
  LIMIT_RANGES,
  TokenBucket,
  applyHandshakeTimeout,
  handshakeHttpOptions,
  ipKey,
  resolveLimits,
  type Release,
} from '../../server/limits.js';
import { MAX_FRAME_BYTES } from '../../shared/constants.js';
import { SockgateError } from '../../shared/errors.js';

describe('LIMIT_DEFAULTS and resolveLimits', () => {
  it('pins the documented defaults', () => {
    expect(LIMIT_DEFAULTS).toEqual({
      maxMessageBytes: 1_048_576,
      maxSessions: 10_000,
      maxSessionsPerIp: 100,
      maxStreamsPerSession: 256,
      opensPerSecond: 100,
      opensBurst: 200,
      handshakeTimeoutMs: 10_000,
      idleTimeoutMs: 0,
      openTimeoutMs: 10_000,
      maxWindowBytes: 4_194_304,
      maxSessionWindowBytes: 16_777_216,
      maxTransportBufferedBytes: 1_048_576,
      keepaliveIntervalMs: 30_000,
      keepaliveTimeoutMs: 10_000,
      drainTimeoutMs: 30_000,
    });
  });

  it('merges given keys over the defaults', () => {
    expect(resolveLimits(undefined)).toEqual(LIMIT_DEFAULTS);
    expect(resolveLimits({ maxSessions: 5, idleTimeoutMs: 60_000 })).toEqual({ ...LIMIT_DEFAULTS, maxSessions: 5, idleTimeoutMs: 60_000 });
  });

  it('names the bad key', () => {
    const cases: [unknown, RegExp][] = [
      [{ maxSessions: 0 }, /^invalid configuration: limits\.maxSessions: must be at least 1 \(sessions\)$/],
      [{ maxSessions: 1.5 }, /limits\.maxSessions/],
      [{ opensPerSecond: 0 }, /limits\.opensPerSecond/],
      [{ idleTimeoutMs: -1 }, /limits\.idleTimeoutMs/],
      [{ handshakeTimeoutMs: 2 ** 31 }, /limits\.handshakeTimeoutMs/],
      [{ maxSesions: 3 }, /limits/],
      [{ openTimeoutMs: '10s' }, /limits\.openTimeoutMs/],
    ];
    for (const [input, message] of cases) {
      let caught: unknown;
      try {
        resolveLimits(input as never);
      } catch (err) {
        caught = err;
      }
      expect((caught as SockgateError).code, JSON.stringify(input)).toBe('SOCKGATE_ERR_CONFIG_INVALID');
      expect((caught as Error).message).toMatch(message);
    }
  });

  it('keeps maxMessageBytes at or above one mux frame, and every default inside its range', () => {
    expect(() => resolveLimits({ maxMessageBytes: MAX_FRAME_BYTES - 1 })).toThrow(/limits\.maxMessageBytes: must be at least 65542 \(bytes\)/);
    expect(resolveLimits({ maxMessageBytes: MAX_FRAME_BYTES }).maxMessageBytes).toBe(MAX_FRAME_BYTES);
    for (const [key, [min, max]] of Object.entries(LIMIT_RANGES)) {
      const value = LIMIT_DEFAULTS[key as keyof typeof LIMIT_DEFAULTS];
      expect(value, key).toBeGreaterThanOrEqual(min);
      expect(value, key).toBeLessThanOrEqual(max);
    }
  });
});

describe('TokenBucket', () => {
  it('starts full, allows the burst, then the rate', () => {
    const b = new TokenBucket(100, 200);
    let granted = 0;
    for (let i = 0; i < 300; i++) if (b.take(0)) granted++;
    expect(granted).toBe(200);
    expect(b.take(5)).toBe(false); // 5 ms at 100/s is half a token
    expect(b.take(10)).toBe(true); // 10 ms is one token
    expect(b.take(10)).toBe(false);
    // A long quiet spell refills to the burst, not beyond.
    granted = 0;
    for (let i = 0; i < 300; i++) if (b.take(1_000_000)) granted++;
    expect(granted).toBe(200);
  });

  it('never grants more than burst + rate * elapsed, whatever the call pattern', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.5, max: 1000, noNaN: true }),
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.integer({ min: 0, max: 200 }), { maxLength: 200 }),
        (rate, burst, steps) => {
          const b = new TokenBucket(rate, burst);
          let t = 0;
          let granted = 0;
          for (const dt of steps) {
            t += dt;
            if (b.take(t)) granted++;
          }
          expect(granted).toBeLessThanOrEqual(burst + (rate * t) / 1000 + 1e-9);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('a clock going backwards refills nothing', () => {
    const b = new TokenBucket(1, 1);
    expect(b.take(10_000)).toBe(true);
    expect(b.take(0)).toBe(false);
    expect(b.take(500)).toBe(false);
    expect(b.take(1000)).toBe(true);
  });

  it('checks its arguments', () => {
    expect(() => new TokenBucket(0, 1)).toThrow(RangeError);
    expect(() => new TokenBucket(Number.POSITIVE_INFINITY, 1)).toThrow(RangeError);
    expect(() => new TokenBucket(1, 0)).toThrow(RangeError);
    expect(() => new TokenBucket(1, 1.5)).toThrow(RangeError);
  });
});

describe('ipKey', () => {
  it('IPv4 as is, mapped IPv4 as IPv4, IPv6 by /64, anything else as is', () => {
    expect(ipKey('192.0.2.1')).toBe('192.0.2.1');
    expect(ipKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(ipKey('::FFFF:c000:0201')).toBe('192.0.2.1');
    expect(ipKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(ipKey('2001:db8:1:2::99')).toBe('2001:db8:1:2::/64');
    expect(ipKey('2001:DB8:1:2:aaaa::1%eth0')).toBe('2001:db8:1:2::/64');
    expect(ipKey('::1')).toBe('0:0:0:0::/64');
    expect(ipKey('2001:db8::')).toBe('2001:db8:0:0::/64');
    expect(ipKey('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64');
    expect(ipKey('')).toBe('');
    expect(ipKey('not-an-ip')).toBe('not-an-ip');
  });
});

describe('ConnectionCounter', () => {
  it('enforces maxSessionsPerIp (429) and maxSessions (503), and the map returns to size 0', () => {
    const c = new ConnectionCounter({ maxSessions: 5, maxSessionsPerIp: 2 });
    const releases: Release[] = [];
    const take = (ip: string) => {
      const r = c.tryAcquire(ip);
      if (typeof r === 'function') releases.push(r);
      return r;
    };
    expect(typeof take('10.0.0.1')).toBe('function');
    expect(typeof take('10.0.0.1')).toBe('function');
    const perIp = take('10.0.0.1') as SockgateError;
    expect(perIp).toBeInstanceOf(SockgateError);
    expect(perIp.code).toBe('SOCKGATE_ERR_LIMIT_SESSIONS_PER_IP');
    expect(perIp.httpStatus).toBe(429);
    // Two addresses in one /64 are one client.
    expect(typeof take('2001:db8::1')).toBe('function');
    expect(typeof take('2001:db8::2')).toBe('function');
    expect((take('2001:db8::3') as SockgateError).code).toBe('SOCKGATE_ERR_LIMIT_SESSIONS_PER_IP');
    expect(typeof take('10.0.0.2')).toBe('function');
    const full = take('10.0.0.3') as SockgateError;
    expect(full.code).toBe('SOCKGATE_ERR_LIMIT_SESSIONS');
    expect(full.httpStatus).toBe(503);
    expect(c.total).toBe(5);
    expect(c.addresses).toBe(3);
    expect(c.countFor('2001:db8::77')).toBe(2);

    for (const r of releases) {
      r();
      r(); // a second call is harmless
    }
    expect(c.total).toBe(0);
    expect(c.addresses).toBe(0);
    expect(typeof c.tryAcquire('10.0.0.3')).toBe('function');
  });

  it('stays bounded by the live sessions under random acquire/release', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 20 })), { maxLength: 300 }), (ops) => {
        const c = new ConnectionCounter({ maxSessions: 30, maxSessionsPerIp: 3 });
        const live: Release[] = [];
        for (const [acquire, n] of ops) {
          if (acquire || live.length === 0) {
            const r = c.tryAcquire(`10.0.0.${n}`);
            if (typeof r === 'function') live.push(r);
          } else live.splice(n % live.length, 1)[0]!();
          expect(c.total).toBe(live.length);
          expect(c.addresses).toBeLessThanOrEqual(live.length);
          expect(c.total).toBeLessThanOrEqual(30);
        }
        for (const r of live) r();
        expect(c.addresses).toBe(0);
        expect(c.total).toBe(0);
      }),
      { numRuns: 100 },
    );
  });

  it('checks its options', () => {
    expect(() => new ConnectionCounter({ maxSessions: 0, maxSessionsPerIp: 1 })).toThrow(RangeError);
    expect(() => new ConnectionCounter({ maxSessions: 1, maxSessionsPerIp: 0.5 })).toThrow(RangeError);
  });
});

describe('IdleTimer', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires once after timeoutMs without a touch, and touches postpone it', () => {
    vi.useFakeTimers();
    const onIdle = vi.fn();
    const t = new IdleTimer(1000, onIdle, () => Date.now());
    vi.advanceTimersByTime(600);
    t.touch();
    vi.advanceTimersByTime(600);
    expect(onIdle).not.toHaveBeenCalled(); // 600 ms since the touch
    t.touch();
    vi.advanceTimersByTime(999);
    expect(onIdle).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(onIdle).toHaveBeenCalledTimes(1);
    expect(t.active).toBe(false);
    t.touch();
    vi.advanceTimersByTime(10_000);
    expect(onIdle).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('many touches cost no timers', () => {
    vi.useFakeTimers();
    const t = new IdleTimer(1000, () => {}, () => Date.now());
    for (let i = 0; i < 1000; i++) t.touch();
    expect(vi.getTimerCount()).toBe(1);
    t.stop();
  });

  it('stop() cancels; 0 disables', () => {
    vi.useFakeTimers();
    const onIdle = vi.fn();
    const t = new IdleTimer(1000, onIdle, () => Date.now());
    t.stop();
    t.stop();
    vi.advanceTimersByTime(5000);
    expect(onIdle).not.toHaveBeenCalled();
    const off = new IdleTimer(0, onIdle, () => Date.now());
    expect(off.active).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(5000);
    expect(onIdle).not.toHaveBeenCalled();
  });

  it('its timer does not keep the process alive, and bad timeouts are refused', () => {
    const spy = vi.spyOn(globalThis, 'setTimeout');
    const t = new IdleTimer(60_000, () => {});
    const timer = spy.mock.results[0]!.value as NodeJS.Timeout;
    spy.mockRestore();
    expect(timer.hasRef()).toBe(false);
    t.stop();
    expect(() => new IdleTimer(-1, () => {})).toThrow(RangeError);
    expect(() => new IdleTimer(1.5, () => {})).toThrow(RangeError);
    // setTimeout would fire a longer delay after 1 ms.
    expect(() => new IdleTimer(2 ** 31, () => {})).toThrow(RangeError);
  });
});

describe('handshake timeout', () => {
  it('gives Node server options that bound the request head', () => {
    expect(handshakeHttpOptions(10_000)).toEqual({ headersTimeout: 10_000, requestTimeout: 300_000, connectionsCheckingInterval: 1000 });
    expect(handshakeHttpOptions(200)).toEqual({ headersTimeout: 200, requestTimeout: 300_000, connectionsCheckingInterval: 100 });
    expect(handshakeHttpOptions(600_000).requestTimeout).toBe(600_000);
    // Node accepts them as they are.
    const server = http.createServer(handshakeHttpOptions(600_000));
    expect(server.headersTimeout).toBe(600_000);
    expect(() => handshakeHttpOptions(0)).toThrow(RangeError);
  });

  it('applies to an existing server', () => {
    const server = http.createServer();
    applyHandshakeTimeout(server, 5000);
    expect(server.headersTimeout).toBe(5000);
  });
});
