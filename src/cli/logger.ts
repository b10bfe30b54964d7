import { pino } from 'pino'
import { createLogger, fromPino, type Logger, type LogLevel } from '../ops/logger.js'

/** The CLI's logger: a reload switches its level, and the server and every context keep the same object. */
export interface SwitchableLogger extends Logger {
  setLevel(level: LogLevel): void
}

/**
 * The `socksmith` CLI's logger: pino JSON lines on stderr (one object per line, for log shippers),
 * or, when stderr is a terminal, the built-in one-line text format people can read.
 */
export function switchableLogger(level: LogLevel): SwitchableLogger {
  const stream = process.stderr
  if (stream.isTTY) return switchableText(level, stream)
  // Asynchronous writes keep logging off the hot path; pino flushes what is left when the process exits.
  const logger = pino({ level }, pino.destination({ dest: stream.fd, minLength: 0 }))
  const adapted = fromPino(logger)
  return {
    error: adapted.error,
    warn: adapted.warn,
    info: adapted.info,
    debug: adapted.debug,
    isLevelEnabled: adapted.isLevelEnabled,
    setLevel(next) {
      logger.level = next
    },
  }
}

function switchableText(level: LogLevel, stream: NodeJS.WriteStream): SwitchableLogger {
  let inner = createLogger(level, stream)
  return {
    error: (message, fields) => inner.error(message, fields),
    warn: (message, fields) => inner.warn(message, fields),
    info: (message, fields) => inner.info(message, fields),
    debug: (message, fields) => inner.debug(message, fields),
    isLevelEnabled: (lineLevel) => inner.isLevelEnabled?.(lineLevel) ?? true,
    setLevel(next) {
      inner = createLogger(next, stream)
    },
  }
}
