import { debuglog, format } from 'node:util'

export type LogLevel = 'silent' | 'error' | 'warn' | 'info' | 'debug'

/**
 * What socksmith logs through. Any object with these four methods works (pino, console-like
 * wrappers). `fields` never carries a password.
 */
export interface Logger {
  error(message: string, fields?: Record<string, unknown>): void
  warn(message: string, fields?: Record<string, unknown>): void
  info(message: string, fields?: Record<string, unknown>): void
  debug(message: string, fields?: Record<string, unknown>): void
}

const LEVELS: Record<LogLevel, number> = { silent: 0, error: 1, warn: 2, info: 3, debug: 4 }

function noop(): void {}

/**
 * A small level-filtered logger writing one line per entry to stderr. Methods below the level are
 * no-ops, so a disabled level costs a call and nothing else on the hot path.
 * `NODE_DEBUG=socksmith` turns on debug output regardless of the level.
 */
export function createLogger(level: LogLevel = 'info', stream: NodeJS.WritableStream = process.stderr): Logger {
  const threshold = LEVELS[level]
  const write = (name: string) => (message: string, fields?: Record<string, unknown>) => {
    const line = fields === undefined ? message : `${message} ${format('%j', fields)}`
    stream.write(`${new Date().toISOString()} ${name} ${line}\n`)
  }
  const debugOut = debuglog('socksmith')
  return {
    error: threshold >= 1 ? write('ERROR') : noop,
    warn: threshold >= 2 ? write('WARN ') : noop,
    info: threshold >= 3 ? write('INFO ') : noop,
    debug: threshold >= 4
      ? write('DEBUG')
      : debugOut.enabled
        ? (message, fields) => debugOut('%s %j', message, fields ?? {})
        : noop,
  }
}

/** A logger that drops everything. */
export const silentLogger: Logger = { error: noop, warn: noop, info: noop, debug: noop }

export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && Object.hasOwn(LEVELS, value)
}
