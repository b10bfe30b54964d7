// The access log (one line per connection) and the pino adapter, over real sockets.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { createServer, type Logger, type LogLineLevel, type SocksServer } from 'socksmith'
import { createLogger, fromPino } from 'socksmith/ops'
import { socksConnect } from 'socksmith/client'
import auth from 'socksmith/plugins/auth'
import rules from 'socksmith/plugins/rules'
import upstream from 'socksmith/plugins/upstream'
import { mapResolver, startEcho, startSocks, trackClient } from '../helpers/net.js'

const PASSWORD = 'correct-horse-battery'

interface Line {
  level: LogLineLevel
  message: string
  fields: Record<string, unknown> | undefined
}

/** A logger that keeps every line; `enabled` is what it says is on. */
function capturingLogger(enabled: readonly LogLineLevel[] = ['error', 'warn', 'info', 'debug']): Logger & { lines: Line[]; access(): Record<string, unknown>[] } {
  const lines: Line[] = []
  const at = (level: LogLineLevel) => (message: string, fields?: Record<string, unknown>) => void lines.push({ level, message, fields })
  return {
    lines,
    access: () => lines.filter((l) => l.message === 'access').map((l) => l.fields ?? {}),
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    isLevelEnabled: (level) => enabled.includes(level),
  }
}

/** A writable that collects what a logger writes. */
function sink(): Writable & { text(): string } {
  let text = ''
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      text += chunk.toString()
      callback()
    },
  })
  return Object.assign(stream, { text: () => text })
}

/** One CONNECT through `port` that sends `payload` and reads the echo, then closes; resolves when the server saw it end. */
async function echoOnce(t: TestContext, server: SocksServer, port: number, destination: { host: string; port: number }, payload: string, login?: { username: string; password: string }): Promise<number> {
  const ended = once(server, 'disconnect')
  const { socket } = await socksConnect({ host: '127.0.0.1', port, ...login }, destination)
  trackClient(t, socket)
  const clientPort = socket.localPort!
  socket.end(payload)
  let echoed = ''
  for await (const chunk of socket) echoed += String(chunk)
  assert.equal(echoed, payload)
  await ended
  return clientPort
}

function withAuth(server: SocksServer): void {
  server.register(auth, { users: { alice: PASSWORD } })
}

test('a successful CONNECT: one info line with every field, never the password', async (t) => {
  const echo = await startEcho(t)
  const log = capturingLogger()
  const { server, port } = await startSocks(t, { logger: log, accessLog: true, resolver: mapResolver({ 'echo.test': ['127.0.0.1'] }) }, withAuth)
  const clientPort = await echoOnce(t, server, port, { host: 'echo.test', port: echo.port }, 'hello, access log', { username: 'alice', password: PASSWORD })

  const [line, ...more] = log.lines.filter((l) => l.message === 'access')
  assert.equal(more.length, 0, 'one line per connection')
  assert.equal(line?.level, 'info')
  const { durationMs, ...fields } = line!.fields!
  assert.deepEqual(fields, {
    id: 1,
    client: `127.0.0.1:${clientPort}`,
    user: 'alice',
    command: 'connect',
    destination: `echo.test:${echo.port}`,
    dialed: `127.0.0.1:${echo.port}`,
    via: null,
    reply: 0,
    bytesFromClient: 17,
    bytesToClient: 17,
    error: null,
    reason: null,
    protocol: 'socks5',
  })
  assert.equal(typeof durationMs, 'number')
  assert.ok((durationMs as number) >= 0 && (durationMs as number) < 5000)
  // Debug is on too: no line at any level carries the password.
  assert.ok(!JSON.stringify(log.lines).includes(PASSWORD))
})

test('refused connections: a rule refusal (REP 02) and a wrong password, each with its error code', async (t) => {
  const echo = await startEcho(t)
  const log = capturingLogger()
  const { server, port } = await startSocks(t, { logger: log, accessLog: true }, (s) => {
    withAuth(s)
    s.register(rules, { rules: [{ action: 'deny', ports: echo.port }] })
  })

  let ended = once(server, 'disconnect')
  await assert.rejects(socksConnect({ host: '127.0.0.1', port, username: 'alice', password: PASSWORD }, { host: '127.0.0.1', port: echo.port }), /not allowed|REP|02/i)
  await ended
  ended = once(server, 'disconnect')
  const wrong = `${PASSWORD}-wrong`
  await assert.rejects(socksConnect({ host: '127.0.0.1', port, username: 'alice', password: wrong }, { host: '127.0.0.1', port: echo.port }))
  await ended

  const [denied, badLogin] = log.access()
  assert.equal(log.access().length, 2)
  assert.deepEqual({ ...denied, client: null, durationMs: null }, {
    id: 1,
    client: null,
    user: 'alice',
    command: 'connect',
    destination: `127.0.0.1:${echo.port}`,
    dialed: null,
    via: null,
    reply: 2,
    bytesFromClient: 0,
    bytesToClient: 0,
    durationMs: null,
    error: 'ERR_SOCKS_NOT_ALLOWED',
    reason: null,
    protocol: 'socks5',
  })
  // Authentication failed: no request was read, so there is no command or destination.
  assert.deepEqual({ ...badLogin, client: null, durationMs: null }, {
    id: 2,
    client: null,
    user: null,
    command: null,
    destination: null,
    dialed: null,
    via: null,
    reply: null,
    bytesFromClient: 0,
    bytesToClient: 0,
    durationMs: null,
    error: 'ERR_SOCKS_AUTH_FAILED',
    reason: null,
    protocol: 'socks5',
  })
  const everything = JSON.stringify(log.lines)
  assert.ok(!everything.includes(PASSWORD), 'neither the right password nor the wrong one is logged')
})

