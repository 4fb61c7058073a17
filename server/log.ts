/**
 * A small JSON-lines logger for the command-line tools that run without Fastify (`sockgate agent`, `forward`):
 * one line per event, in pino's shape (`level`, `time`, `msg`, fields), like `sockgate serve`'s own lines, so
 * one log pipeline reads both. It has the calls the stream bridge needs (server/bridge.ts).
 */
import type { BridgeLogger } from './bridge.js';

export const LOG_LEVELS = { debug: 20, info: 30, warn: 40, error: 50, silent: Infinity } as const;
export type LogLevel = keyof typeof LOG_LEVELS;

export interface Logger extends BridgeLogger {
  warn(obj: object, msg: string): void;
  child(fields: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  /** Lines below this level are dropped. Default info. */
  level?: LogLevel;
  /** Where lines go (one write per line). Default process.stdout. */
  write?: (line: string) => void;
}

export function createLogger(options: LoggerOptions = {}, fields: Record<string, unknown> = {}): Logger {
  const min = LOG_LEVELS[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stdout.write(line));
  const line = (level: number, obj: object, msg: string): void => {
    if (level < min) return;
    const out: Record<string, unknown> = { level, time: Date.now(), pid: process.pid, ...fields };
    for (const [key, value] of Object.entries(obj)) out[key] = key === 'err' ? serializeError(value) : value;
    out.msg = msg;
    write(`${JSON.stringify(out)}\n`);
  };
  return {
    debug: (obj, msg) => line(LOG_LEVELS.debug, obj, msg),
    info: (obj, msg) => line(LOG_LEVELS.info, obj, msg),
    warn: (obj, msg) => line(LOG_LEVELS.warn, obj, msg),
    error: (obj, msg) => line(LOG_LEVELS.error, obj, msg),
    child: (more) => createLogger(options, { ...fields, ...more }),
  };
}

/** Errors as pino prints them, without the stack for our own coded errors (their code says it all). */
function serializeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const code = (err as { code?: unknown }).code;
  const coded = typeof code === 'string' && code.startsWith('SOCKGATE_ERR_');
  return { type: err.name, message: err.message, ...(code !== undefined && { code }), ...(!coded && { stack: err.stack }) };
}
