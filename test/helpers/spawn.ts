// Long-running child processes for CLI and example tests: the socksmith binary, example programs.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { SocksClient } from 'socks'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
/** The built binary, as `npx socksmith` runs it. Tests need `npm run build` first (npm test does it). */
/** The `socksmith` command as package.json's bin names it. */
export const CLI = join(ROOT, 'dist/src/cli/bin.cjs')

export interface Running {
  readonly child: ChildProcess
  /** Everything written so far. */
  stdout(): string
  stderr(): string
  /** Resolves with the first stdout line (past or future) matching `pattern`. */
  line(pattern: RegExp, timeout?: number): Promise<RegExpMatchArray>
  /** Resolves with the first stderr text matching `pattern`. */
  errLine(pattern: RegExp, timeout?: number): Promise<RegExpMatchArray>
  /** Settles when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** The environment without the test runner's NODE_OPTIONS (tsx, source condition): a plain `node`. */
export function plainEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra }
  delete env.NODE_OPTIONS
  delete env.NODE_DEBUG
  return env
}

/** Starts a process; killed after the test if it is still running. */
export function start(t: TestContext, file: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Running {
  const child = spawn(file, args, { cwd: options.cwd ?? ROOT, env: options.env ?? plainEnv(), stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  const waiters: (() => void)[] = []
  const wake = (): void => {
    for (const waiter of [...waiters]) waiter()
  }
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk
    wake()
  })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk
    wake()
  })
  if (options.input !== undefined) child.stdin?.end(options.input)
  // 'close', not 'exit': 'exit' can come before the last of stdout/stderr has been read.
  const exited = once(child, 'close').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }))
  let done = false
  void exited.then(() => {
    done = true
    wake()
  })
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const wait = (read: () => string, pattern: RegExp, timeout: number, what: string): Promise<RegExpMatchArray> =>
    new Promise((resolve, reject) => {
      const check = (): boolean => {
        const match = read().match(pattern)
        if (match !== null) {
          finish()
          resolve(match)
          return true
        }
        if (done) {
          finish()
          reject(new Error(`process exited (${child.exitCode ?? child.signalCode}) before ${what} matched ${pattern}\nstdout: ${out}\nstderr: ${err}`))
          return true
        }
        return false
      }
      const timer = setTimeout(() => {
        finish()
        reject(new Error(`timed out waiting for ${what} to match ${pattern}\nstdout: ${out}\nstderr: ${err}`))
      }, timeout)
      const waiter = (): void => void check()
      const finish = (): void => {
        clearTimeout(timer)
        const i = waiters.indexOf(waiter)
        if (i !== -1) waiters.splice(i, 1)
      }
      waiters.push(waiter)
      check()
    })
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    // Generous: a loaded CI machine starting several node processes at once is slow.
    line: (pattern, timeout = 30_000) => wait(() => out, pattern, timeout, 'stdout'),
    errLine: (pattern, timeout = 30_000) => wait(() => err, pattern, timeout, 'stderr'),
    exited,
  }
}

/** Runs the built CLI (plain node, no tsx, no source condition). */
export function startCli(t: TestContext, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Running {
  return start(t, process.execPath, [CLI, ...args], options)
}

/** Runs the CLI to completion. */
export async function runCli(t: TestContext, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const running = startCli(t, args, options)
  const { code } = await running.exited
  return { code, stdout: running.stdout(), stderr: running.stderr() }
}

/** Waits for the "socksmith listening on HOST:PORT" line (or an example's "listening on"). */
export async function listeningPort(running: Running, timeout?: number): Promise<number> {
  const match = await running.line(/listening on \[?[\d.:a-f]+\]?:(\d+)/, timeout)
  return Number(match[1])
}

/** A temporary folder, removed after the test. */
export function tempDir(t: TestContext, prefix = 'socksmith-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * Opens a CONNECT through the proxy with the `socks` npm package (an independent client), sends
 * `payload` to an echo server and returns what came back.
 */
export async function echoThrough(proxyPort: number, echoPort: number, options: { user?: string; password?: string; payload?: string; host?: string; proxyHost?: string } = {}): Promise<string> {
  const { socket } = await SocksClient.createConnection({
    proxy: { host: options.proxyHost ?? '127.0.0.1', port: proxyPort, type: 5, ...(options.user === undefined ? {} : { userId: options.user, password: options.password ?? '' }) },
    command: 'connect',
    destination: { host: options.host ?? '127.0.0.1', port: echoPort },
    timeout: 5000,
  })
  const payload = options.payload ?? 'ping'
  try {
    socket.write(payload)
    let received = ''
    socket.setEncoding('utf8')
    for await (const chunk of socket) {
      received += chunk as string
      if (received.length >= payload.length) break
    }
    return received
  } finally {
    socket.destroy()
  }
}

/** Sends SIGTERM and expects a clean exit (0) after the drain. */
export async function stop(running: Running): Promise<void> {
  running.child.kill('SIGTERM')
  const { code, signal } = await running.exited
  if (code !== 0) throw new Error(`expected exit 0 after SIGTERM, got ${code ?? signal}\nstderr: ${running.stderr()}`)
}
