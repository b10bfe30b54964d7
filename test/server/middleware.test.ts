// The phase pipeline: inspect, rewrite, refuse, short-circuit, code after next(), bugs contained.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect as tcpConnect, type Socket } from 'node:net'
import { RawClient, startEcho, startSocks, startTcpServer, ipv4Request, domainRequest, mapResolver, hex, waitFor } from '../helpers/net.js'
import { needs, peer } from '../helpers/peers.js'
import { createServer, SocksError, isSocksError, definePlugin, type ConnectContext } from 'socksmith'
import { silentLogger } from 'socksmith/ops'

const python3 = peer('python3')

async function handshake(c: RawClient, request: Buffer): Promise<Buffer> {
  c.send(Buffer.concat([hex('050100'), request]))
  assert.deepEqual(await c.read(2), hex('0500'))
  return c.read(10)
}

test('phases run in order, each middleware runs code after next()', async (t) => {
  const echo = await startEcho(t)
  const order: string[] = []
  const { port } = await startSocks(t, {}, (server) => {
    for (const phase of ['negotiate', 'auth', 'request', 'connect', 'relay'] as const) {
      server.use(phase, async (_ctx, next) => {
        order.push(`${phase}:before`)
        await next()
        order.push(`${phase}:after`)
      })
    }
  })
  const c = await RawClient.connect(t, port)
  await handshake(c, ipv4Request(1, '127.0.0.1', echo.port))
  c.socket.end()
  await c.readToEnd()
  await waitFor(() => order.length === 10)
  assert.deepEqual(order, [
    'negotiate:before', 'negotiate:after', 'auth:before', 'auth:after', 'request:before', 'request:after',
    'connect:before', 'connect:after', 'relay:before', 'relay:after',
  ])
})

test('a request middleware rewrites the destination', async (t) => {
  const echo = await startEcho(t)
  const { port } = await startSocks(t, {}, (server) => {
    server.use('request', async function redirect(ctx, next) {
      if (ctx.destination.host === '10.9.9.9') ctx.destination = { type: 'ipv4', host: '127.0.0.1', port: echo.port }
      await next()
    })
  })
  const c = await RawClient.connect(t, port)
  assert.equal((await handshake(c, ipv4Request(1, '10.9.9.9', 1)))[1], 0)
  c.send(Buffer.from('ok'))
  assert.equal((await c.read(2)).toString(), 'ok')
  assert.equal(echo.accepted(), 1)
})

test('a SocksError from a middleware becomes its reply code and nothing is dialled', async (t) => {
  const target = await startTcpServer(t, () => {})
  const { port } = await startSocks(t, {}, (server) => {
    server.use('request', async function denyAll() {
      throw new SocksError('ERR_SOCKS_NOT_ALLOWED', 'no')
    })
  })
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', target.port)]))
  assert.deepEqual(await c.expectClose(), hex('0500 05020001000000000000'))
  assert.equal(target.accepted(), 0)
})

test('a negotiate middleware refusing a client gets 05 FF', async (t) => {
  const { port } = await startSocks(t, {}, (server) => {
    server.use('negotiate', async function refuse() {
      throw new SocksError('ERR_SOCKS_NOT_ALLOWED')
    })
  })
  const c = await RawClient.connect(t, port)
  c.send('050100')
  assert.deepEqual(await c.expectClose(), hex('05ff'))
})

test('a bug in a middleware is reported, answers 01, and the server keeps serving', async (t) => {
  const echo = await startEcho(t)
  const errors: unknown[] = []
  let calls = 0
  const { port, server } = await startSocks(t, {}, (s) => {
    s.use('connect', async function buggy(_ctx, next) {
      if (calls++ === 0) throw new TypeError('oops')
      await next()
    })
  })
  server.on('error', (err) => errors.push(err))
  const a = await RawClient.connect(t, port)
  a.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', echo.port)]))
  assert.deepEqual(await a.expectClose(), hex('0500 05010001000000000000'))
  assert.equal(errors.length, 1)
  assert.ok(errors[0] instanceof TypeError)
  const b = await RawClient.connect(t, port)
  assert.equal((await handshake(b, ipv4Request(1, '127.0.0.1', echo.port)))[1], 0)
})

test('a connect middleware can dial itself and choose the reply address', async (t) => {
  const echo = await startEcho(t)
  const { port } = await startSocks(t, {}, (server) => {
    server.use('connect', async function ownDial(ctx: ConnectContext) {
      const socket = tcpConnect({ host: '127.0.0.1', port: echo.port, allowHalfOpen: true })
      await once(socket, 'connect')
      ctx.outbound = socket
      ctx.bound = { type: 'ipv4', host: '1.2.3.4', port: 4321 }
    })
  })
  const c = await RawClient.connect(t, port)
  assert.deepEqual(await handshake(c, domainRequest(1, 'anything.invalid', 1)), hex('05000001 01020304 10e1'))
  c.send(Buffer.from('own'))
  assert.equal((await c.read(3)).toString(), 'own')
})

test('hijack hands the raw socket to a middleware', async (t) => {
  const { port } = await startSocks(t, {}, (server) => {
    server.use('request', async function takeOver(ctx) {
      const socket = ctx.hijack()
      socket.end('HTTP/1.0 200 custom\r\n\r\n')
    })
  })
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', 1)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.match((await c.readToEnd()).toString(), /200 custom/)
})

