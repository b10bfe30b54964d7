import { debuglog, format } from 'node:util'

/** How much a logger writes: nothing (`silent`) up to everything (`debug`). */
export type LogLevel = 'silent' | 'error' | 'warn' | 'info' | 'debug'

/** A level a line is logged at. */
export type LogLineLevel = Exclude<LogLevel, 'silent'>

/**
 * What socksmith logs through. Any object with these four methods works (console-like wrappers;
 * for pino use `fromPino()`). `fields` never carries a password.
 *
 * `isLevelEnabled` is optional: when present, socksmith asks it before building the fields of a
 * line it logs per connection, so a level that is off costs nothing.
 */
export interface Logger {
  /** Something failed that should not have: a bug in a middleware, a listener that broke. */
  error(message: string, fields?: Record<string, unknown>): void
  /** Something an operator should look at: a lockout, a refused PROXY source, a failed reload. */
  warn(message: string, fields?: Record<string, unknown>): void
  /** What happened in normal operation: start, reload, the access log. */
  info(message: string, fields?: Record<string, unknown>): void
  /** Detail per connection: refusals, logins, timeouts. */
  debug(message: string, fields?: Record<string, unknown>): void
  /** Whether lines of `level` are written; lets socksmith skip building fields nobody reads. */
  isLevelEnabled?(level: LogLineLevel): boolean
}

/** True unless `log` says `level` is off (a logger without `isLevelEnabled` filters by itself). */
export function isLogLevelEnabled(log: Logger, level: LogLineLevel): boolean {
  return log.isLevelEnabled === undefined || log.isLevelEnabled(level)
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
  const debugEnabled = threshold >= 4 || debugOut.enabled
  return {
    isLevelEnabled: (lineLevel) => (lineLevel === 'debug' ? debugEnabled : threshold >= LEVELS[lineLevel]),
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
export const silentLogger: Logger = { error: noop, warn: noop, info: noop, debug: noop, isLevelEnabled: () => false }

/** The part of a pino logger `fromPino()` uses (pino's own methods take the fields first). */
export interface PinoLike {
  /** pino's `error`, fields first. */
  error(fields: Record<string, unknown>, message: string): void
  /** pino's `warn`, fields first. */
  warn(fields: Record<string, unknown>, message: string): void
  /** pino's `info`, fields first. */
  info(fields: Record<string, unknown>, message: string): void
  /** pino's `debug`, fields first. */
  debug(fields: Record<string, unknown>, message: string): void
  /** pino's own level check. */
  isLevelEnabled(level: string): boolean
}

/**
 * Adapts a pino logger (or a child of one) to socksmith's `Logger`: fields become the line's
 * properties, the message its `msg`. The level stays pino's (`pinoLogger.level = 'debug'` takes
 * effect at once).
 *
 * @example
 * import { pino } from 'pino'
 * const server = createServer({ logger: fromPino(pino({ level: 'info' })), accessLog: true })
 */
export function fromPino(pinoLogger: PinoLike): Logger {
  return {
    error: (message, fields) => pinoLogger.error(fields ?? EMPTY_FIELDS, message),
    warn: (message, fields) => pinoLogger.warn(fields ?? EMPTY_FIELDS, message),
    info: (message, fields) => pinoLogger.info(fields ?? EMPTY_FIELDS, message),
    debug: (message, fields) => pinoLogger.debug(fields ?? EMPTY_FIELDS, message),
    isLevelEnabled: (level) => pinoLogger.isLevelEnabled(level),
  }
}

const EMPTY_FIELDS: Record<string, unknown> = Object.freeze({})

export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && Object.hasOwn(LEVELS, value)
}
