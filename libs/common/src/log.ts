import { trace } from '@opentelemetry/api';
import { type Redact, redactUrls } from './redact.js';

/** Structured JSON logs, one object per line, with fields carried by child loggers and the active trace id. */

export const LogLevel = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
export type LogLevel = keyof typeof LogLevel;

export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go; default process.stderr, so stdout stays free for command output. */
  write?: (line: string) => void;
  fields?: LogFields;
  /** Applied to every line before it is written; default: passwords in URLs are masked (see redact.ts). */
  redact?: Redact;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const threshold = LogLevel[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const redact = opts.redact ?? redactUrls;
  const make = (base: LogFields): Logger => {
    const emit = (level: Exclude<LogLevel, 'silent'>, msg: string, fields?: LogFields): void => {
      if (LogLevel[level] < threshold) return;
      const line: Record<string, unknown> = { time: new Date().toISOString(), level, msg, ...base };
      const span = trace.getActiveSpan()?.spanContext();
      if (span) {
        line['trace_id'] = span.traceId;
        line['span_id'] = span.spanId;
      }
      if (fields) for (const [k, v] of Object.entries(fields)) line[k] = v instanceof Error ? errorFields(v) : v;
      write(`${redact(JSON.stringify(line))}\n`);
    };
    return {
      debug: (m, f) => emit('debug', m, f),
      info: (m, f) => emit('info', m, f),
      warn: (m, f) => emit('warn', m, f),
      error: (m, f) => emit('error', m, f),
      child: (fields) => make({ ...base, ...fields }),
    };
  };
  return make(opts.fields ?? {});
}

/** A logger that drops everything; for tests and library defaults. */
export const nopLogger: Logger = createLogger({ level: 'silent' });

function errorFields(e: Error): Record<string, unknown> {
  const out: Record<string, unknown> = { name: e.name, message: e.message };
  if (e.cause !== undefined) out['cause'] = e.cause instanceof Error ? errorFields(e.cause) : String(e.cause);
  return out;
}
