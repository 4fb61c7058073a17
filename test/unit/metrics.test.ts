/** GatewayMetrics on its own: labels, gauges, and bytes counted at close and at scrape without double counting. */
import { describe, expect, it } from 'vitest';
import { GatewayMetrics, UNKNOWN_ROUTE_LABEL } from '../../server/metrics.js';
import { metricValue, parseMetrics } from '../helpers/metrics.js';

const known = new Set(['ssh', 'db']);
const make = (): GatewayMetrics => new GatewayMetrics({ knownRoute: (n) => known.has(n), processMetrics: false });
const read = async (m: GatewayMetrics) => parseMetrics(await m.render());

describe('GatewayMetrics', () => {
  it('adds a live stream’s bytes at each scrape and at close, once', async () => {
    const m = make();
    const bytes = { toBackend: 0, toClient: 0 };
    const close = m.opened('ssh', bytes, 2.5);
    bytes.toBackend = 100;
    bytes.toClient = 7;
    let s = await read(m);
    expect(metricValue(s, 'sockgate_bytes_total', { route: 'ssh', direction: 'to_backend' })).toBe(100);
    expect(metricValue(s, 'sockgate_bytes_total', { route: 'ssh', direction: 'to_client' })).toBe(7);
    expect(metricValue(s, 'sockgate_streams_open', { route: 'ssh' })).toBe(1);
    bytes.toBackend = 150;
    close();
    close(); // idempotent
    bytes.toBackend = 999; // after close: never read again
    s = await read(m);
    expect(metricValue(s, 'sockgate_bytes_total', { route: 'ssh', direction: 'to_backend' })).toBe(150);
    expect(metricValue(s, 'sockgate_streams_open', { route: 'ssh' })).toBe(0);
    expect(metricValue(s, 'sockgate_streams_opened_total', { route: 'ssh' })).toBe(1);
    expect(metricValue(s, 'sockgate_backend_connect_seconds_sum', { route: 'ssh' })).toBeCloseTo(0.0025);
  });

  it('never turns client text into a label', async () => {
    const m = make();
    m.failed('db', 'SOCKGATE_ERR_BACKEND_REFUSED');
    m.failed('../../etc/passwd', 'SOCKGATE_ERR_ROUTE_UNKNOWN');
    m.failed('x'.repeat(200), 'SOCKGATE_ERR_ROUTE_FORBIDDEN');
    const s = await read(m);
    expect(metricValue(s, 'sockgate_streams_failed_total', { route: 'db', code: 'SOCKGATE_ERR_BACKEND_REFUSED' })).toBe(1);
    expect(metricValue(s, 'sockgate_streams_failed_total', { route: UNKNOWN_ROUTE_LABEL, code: 'SOCKGATE_ERR_ROUTE_UNKNOWN' })).toBe(1);
    expect(metricValue(s, 'sockgate_streams_failed_total', { route: UNKNOWN_ROUTE_LABEL, code: 'SOCKGATE_ERR_ROUTE_FORBIDDEN' })).toBe(1);
    expect(s.filter((x) => x.name === 'sockgate_streams_failed_total').map((x) => x.labels.route).sort()).toEqual(['(unknown)', '(unknown)', 'db']);
  });

  it('counts sessions by mode and route, each close once', async () => {
    const m = make();
    const a = m.sessionOpened('raw', 'ssh');
    const b = m.sessionOpened('mux');
    let s = await read(m);
    expect(metricValue(s, 'sockgate_sessions_open', { mode: 'raw', route: 'ssh' })).toBe(1);
    expect(metricValue(s, 'sockgate_sessions_open', { mode: 'mux', route: '' })).toBe(1);
    a();
    a();
    b();
    s = await read(m);
    expect(metricValue(s, 'sockgate_sessions_open', { mode: 'raw', route: 'ssh' })).toBe(0);
    expect(metricValue(s, 'sockgate_sessions_open', { mode: 'mux', route: '' })).toBe(0);
    expect(metricValue(s, 'sockgate_sessions_opened_total', { mode: 'raw' })).toBe(1);
  });

  it('starts the reload counters and the draining gauge at 0', async () => {
    const m = make();
    let s = await read(m);
    expect(metricValue(s, 'sockgate_config_reloads_total', { result: 'ok' })).toBe(0);
    expect(s.some((x) => x.name === 'sockgate_config_reloads_total' && x.labels.result === 'error')).toBe(true);
    expect(metricValue(s, 'sockgate_draining')).toBe(0);
    m.setDraining(true);
    m.reloaded(false);
    s = await read(m);
    expect(metricValue(s, 'sockgate_draining')).toBe(1);
    expect(metricValue(s, 'sockgate_config_reloads_total', { result: 'error' })).toBe(1);
  });

  it('appends the process metrics by default', async () => {
    const m = new GatewayMetrics({ knownRoute: () => true });
    const text = await m.render();
    expect(text).toMatch(/^sockgate_|\n# HELP sockgate_/);
    expect(text).toContain('\nprocess_cpu_user_seconds_total');
  });
});
