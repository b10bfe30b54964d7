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
  const logger = pino({ level }, turnBatchedDestination(stream.fd))
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

/** Bytes gathered before a write even within one turn: a write of up to 4 KiB to a pipe is atomic (PIPE_BUF), so --workers sharing stderr never interleave inside a line. */
const BATCH_BYTES = 3072

/**
 * Where the CLI's pino lines go: gathered during one turn of the event loop and written together
 * at its end (setImmediate), synchronously. Under load one write(2) carries many access lines
 * instead of one each (a sync write per line cost about a third of a short connection's CPU);
 * when idle a line still goes out at once, and a synchronous write leaves nothing queued in a
 * thread, so the 'exit' flush loses nothing (a SIGKILL loses at most one turn's lines).
 */
function turnBatchedDestination(fd: number): { write(line: string): void } {
  // pino's own destination (sonic-boom) does the buffering and the EAGAIN retries; minLength makes
  // it hold lines until the turn ends or BATCH_BYTES are pending.
  const boom = pino.destination({ dest: fd, sync: true, minLength: BATCH_BYTES })
  let pending = false
  const flush = (): void => {
    pending = false
    boom.flush()
  }
  process.once('exit', () => {
    if (pending) flush()
  })
  return {
    write(line) {
      boom.write(line)
      if (!pending) {
        pending = true
        setImmediate(flush)
      }
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
