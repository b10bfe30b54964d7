// Running real client programs (curl, ncat, PySocks...) against our servers.
import { execFile, type ExecFileOptions } from 'node:child_process'
import { createServer as createHttpServer } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs a program to completion (bounded by `timeout` ms) and returns its exit code and output. */
export function run(file: string, args: string[], options: ExecFileOptions & { input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { timeout: 15_000, encoding: 'utf8', ...options }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
    if (options.input !== undefined) child.stdin?.end(options.input)
  })
}

/** An HTTP server on loopback answering `hello <path>`; `requests` counts what it served. */
export async function startHttp(t: TestContext, host = '127.0.0.1'): Promise<{ port: number; requests: () => number }> {
  let requests = 0
  const server = createHttpServer((req, res) => {
    requests++
    res.setHeader('connection', 'close')
    res.end(`hello ${req.url}`)
  })
  server.listen(0, host)
  await once(server, 'listening')
  t.after(() => {
    server.closeAllConnections()
    server.close()
  })
  return { port: (server.address() as AddressInfo).port, requests: () => requests }
}
