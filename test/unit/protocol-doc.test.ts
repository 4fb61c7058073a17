/**
 * docs/PROTOCOL.md and shared/ must not drift apart: this test reads the document and checks every constant
 * (section 8), frame type (3), error code (7.1, 7.2, the decoder table, 7.3) and hex vector (9) against the code.
 * A code added to the registry but not to the document fails here, and so does one documented but not defined.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as constants from '../../shared/constants.js';
import { FrameType } from '../../shared/constants.js';
import { decodeFrame } from '../../shared/decode.js';
import { encodeFrame } from '../../shared/encode.js';
import { ERRORS, SockgateError, type ErrorCode } from '../../shared/errors.js';

const doc = readFileSync(fileURLToPath(new URL('../../docs/PROTOCOL.md', import.meta.url)), 'utf8');

/** The text under a heading, up to the next heading of the same or a higher level. */
function section(heading: string): string {
  const lines = doc.split('\n');
  const start = lines.findIndex((l) => /^#{2,3} /.test(l) && l.replace(/^#+ /, '').startsWith(heading));
  if (start < 0) throw new Error(`PROTOCOL.md has no section "${heading}"`);
  const level = lines[start]!.match(/^#+/)![0].length;
  const end = lines.findIndex((l, i) => i > start && /^#+ /.test(l) && l.match(/^#+/)![0].length <= level);
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n');
}

interface Table {
  /** Header cells, lower-cased. */
  header: string[];
  rows: string[][];
}

function cellsOf(line: string): string[] {
  const inner = line.trim().replace(/^\|/, '').replace(/\|$/, '');
  return inner.split('|').map((c) => c.trim());
}

/** Markdown tables in a piece of text, separator rows dropped. */
function tables(text: string): Table[] {
  const found: Table[] = [];
  let current: Table | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith('|')) {
      current = undefined;
      continue;
    }
    const cells = cellsOf(line);
    if (!current) {
      current = { header: cells.map((c) => c.toLowerCase()), rows: [] };
      found.push(current);
    } else if (!cells.every((c) => /^:?-+:?$/.test(c))) {
      current.rows.push(cells);
    }
  }
  return found;
}

function onlyTable(text: string): Table {
  const t = tables(text);
  expect(t).toHaveLength(1);
  return t[0]!;
}

/** The cells of one named column. */
function column(table: Table, name: string): string[] {
  const i = table.header.indexOf(name);
  if (i < 0) throw new Error(`table has no column "${name}": ${table.header.join(', ')}`);
  return table.rows.map((r) => r[i] ?? '');
}

/** The lines of a fenced block whose info string is `name`. */
function fenced(name: string): string[] {
  const m = doc.match(new RegExp('```' + name + '\\n([\\s\\S]*?)```'));
  if (!m) throw new Error(`PROTOCOL.md has no \`\`\`${name} block`);
  return m[1]!.split('\n').filter((l) => l.trim() !== '');
}

function hex(text: string): Uint8Array {
  const digits = text.replace(/\s+/g, '');
  expect(digits).toMatch(/^([0-9a-f]{2})*$/i);
  return Uint8Array.from(digits.match(/../g) ?? [], (b) => parseInt(b, 16));
}

function number(cell: string): number {
  return Number(cell.replace(/[`,_]/g, ''));
}

function thrownBy(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  throw new Error('did not throw');
}

describe('PROTOCOL.md section 8: constants', () => {
  const table = onlyTable(section('8. Constants'));
  const names = column(table, 'name');
  const values = column(table, 'value');

  it('lists the constants the code exports', () => {
    expect(names).toEqual([
      'SUBPROTOCOL',
      'BEARER_SUBPROTOCOL_PREFIX',
      'HEADER_BYTES',
      'MAX_DATA_PAYLOAD',
      'MAX_FRAME_BYTES',
      'MAX_OPEN_PAYLOAD',
      'MAX_REASON_BYTES',
      'MAX_ROUTE_NAME_BYTES',
      'INITIAL_WINDOW',
      'MAX_WINDOW',
      'PING_PAYLOAD_BYTES',
      'MAX_STREAM_ID',
    ]);
  });

  for (const [i, name] of names.entries()) {
    const value = values[i]!;
    it(`${name} = ${value}`, () => {
      const actual = (constants as Record<string, unknown>)[name];
      if (typeof actual === 'string') expect(actual).toBe(value.replace(/`/g, ''));
      else expect(actual).toBe(number(value));
    });
  }

  it('pins the values independently of the document, so changing both still fails', () => {
    expect(constants.SUBPROTOCOL).toBe('sockgate.v1');
    expect(constants.BEARER_SUBPROTOCOL_PREFIX).toBe('sockgate.bearer.');
    expect(constants.HEADER_BYTES).toBe(6);
    expect(constants.MAX_DATA_PAYLOAD).toBe(64 * 1024);
    expect(constants.MAX_FRAME_BYTES).toBe(6 + 64 * 1024);
    expect(constants.MAX_OPEN_PAYLOAD).toBe(1024);
    expect(constants.MAX_REASON_BYTES).toBe(512);
    expect(constants.MAX_ROUTE_NAME_BYTES).toBe(255);
    expect(constants.INITIAL_WINDOW).toBe(256 * 1024);
    expect(constants.MAX_WINDOW).toBe(16 * 1024 * 1024);
    expect(constants.PING_PAYLOAD_BYTES).toBe(8);
    expect(constants.MAX_STREAM_ID).toBe(2 ** 32 - 1);
    expect(constants.KNOWN_FLAGS).toBe(0);
    expect(constants.CRITICAL_OPTION_BIT).toBe(0x80);
  });

  it('the prose of 1.4 and 5 quotes the same numbers as the table', () => {
    expect(section('1. Transport')).toContain('(65,542 bytes: a 6-byte header and at most\n64 KiB of payload)');
    expect(section('5. Flow control')).toContain('`INITIAL_WINDOW` (262,144 bytes = 256 KiB)');
    expect(section('5. Flow control')).toContain('`MAX_WINDOW` (16 MiB)');
    expect(section('3. Frame types')).toContain('`MAX_OPEN_PAYLOAD` (1,024 bytes');
  });
});

