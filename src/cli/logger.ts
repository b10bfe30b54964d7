import { fstatSync } from 'node:fs'
import { hostname } from 'node:os'
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
  const destination = batchedDestination(stream.fd)
  const logger = pino({ level }, destination)
  const adapted = fromPino(logger)
  const plain = plainLines(destination)
  // Lines whose fields are all plain values (the access line, most others) are written here, in
  // pino's own form; the rest (an Error, a nested object) go through pino.
  const at = (levelValue: number, viaPino: Logger['info']): Logger['info'] => (message, fields) => {
    if (logger.levelVal > levelValue) return
    if (!plain(levelValue, message, fields)) viaPino(message, fields)
  }
  return {
    error: at(50, adapted.error),
    warn: at(40, adapted.warn),
    info: at(30, adapted.info),
    debug: at(20, adapted.debug),
    isLevelEnabled: adapted.isLevelEnabled,
    setLevel(next) {
      logger.level = next
    },
  }
}

/**
 * Writes a line exactly as pino would (`{"level":30,"time":…,"pid":…,"hostname":…, fields…, "msg":…}`)
 * when every field is a string, number, boolean or null, and returns false otherwise. pino's own
 * serialisation took ~37k instructions for an access line (its per-key escaping and checks), more
 * than a tenth of a short connection; JSON.stringify of a flat object is a few thousand.
 */
function plainLines(destination: { write(line: string): void }): (levelValue: number, message: string, fields: Readonly<Record<string, unknown>> | undefined) => boolean {
  const identity = `,"pid":${process.pid},"hostname":${JSON.stringify(hostname())}`
  return (levelValue, message, fields) => {
    let body = ''
    if (fields !== undefined) {
      for (const key in fields) {
        const value = fields[key]
        if (value !== null && typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean' && value !== undefined) return false
      }
      const json = JSON.stringify(fields)
      if (json.length > 2) body = `,${json.slice(1, -1)}`
    }
    destination.write(`{"level":${levelValue},"time":${Date.now()}${identity}${body},"msg":${JSON.stringify(message)}}\n`)
    return true
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
  const batch = isPipe(fd) ? PIPE_BATCH_BYTES : FILE_BATCH_BYTES
  // pino's own destination (sonic-boom) does the writing and the EAGAIN retries, one batch at a
  // time. The lines are gathered here, not in it: sonic-boom 4's write() measures the whole pending
  // buffer (Buffer.byteLength of a string built by +=, flattened again on every line), which made a
  // 32 KiB batch cost ~30 µs per line (sonic-boom index.js, write()).
  const boom = pino.destination({ dest: fd, sync: true, minLength: 0, maxWrite: 2 * batch })
  let lines: string[] = []
  let pending = 0
  let timer: NodeJS.Timeout | null = null
  const flush = (): void => {
    if (timer !== null) clearTimeout(timer)
    timer = null
    if (lines.length === 0) return
    const text = lines.length === 1 ? lines[0]! : lines.join('')
    lines = []
    pending = 0
    boom.write(text)
  }
  process.once('exit', flush)
  return {
    write(line) {
      // A batch never grows past `batch` by a line (to a pipe, each write stays within PIPE_BUF
      // unless one line alone is longer).
      const bytes = Buffer.byteLength(line)
      if (pending > 0 && pending + bytes > batch) flush()
      lines.push(line)
      pending += bytes
      if (pending >= batch) flush()
      // Unref'd: pending lines never keep the process alive (the exit flush writes them).
      else if (timer === null) timer = setTimeout(flush, FLUSH_AFTER_MS).unref()
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