test('a connection routed by the upstream plugin names the upstream (without its password)', async (t) => {
  const echo = await startEcho(t)
  const back = await startSocks(t, {}, (s) => s.register(auth, { users: { hop: 'hop-secret' } }))
  const log = capturingLogger()
  const { server, port } = await startSocks(t, { logger: log, accessLog: true }, (s) => s.register(upstream, { proxy: `socks5://hop:hop-secret@127.0.0.1:${back.port}` }))
  await echoOnce(t, server, port, { host: '127.0.0.1', port: echo.port }, 'via')
  const [line] = log.access()
  assert.equal(line?.via, `socks5://hop@127.0.0.1:${back.port}`)
  assert.equal(line?.dialed, `127.0.0.1:${echo.port}`)
  assert.ok(!JSON.stringify(log.lines).includes('hop-secret'))
})

test('nothing is logged or built when info is off, or when the access log is off', async (t) => {
  const echo = await startEcho(t)
  // The level says info is off: the access log must not even call the logger.
  const quiet = capturingLogger(['error', 'warn'])
  const a = await startSocks(t, { logger: quiet, accessLog: true })
  await echoOnce(t, a.server, a.port, { host: '127.0.0.1', port: echo.port }, 'x')
  assert.deepEqual(quiet.access(), [])

  // The built-in logger and pino at warn write nothing for a connection.
  const textOut = sink()
  const b = await startSocks(t, { logger: createLogger('warn', textOut), accessLog: true })
  await echoOnce(t, b.server, b.port, { host: '127.0.0.1', port: echo.port }, 'x')
  const pinoOut = sink()
  const c = await startSocks(t, { logger: fromPino(pino({ level: 'warn' }, pinoOut)), accessLog: true })
  await echoOnce(t, c.server, c.port, { host: '127.0.0.1', port: echo.port }, 'x')
  assert.equal(textOut.text(), '')
  assert.equal(pinoOut.text(), '')

  // The default: no access log, and no listener on the server for it.
  const off = capturingLogger()
  const d = await startSocks(t, { logger: off })
  assert.equal(d.server.listenerCount('disconnect'), 0)
  await echoOnce(t, d.server, d.port, { host: '127.0.0.1', port: echo.port }, 'x')
  assert.deepEqual(off.access(), [])
})

test('fromPino: JSON lines with the fields as properties; the level follows pino', async (t) => {
  const echo = await startEcho(t)
  const out = sink()
  const logger = pino({ level: 'info' }, out)
  const { server, port } = await startSocks(t, { logger: fromPino(logger), accessLog: true })
  await echoOnce(t, server, port, { host: '127.0.0.1', port: echo.port }, 'pino')
  const lines = out.text().trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  const access = lines.filter((l) => l.msg === 'access')
  assert.equal(access.length, 1)
  assert.equal(access[0]!.level, 30)
  assert.equal(access[0]!.reply, 0)
  assert.equal(access[0]!.bytesFromClient, 4)
  assert.equal(access[0]!.destination, `127.0.0.1:${echo.port}`)

  logger.level = 'warn'
  const before = out.text()
  await echoOnce(t, server, port, { host: '127.0.0.1', port: echo.port }, 'quiet')
  assert.equal(out.text(), before, 'a level raised at run time silences the access log')
})

test('reload() turns the access log on and off with the new configuration', async (t) => {
  const echo = await startEcho(t)
  const log = capturingLogger()
  const { server, port } = await startSocks(t, { logger: log, accessLog: false })
  await server.reload(createServer({ logger: log, accessLog: true }))
  await echoOnce(t, server, port, { host: '127.0.0.1', port: echo.port }, 'on')
  assert.equal(log.access().length, 1)
  await server.reload(createServer({ logger: log, accessLog: false }))
  await echoOnce(t, server, port, { host: '127.0.0.1', port: echo.port }, 'off')
  assert.equal(log.access().length, 1)
})
