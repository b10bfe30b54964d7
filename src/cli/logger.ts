import { fstatSync } from 'node:fs'
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
  const logger = pino({ level }, batchedDestination(stream.fd))
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

/**
 * Bytes gathered before a write. To a pipe (a log shipper, a supervisor) at most 3 KiB: a write of
 * up to 4 KiB to a pipe is atomic (PIPE_BUF), so --workers sharing it never interleave inside a
 * line. To a file (or a terminal) more: writes to one open file are never interleaved inside.
 */
const PIPE_BATCH_BYTES = 3072
const FILE_BATCH_BYTES = 32 * 1024

/** How long a line may wait for others before it is written. */
const FLUSH_AFTER_MS = 100

/**
 * Where the CLI's pino lines go: gathered and written together, synchronously, once PIPE_BATCH_BYTES /
 * FILE_BATCH_BYTES are pending or FLUSH_AFTER_MS after the first line of a batch. Under load one write(2) carries
 * a dozen access lines instead of one each: a write per line (or per event-loop turn, which under
 * load carries one to three) cost a short connection more CPU than everything else the access
 * log does (bench/README.md "The access log"). A synchronous write leaves nothing queued in a
 * thread, so the 'exit' flush loses nothing; a SIGKILL loses at most FLUSH_AFTER_MS of lines.
 */
function batchedDestination(fd: number): { write(line: string): void } {
  // pino's own destination (sonic-boom) does the buffering and the EAGAIN retries; minLength makes
  // it hold lines until a batch is pending or flush() is called.
  const batch = isPipe(fd) ? PIPE_BATCH_BYTES : FILE_BATCH_BYTES
  const boom = pino.destination({ dest: fd, sync: true, minLength: batch, maxWrite: 2 * batch })
  let timer: NodeJS.Timeout | null = null
  const flush = (): void => {
    timer = null
    boom.flush()
  }
  process.once('exit', () => {
    if (timer !== null) flush()
  })
  return {
    write(line) {
      boom.write(line)
      // Unref'd: pending lines never keep the process alive (the exit flush writes them).
      if (timer === null) timer = setTimeout(flush, FLUSH_AFTER_MS).unref()
    },
  }
}

function isPipe(fd: number): boolean {
  try {
    const stat = fstatSync(fd)
    return stat.isFIFO() || stat.isSocket()
  } catch {
    return true
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
