// A real redis-server for a test: its own free port on 127.0.0.1, no persistence, killed after the
// test. `stop()` and `start()` take it down and bring it back on the same port, for tests of what
// a store does while Redis is gone and after it returns.
//
//   const redis = peer('redis-server')
//   test('...', needs(redis), async (t) => {
//     const server = await startRedis(t)
//     const store = createStore({ type: 'redis', url: server.url })
//     t.after(() => store.close())
//     await server.stop()   // every operation now rejects within the store's timeout
//     await server.start()  // same port: the store reconnects by itself
//   })
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { freePort } from './net.js'
import { peer } from './peers.js'

/** Where a helper registers what to stop after the test: a TestContext, or a suite's list. */
export interface Cleanup {
  after(fn: () => unknown): void
}

export interface RedisServer {
  readonly port: number
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string
  /** True while the server process runs. */
  readonly running: boolean
  /** Kills the server (SIGKILL: as a crash, nothing flushed); resolves once it has exited. */
  stop(): Promise<void>
  /** Starts it again on the same port; resolves once it answers PING. */
  start(): Promise<void>
}

/** Starts a redis-server (the `redis-server` peer: wrap the test in `needs(peer('redis-server'))`). */
export async function startRedis(t: Cleanup, options: { timeout?: number } = {}): Promise<RedisServer> {
  const program = peer('redis-server').path
  const port = await freePort()
  const timeout = options.timeout ?? 5000
  let child: ChildProcess | null = null
  let exited: Promise<unknown> = Promise.resolve()

  const start = async (): Promise<void> => {
    if (child !== null) return
    let output = ''
    const started = spawn(program, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmpdir(), '--loglevel', 'warning'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    started.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    started.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    child = started
    exited = once(started, 'exit').then(() => {
      if (child === started) child = null
    })
    const deadline = Date.now() + timeout
    while (!(await answersPing(port))) {
      if (child !== started) throw new Error(`redis-server exited before answering on port ${port}:\n${output}`)
      if (Date.now() > deadline) throw new Error(`redis-server did not answer PING on port ${port} within ${timeout} ms:\n${output}`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }

  const stop = async (): Promise<void> => {
    if (child === null) return
    child.kill('SIGKILL')
    await exited
  }

  t.after(stop)
  await start()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() {
      return child !== null
    },
    stop,
    start,
  }
}

/** True when a Redis server on `port` answers PING with PONG. */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    let reply = ''
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.on('error', () => done(false))
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      reply += chunk
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'))
    })
  })
}

/** A command of `whileUnsubscribed()`: a Redis command and its arguments. */
export type RedisCommand = readonly [string, ...(string | number)[]]

/** An ioredis client for the test's own commands (MULTI, PUBSUB, ACL), closed after the test. */
export async function adminClient(t: Cleanup, url: string): Promise<import('ioredis').Redis> {
  const { Redis } = await import('ioredis')
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 })
  // The server may be stopped first at the end of the test: its reconnect attempts are no news.
  redis.on('error', () => {})
  t.after(() => redis.disconnect())
  await redis.connect()
  return redis
}

/**
 * Drops every subscriber connection (CLIENT KILL TYPE pubsub), runs `commands`, and reports how
 * many subscribers `channel` had right after: all in one MULTI, so nothing can subscribe again
 * in between and the commands surely ran while nobody was subscribed. Returns each command's
 * reply (a PUBLISH's is how many subscribers heard it) and that count.
 */
export async function whileUnsubscribed(admin: import('ioredis').Redis, channel: string, commands: readonly RedisCommand[]): Promise<{ replies: unknown[]; subscribers: number }> {
  const multi = admin.multi().call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  for (const [name, ...args] of commands) multi.call(name, ...args)
  multi.call('PUBSUB', 'NUMSUB', channel)
  const results = (await multi.exec()) ?? []
  for (const [err] of results) if (err !== null) throw err
  const replies = results.map(([, reply]) => reply)
  const numsub = replies.pop() as [string, number]
  return { replies: replies.slice(1), subscribers: Number(numsub[1]) }
}