describe('PROTOCOL.md section 3: frame types', () => {
  const table = onlyTable(section('3. Frame types'));
  const types = column(table, 'type').map(number);
  const names = column(table, 'name');
  const ids = column(table, 'stream id');

  it('every documented type is FrameType with the same number, and nothing else is', () => {
    expect(Object.fromEntries(names.map((n, i) => [n, types[i]]))).toEqual({ ...FrameType });
  });

  it('pins the numbers independently of the document', () => {
    expect(FrameType).toEqual({
      OPEN: 1,
      OPEN_OK: 2,
      OPEN_FAIL: 3,
      DATA: 4,
      WINDOW: 5,
      FIN: 6,
      RESET: 7,
      PING: 8,
      PONG: 9,
      GOAWAY: 10,
    });
  });

  it('session frames (stream id 0) are exactly PING, PONG and GOAWAY (2.3)', () => {
    for (const [i, type] of types.entries()) expect(constants.isSessionFrameType(type), names[i]).toBe(ids[i] === '0');
  });
});

describe('PROTOCOL.md section 7: error codes', () => {
  /** Every table of section 7 with the number kind its first column gives (wire, close, http status or none). */
  const errorTables = tables(section('7. Error codes'));
  const NUMBER_COLUMNS = { wire: 'wireCode', close: 'closeCode', http: 'httpStatus', status: 'httpStatus' } as const;
  type Documented = { wireCode?: number; closeCode?: number; httpStatus?: number };
  const documented = new Map<string, Documented>();
  const duplicates: string[] = [];
  for (const table of errorTables) {
    const codes = column(table, 'code');
    for (const [i, code] of codes.entries()) {
      const entry: Documented = {};
      for (const [col, key] of Object.entries(NUMBER_COLUMNS)) {
        if (table.header.includes(col)) {
          const cell = column(table, col)[i]!;
          if (cell !== '' && cell !== '-') entry[key] = number(cell);
        }
      }
      if (documented.has(code)) duplicates.push(code);
      documented.set(code, entry);
    }
  }

  it('has the 7.1 stream table, the 7.2 session and decoder tables, and 7.3', () => {
    expect(tables(section('7.1 Stream codes'))).toHaveLength(1);
    expect(tables(section('7.2 Session codes'))).toHaveLength(2);
    expect(tables(section('7.3 Errors that never reach the wire')).length).toBeGreaterThanOrEqual(1);
    expect(column(tables(section('7.1 Stream codes'))[0]!, 'wire').length).toBeGreaterThan(0);
  });

  it('no code is documented twice', () => {
    expect(duplicates).toEqual([]);
  });

  for (const [code, spec] of Object.entries(ERRORS) as [string, Documented][]) {
    it(`${code} is documented with the same wire, close and HTTP code`, () => {
      expect(documented.has(code), `${code} is missing from docs/PROTOCOL.md section 7`).toBe(true);
      const entry = documented.get(code)!;
      expect(entry.wireCode, 'wire code').toBe(spec.wireCode);
      expect(entry.closeCode, 'close code').toBe(spec.closeCode);
      if (spec.httpStatus !== undefined || entry.httpStatus !== undefined) expect(entry.httpStatus, 'HTTP status').toBe(spec.httpStatus);
    });
  }

  it('every documented code exists in the registry', () => {
    const missing = [...documented.keys()].filter((c) => !Object.prototype.hasOwnProperty.call(ERRORS, c));
    expect(missing).toEqual([]);
  });

  it('every code follows SOCKGATE_ERR_<AREA>_<WHAT>', () => {
    for (const code of documented.keys()) expect(code).toMatch(/^SOCKGATE_ERR_[A-Z]+(_[A-Z0-9]+)*$/);
  });

  it('the decoder-error table lists exactly the 1002 codes the decoder throws', () => {
    const decoderTable = tables(section('7.2 Session codes'))[1]!;
    const registry = Object.entries(ERRORS as Record<string, Documented>)
      .filter(([c, s]) => c.startsWith('SOCKGATE_ERR_PROTOCOL_') && s.closeCode === 1002)
      .map(([c]) => c);
    expect([...column(decoderTable, 'code')].sort()).toEqual(registry.sort());
    expect(new Set(column(decoderTable, 'close'))).toEqual(new Set(['1002']));
  });
});

