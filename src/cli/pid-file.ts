import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'

/**
 * `--pid-file`: writes this process's id to `file` once every listener is up, so a script or a
 * supervisor knows which process to signal (SIGHUP reloads, SIGTERM drains). `npx socksmith` and
 * `npm start` run socksmith under npm and a shell, and npm passes SIGINT and SIGTERM on but not
 * SIGHUP: the pid of the command a user started is not the one to signal.
 *
 * The file is replaced atomically (a reader never sees it half written) and removed when the
 * process exits, if it still names this process. Throws an Error naming the file when it cannot
 * be written. Returns the absolute path.
 */
export function writePidFile(file: string): string {
  const path = resolve(file)
  const content = `${process.pid}\n`
  const temporary = `${path}.${process.pid}.tmp`
  try {
    writeFileSync(temporary, content)
    renameSync(temporary, path)
  } catch (err) {
    rmSync(temporary, { force: true })
    throw new Error(`--pid-file: cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err })
  }
  process.once('exit', () => {
    try {
      // Another instance may have taken the file over since: leave its pid alone.
      if (readFileSync(path, 'utf8') === content) rmSync(path)
    } catch {
      // Already gone.
    }
  })
  return path
}