test('ctx.state has the declared shape and plugins see each other through it', async (t) => {
  const echo = await startEcho(t)
  const seen: unknown[] = []
  const plugin = definePlugin({
    name: 'tagger',
    setup(host) {
      host.declareState('tag' as never, null as never)
      host.use('request', async (ctx, next) => {
        ;(ctx.state as unknown as Record<string, unknown>).tag = `req-${ctx.id}`
        await next()
      })
      host.use('relay', async (ctx, next) => {
        seen.push({ ...ctx.state })
        await next()
      })
    },
  })
  const { port } = await startSocks(t, {}, (server) => server.register(plugin))
  const c = await RawClient.connect(t, port)
  await handshake(c, ipv4Request(1, '127.0.0.1', echo.port))
  assert.equal(seen.length, 1)
  assert.match(String((seen[0] as { tag: string }).tag), /^req-\d+$/)
})

test('use() and register() after listen() throw ERR_SOCKS_REGISTER_AFTER_START', async (t) => {
  const { server } = await startSocks(t)
  assert.throws(() => server.use('request', async () => {}), (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_REGISTER_AFTER_START')
  assert.throws(() => server.register(definePlugin({ name: 'late', setup() {} })), (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_REGISTER_AFTER_START')
})

test('plugins: duplicates and missing dependencies are refused by name', () => {
  const server = createServer({ logger: silentLogger })
  const a = definePlugin({ name: 'a', setup() {} })
  const b = definePlugin({ name: 'b', dependencies: ['a'], setup() {} })
  assert.throws(() => server.register(b), /plugin "b" needs "a"/)
  server.register(a)
  assert.throws(() => server.register(a), /registered twice/)
  server.register(b)
  assert.deepEqual(server.plugins, ['a', 'b'])
  assert.throws(() => server.register({ name: 'Bad Name', setup() {} }), (err: unknown) => isSocksError(err) && err.code === 'ERR_PLUGIN_INVALID')
})

test('listening without auth on a non-loopback address is refused unless allowOpenProxy', async () => {
  const server = createServer({ logger: silentLogger })
  await assert.rejects(server.listen({ host: '0.0.0.0', port: 0 }), (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_OPEN_PROXY' && /allowOpenProxy/.test(err.message))
  await server.close()
})

test('connect timeout replies 06 (a listener whose accept queue is full never answers the SYN)', needs(python3), async (t) => {
  // A Python listener with backlog 0 that never accepts: once its queue is full, further SYNs are dropped.
  const py = spawn(python3.path, ['-c', [
    'import socket,sys,time',
    's=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(0)',
    'print(s.getsockname()[1], flush=True)',
    'time.sleep(30)',
  ].join('\n')])
  t.after(() => py.kill())
  const [line] = (await once(py.stdout, 'data')) as [Buffer]
  const blackhole = Number(line.toString().trim())
  // One connection fills the queue (Linux holds backlog + 1); after it, SYNs go unanswered.
  const filler: Socket = tcpConnect({ host: '127.0.0.1', port: blackhole })
  filler.on('error', () => {})
  t.after(() => filler.destroy())
  await once(filler, 'connect')
  const { port } = await startSocks(t, { timeouts: { connect: 300 } })
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', blackhole)]))
  assert.deepEqual(await c.expectClose(5000), hex('0500 05060001000000000000'))
})

test('maxConnections: connections over the limit are closed at once', async (t) => {
  const echo = await startEcho(t)
  const { port } = await startSocks(t, { maxConnections: 1 })
  const a = await RawClient.connect(t, port)
  assert.equal((await handshake(a, ipv4Request(1, '127.0.0.1', echo.port)))[1], 0)
  const b = await RawClient.connect(t, port)
  b.send('050100')
  assert.equal((await b.expectClose()).length, 0)
})

test('happy eyeballs: a name with a dead IPv6 and a live IPv4 address still connects', async (t) => {
  const echo = await startEcho(t)
  const dead = await startTcpServer(t, () => {}, '::1')
  dead.server.close()
  const resolver = mapResolver({ 'dual.test': ['::1', '127.0.0.1'] })
  // Both addresses use the same port number: the IPv6 one is closed, the IPv4 one is the echo server.
  const deadPort = echo.port
  const { port } = await startSocks(t, { resolver })
  const c = await RawClient.connect(t, port)
  const reply = await handshake(c, domainRequest(1, 'dual.test', deadPort))
  assert.equal(reply[1], 0)
  c.send(Buffer.from('v4'))
  assert.equal((await c.read(2)).toString(), 'v4')
})

test('a client that resets during the connect phase aborts ctx.signal at once', async (t) => {
  let aborted!: () => void
  const abortSeen = new Promise<void>((resolve) => (aborted = resolve))
  const { port } = await startSocks(t, {}, (server) => {
    server.use('connect', async function slowDial(ctx: ConnectContext) {
      // Stands for a dial that takes long: it ends only when the client goes away.
      await once(ctx.signal, 'abort')
      aborted()
      throw ctx.signal.reason
    })
  })
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', 9)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  c.socket.resetAndDestroy()
  await abortSeen
})