describe('PROTOCOL.md section 9: test vectors', () => {
  const vectors = fenced('vectors').map((line) => {
    const m = line.match(/^([a-z0-9-]+):\s+(.*)$/);
    if (!m) throw new Error(`bad vector line: ${line}`);
    return { name: m[1]!, bytes: hex(m[2]!) };
  });
  const byName = new Map(vectors.map((v) => [v.name, v.bytes]));

  it('has a vector for every frame type', () => {
    const types = new Set(vectors.map((v) => v.bytes[0]));
    expect([...types].sort((a, b) => a! - b!)).toEqual(Object.values(FrameType));
  });

  for (const { name, bytes } of vectors) {
    it(`${name} decodes and encodes back to the same bytes`, () => {
      const frame = decodeFrame(bytes);
      expect(encodeFrame(frame)).toEqual(bytes);
    });
  }

  it('decodes to the fields the document describes', () => {
    const get = (name: string) => {
      const bytes = byName.get(name);
      if (!bytes) throw new Error(`no vector ${name}`);
      return decodeFrame(bytes);
    };
    expect(get('open-echo')).toEqual({ type: FrameType.OPEN, streamId: 1, route: 'echo', options: [] });
    expect(get('open-ssh-opt')).toEqual({
      type: FrameType.OPEN,
      streamId: 3,
      route: 'ssh',
      options: [{ tag: 1, value: Uint8Array.of(0xab, 0xcd) }],
    });
    expect(get('open-ok')).toEqual({ type: FrameType.OPEN_OK, streamId: 1, options: [] });
    expect(get('open-fail')).toEqual({ type: FrameType.OPEN_FAIL, streamId: 1, code: ERRORS.SOCKGATE_ERR_ROUTE_UNKNOWN.wireCode, reason: 'no route' });
    expect(get('data')).toEqual({ type: FrameType.DATA, streamId: 1, data: new TextEncoder().encode('hello') });
    expect(get('window')).toEqual({ type: FrameType.WINDOW, streamId: 1, consumed: 131_072, window: constants.INITIAL_WINDOW });
    expect(get('fin')).toEqual({ type: FrameType.FIN, streamId: 2 });
    expect(get('reset')).toEqual({ type: FrameType.RESET, streamId: 5, code: ERRORS.SOCKGATE_ERR_BACKEND_RESET.wireCode, reason: 'ECONNRESET' });
    expect(get('ping')).toEqual({ type: FrameType.PING, streamId: 0, opaque: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) });
    expect(get('pong')).toEqual({ type: FrameType.PONG, streamId: 0, opaque: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) });
    expect(get('goaway')).toEqual({
      type: FrameType.GOAWAY,
      streamId: 0,
      code: ERRORS.SOCKGATE_ERR_STREAM_SHUTTING_DOWN.wireCode,
      reason: 'shutting down',
    });
  });

  const invalid = fenced('invalid-vectors').map((line) => {
    const m = line.match(/^(SOCKGATE_ERR_[A-Z_]+):\s+(.*)$/);
    if (!m) throw new Error(`bad invalid-vector line: ${line}`);
    return { code: m[1]!, bytes: hex(m[2]!) };
  });

  it('has invalid vectors for every decoder error of 7.2', () => {
    const decoderCodes = column(tables(section('7.2 Session codes'))[1]!, 'code');
    expect(new Set(invalid.map((v) => v.code))).toEqual(new Set(decoderCodes));
  });

  for (const [i, { code, bytes }] of invalid.entries()) {
    it(`invalid vector ${i + 1} is refused with ${code}`, () => {
      const err = thrownBy(() => decodeFrame(bytes));
      expect(err).toBeInstanceOf(SockgateError);
      expect((err as SockgateError).code).toBe(code as ErrorCode);
      expect((err as SockgateError).closeCode).toBe(1002);
    });
  }
});

describe('PROTOCOL.md section 11: agents', () => {
  const table = tables(section('11. Agents')).find((t) => t.header.includes('name') && t.header.includes('value'));
  if (!table) throw new Error('PROTOCOL.md section 11 has no constants table');
  const names = column(table, 'name');
  const values = column(table, 'value');

  it('lists the agent constants the code exports', () => {
    expect(names).toEqual(['AGENT_PATH', 'AGENT_SERVICES_PARAM', 'MAX_AGENT_SERVICES']);
  });

  for (const [i, name] of names.entries()) {
    const value = values[i]!;
    it(`${name} = ${value}`, () => {
      const actual = (constants as Record<string, unknown>)[name];
      if (typeof actual === 'string') expect(actual).toBe(value.replace(/`/g, ''));
      else expect(actual).toBe(number(value));
    });
  }

  it('pins the values independently of the document', () => {
    expect(constants.AGENT_PATH).toBe('/agent');
    expect(constants.AGENT_SERVICES_PARAM).toBe('services');
    expect(constants.MAX_AGENT_SERVICES).toBe(64);
    expect(ERRORS.SOCKGATE_ERR_SESSION_REPLACED.closeCode).toBe(4005);
    expect(ERRORS.SOCKGATE_ERR_AGENT_BAD_SERVICES.httpStatus).toBe(400);
  });

  it('the prose quotes the same limit and close code', () => {
    const text = section('11. Agents');
    expect(text).toContain('`MAX_AGENT_SERVICES` (64)');
    expect(text).toContain('4005 `SOCKGATE_ERR_SESSION_REPLACED`');
  });

  const vectors = fenced('agent-vectors').map((line) => {
    const m = line.match(/^([a-z0-9-]+):\s+(.*)$/);
    if (!m) throw new Error(`bad agent vector line: ${line}`);
    return { name: m[1]!, bytes: hex(m[2]!) };
  });

  for (const { name, bytes } of vectors) {
    it(`${name} decodes and encodes back to the same bytes`, () => {
      expect(encodeFrame(decodeFrame(bytes))).toEqual(bytes);
    });
  }

  it('decodes to the fields the document describes: streams the gateway opens have even ids', () => {
    const byName = new Map(vectors.map((v) => [v.name, decodeFrame(v.bytes)]));
    expect(byName.get('open-to-agent')).toEqual({ type: FrameType.OPEN, streamId: 2, route: 'ssh', options: [] });
    expect(byName.get('data-to-agent')).toEqual({ type: FrameType.DATA, streamId: 2, data: new TextEncoder().encode('hello') });
    expect(byName.get('ok-from-agent')).toEqual({ type: FrameType.OPEN_OK, streamId: 2, options: [] });
    expect(byName.get('fin-to-agent')).toEqual({ type: FrameType.FIN, streamId: 2 });
    expect(byName.get('fail-from-agent')).toEqual({
      type: FrameType.OPEN_FAIL,
      streamId: 4,
      code: ERRORS.SOCKGATE_ERR_BACKEND_REFUSED.wireCode,
      reason: 'ECONNREFUSED',
    });
    for (const frame of byName.values()) expect(frame.streamId % 2).toBe(0);
  });
});
