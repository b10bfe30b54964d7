import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { createServer, SocksError, Method, type SocksServer, type ServerOptions } from 'socksmith'
import { socksAssociate, socksBind, socksConnect, type Address } from 'socksmith/client'
import upstream, { parseProxyUrl } from 'socksmith/plugins/upstream'
import rules from 'socksmith/plugins/rules'
import { RawClient, freePort, hex, domainRequest, ipv4Request, mapResolver, startEcho, startSocks, startTcpServer, startUdpEcho, trackClient, waitFor } from '../helpers/net.js'
import { startHttpProxy } from '../helpers/http-proxy.js'
import { startSocks4Proxy } from '../helpers/socks4-proxy.js'
import { needs, peer } from '../helpers/peers.js'

const microsocksPeer = peer('microsocks')
const danted = peer('danted')

// ---- fixtures ----

interface Seen {
  command: string
  type: Address['type']
  host: string
  port: number
  user: string | null
}

/** A socksmith server used as an upstream; `seen` records every request it got at the connect phase. */
async function startUpstreamSocks(t: TestContext, options: ServerOptions & { host?: string; log?: string[]; name?: string } = {}, configure?: (server: SocksServer) => void) {
  const { log, name, ...serverOptions } = options
  const seen: Seen[] = []
  const datagrams: { direction: string; type: Address['type']; host: string; port: number }[] = []
  const started = await startSocks(t, { resolver: mapResolver({ 'echo.test': ['127.0.0.1'], 'x.b.test': ['127.0.0.1'] }), ...serverOptions }, (server) => {
    server.use('connect', async function record(ctx, next) {
      seen.push({ command: ctx.commandName, type: ctx.destination.type, host: ctx.destination.host, port: ctx.destination.port, user: ctx.user })
      log?.push(name ?? '?')
      await next()
    })
    server.use('datagram', async function recordDatagram(dctx, next) {
      datagrams.push({ direction: dctx.direction, type: dctx.peer.type, host: dctx.peer.host, port: dctx.peer.port })
      await next()
    })
    configure?.(server)
  })
  return { ...started, seen, datagrams, url: (scheme = 'socks5') => `${scheme}://127.0.0.1:${started.port}` }
}

/** The proxy under test: socksmith with the upstream plugin. */
async function startFront(t: TestContext, options: unknown, serverOptions: ServerOptions = {}, configure?: (server: SocksServer) => void) {
  const resolver = mapResolver({ 'echo.test': ['127.0.0.1'], 'x.b.test': ['127.0.0.1'], 'evil.test': ['10.1.2.3'] })
  const started = await startSocks(t, { resolver, ...serverOptions }, (server) => {
    configure?.(server)
    server.register(upstream, options)
  })
  return { ...started, resolver }
}

/** CONNECTs through the front, sends "ping", half-closes and expects the echo back and the end. */
async function echoThrough(t: TestContext, frontPort: number, destination: { host: string; port: number }, login?: { username: string; password: string }) {
  const { socket, bound } = await socksConnect({ host: '127.0.0.1', port: frontPort, ...login }, destination)
  trackClient(t, socket)
  // Echo first, then half-close: microsocks tears both ways down on the first EOF it reads.
  const rest = readToEnd(socket)
  socket.write('ping')
  await waitFor(() => received(socket) >= 4)
  socket.end()
  assert.equal(await rest, 'ping')
  return bound
}

const receivedBytes = new WeakMap<Socket, number>()
function received(socket: Socket): number {
  return receivedBytes.get(socket) ?? 0
}

async function readToEnd(socket: Socket): Promise<string> {
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk)
    receivedBytes.set(socket, received(socket) + chunk.length)
  })
  await once(socket, 'end')
  return Buffer.concat(chunks).toString()
}

/** Sends a NO AUTH greeting and a request; returns the 10-byte reply (the connection then closes). */
async function rawReply(t: TestContext, port: number, request: Buffer): Promise<Buffer> {
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), request]))
  assert.deepEqual(await c.read(2), hex('0500'))
  const reply = await c.read(10)
  await c.expectClose()
  c.socket.end()
  return reply
}

/** A TCP server that accepts and never answers (a hung upstream); `ended()` counts connections our side closed. */
async function startSilentServer(t: TestContext) {
  let ended = 0
  const server = await startTcpServer(t, (socket) => {
    socket.resume()
    socket.on('end', () => {
      ended++
      socket.end()
    })
  })
  return { ...server, ended: () => ended }
}

/** The `upstream` of every `socksmith:upstream:failure` published during the test. */
function recordUpstreamFailures(t: TestContext): string[] {
  const failures: string[] = []
  const onFailure = (message: unknown): void => {
    failures.push((message as { upstream: string }).upstream)
  }
  subscribe('socksmith:upstream:failure', onFailure)
  t.after(() => unsubscribe('socksmith:upstream:failure', onFailure))
  return failures
}

/** A TCP forwarder that counts the connections it passes on (to count what reaches a third-party proxy). */
async function startCountingForwarder(t: TestContext, targetPort: number) {
  return startTcpServer(t, (socket) => {
    const out = connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true })
    out.on('error', () => socket.destroy())
    socket.on('close', () => out.destroy())
    socket.pipe(out).pipe(socket)
  })
}

/** Lets a front accept username/password and take the user name as `ctx.user` (any password). */
function acceptAnyLogin(server: SocksServer): void {
  server.use('negotiate', async function pickPassword(ctx, next) {
    if (ctx.offeredMethods.includes(Method.USERNAME_PASSWORD)) ctx.method = Method.USERNAME_PASSWORD
    await next()
  })
  server.use('auth', async function takeUser(ctx, next) {
    if (ctx.credentials !== null) ctx.user = ctx.credentials.username
    await next()
  })
}

/** Polls until something accepts on the port (third-party daemons announce nothing we can wait on). */
async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 5000
  while (child.exitCode === null && Date.now() < deadline) {
    const listening = await new Promise<boolean>((resolve) => {
      const probe = connect({ host: '127.0.0.1', port })
      probe.once('connect', () => {
        probe.destroy()
        resolve(true)
      })
      probe.once('error', () => resolve(false))
    })
    if (listening) return
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error(`${child.spawnfile} did not start listening on ${port}`)
}

async function startMicrosocks(t: TestContext): Promise<number> {
  const port = await freePort()
  const child = spawn(microsocksPeer.path, ['-i', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' })
  t.after(() => {
    child.kill()
  })
  await waitForPort(port, child)
  return port
}

// ---- URL and option parsing ----

test('proxy URLs: schemes, default ports, bracketed IPv6, decoded userinfo, hidden password', () => {
  const a = parseProxyUrl('socks5h://alice:s%40cret@[::1]:1081')
  assert.equal(a.protocol, 'socks5h')
  assert.equal(a.host, '::1')
  assert.equal(a.port, 1081)
  assert.equal(a.username, 'alice')
  assert.equal(a.password, 's@cret')
  assert.equal(a.label, 'socks5h://alice@[::1]:1081')
  assert.ok(!JSON.stringify(a).includes('s@cret'), 'the password is not enumerable')
  assert.equal(parseProxyUrl('socks4://127.0.0.1').port, 1080)
  assert.equal(parseProxyUrl('http://Proxy.Example:3128/').host, 'proxy.example')
  assert.equal(parseProxyUrl('http://proxy.example').port, 80)
  assert.equal(parseProxyUrl('socks4a://me@10.0.0.1:1080').username, 'me')
  for (const [url, message] of [
    ['ftp://127.0.0.1:21', /unsupported scheme "ftp:"/],
    ['127.0.0.1:1080', /not a proxy URL/],
    ['socks5://127.0.0.1:0', /port must be 1-65535/],
    ['socks5://127.0.0.1:1080/path', /no path/],
    ['socks5://user@127.0.0.1:1080', /needs a password/],
    ['socks4://user:pw@127.0.0.1', /no passwords/],
    ['socks5://::1:1080', /valid|IP address/],
  ] as const) {
    assert.throws(() => parseProxyUrl(url), message, url)
  }
  assert.throws(() => parseProxyUrl('socks5://alice:hunter2@bad host:1'), (err: Error) => !err.message.includes('hunter2'))
})

test('options are validated with field paths, and unknown keys are refused', () => {
  const fails = (options: unknown, message: RegExp) => assert.throws(() => createServer().register(upstream, options), (err: SocksError) => {
    assert.equal(err.code, 'ERR_PLUGIN_OPTIONS')
    assert.match(err.message, message)
    return true
  })
  fails({ chain: ['socks5://127.0.0.1:1', 'ftp://127.0.0.1:2'] }, /^plugin upstream: chain\[1\]: unsupported scheme "ftp:"/)
  fails({ proxy: 'socks5://127.0.0.1:1', pool: ['socks5://127.0.0.1:2'] }, /pool: give only one of proxy, chain and pool/)
  fails({ proxy: 'socks5://127.0.0.1:1', strategy: 'round-robin' }, /strategy: applies to a pool only/)
  fails({ pool: ['socks5://127.0.0.1:1'], strategy: 'random' }, /strategy: must be "failover" or "round-robin"/)
  fails({ proxi: 'socks5://127.0.0.1:1' }, /proxi: unknown key; did you mean "proxy"\?/)
  fails({}, /give an upstream/)
  fails({ routes: [{ match: { users: ['alice', 7] }, proxy: 'socks5://127.0.0.1:1' }] }, /routes\[0\]\.match\.users\[1\]/)
  fails({ routes: [{ match: { user: 'alice' }, proxy: 'socks5://127.0.0.1:1' }] }, /routes\[0\]\.match\.user: unknown key; did you mean "users"\?/)
  fails({ routes: [{ match: { users: 'alice' } }] }, /routes\[0\]: needs a target/)
  fails({ routes: [{ match: { users: 'alice' }, direct: true, proxy: 'socks5://127.0.0.1:1' }] }, /routes\[0\]: give either direct/)
  fails({ routes: [{ proxy: 'socks5://127.0.0.1:1' }] }, /routes\[0\]\.match: is required/)
  fails({ proxy: 'socks5://127.0.0.1:1', cooldown: -1 }, /cooldown: must be a non-negative number/)
  fails({ proxy: 'socks5://127.0.0.1:1', handshakeTimeout: 0 }, /handshakeTimeout: must be a positive number of seconds, found number 0/)
  fails({ proxy: 'socks5://127.0.0.1:1', handshakeTimeout: '5s' }, /handshakeTimeout: must be a positive number of seconds, found "5s"/)
  fails({ chain: [['socks5://127.0.0.1:1']] }, /chain\[0\]: must be one proxy URL \(or \{ url, tls \}\), found a list: a list is a chain, and only a pool member can be one/)
  fails({ pool: [] }, /pool: must be a non-empty list of upstreams/)
  // Every bad hop of every pool member, and the other fields, in one pass.
  assert.throws(() => createServer().register(upstream, {
    pool: ['socks5://127.0.0.1:1', ['socks5://127.0.0.1:2', 'ftp://127.0.0.1:3', { url: 'socks5://127.0.0.1:4', tls: {} }], [], 7],
    cooldown: -1,
  } as unknown), (err: SocksError) => {
    assert.equal(err.code, 'ERR_PLUGIN_OPTIONS')
    assert.deepEqual(err.message.split('\n').map((line) => line.replace(/^plugin upstream: ([^:]+):.*$/, '$1')), ['pool[1][1]', 'pool[1][2].tls', 'pool[2]', 'pool[3]', 'cooldown'])
    assert.match(err.message, /pool\[2\]: a chain in a pool needs at least one proxy URL, found an empty list/)
    return true
  })
  // A function match is accepted in a JS/TS config.
  createServer().register(upstream, { routes: [{ match: () => true, proxy: 'socks5://127.0.0.1:1' }] })
})

// ---- CONNECT through each kind of upstream ----

test('socks5:// resolves the name locally and sends the IP; BND is the upstream\'s', async (t) => {
  const peers: number[] = []
  const echo = await startTcpServer(t, (socket) => {
    peers.push(socket.remotePort!)
    socket.pipe(socket)
  })
  const up = await startUpstreamSocks(t)
  const front = await startFront(t, { proxy: up.url('socks5') })
  const bound = await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  assert.deepEqual(up.seen, [{ command: 'connect', type: 'ipv4', host: '127.0.0.1', port: echo.port, user: null }])
  assert.deepEqual(front.resolver.calls, ['echo.test'])
  assert.deepEqual([bound.port], peers, 'BND names the upstream\'s outgoing socket, which the target saw')
})

test('socks5h:// sends the name to the upstream unchanged', async (t) => {
  const echo = await startEcho(t)
  const up = await startUpstreamSocks(t)
  const front = await startFront(t, { proxy: up.url('socks5h') })
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  assert.deepEqual(up.seen, [{ command: 'connect', type: 'domain', host: 'echo.test', port: echo.port, user: null }])
  assert.deepEqual(front.resolver.calls, [], 'the front never resolved the name')
})

test('socks5:// logs in with the URL\'s user name and password (RFC 1929)', async (t) => {
  const echo = await startEcho(t)
  const passwords: string[] = []
  const up = await startUpstreamSocks(t, {}, (server) => {
    server.use('negotiate', async function pickPassword(ctx, next) {
      if (ctx.offeredMethods.includes(Method.USERNAME_PASSWORD)) ctx.method = Method.USERNAME_PASSWORD
      await next()
    })
    server.use('auth', async function check(ctx, next) {
      passwords.push(ctx.credentials?.password ?? '')
      if (ctx.credentials?.username !== 'carol' || ctx.credentials.password !== 'p@ss:word') throw new SocksError('ERR_SOCKS_AUTH_FAILED')
      ctx.user = 'carol'
      await next()
    })
  })
  const front = await startFront(t, { proxy: `socks5h://carol:p%40ss%3Aword@127.0.0.1:${up.port}` })
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  assert.equal(up.seen[0]!.user, 'carol')
  assert.deepEqual(passwords, ['p@ss:word'])
})

test('socks4a:// sends the name with the user id; socks4:// needs an IPv4 and resolves locally', async (t) => {
  const echo = await startEcho(t)
  const socks4 = await startSocks4Proxy(t, { 'echo.test': '127.0.0.1' })
  const frontA = await startFront(t, { proxy: `socks4a://tester@127.0.0.1:${socks4.port}` })
  await echoThrough(t, frontA.port, { host: 'echo.test', port: echo.port })
  assert.deepEqual(socks4.requests, [{ host: 'echo.test', port: echo.port, userId: 'tester', socks4a: true }])
  const front4 = await startFront(t, { proxy: `socks4://127.0.0.1:${socks4.port}` })
  await echoThrough(t, front4.port, { host: 'echo.test', port: echo.port })
  assert.deepEqual(socks4.requests[1], { host: '127.0.0.1', port: echo.port, userId: '', socks4a: false })
  // SOCKS4 has no IPv6: REP 08, and the upstream is not asked.
  const c = await RawClient.connect(t, front4.port)
  c.send(hex('050100 05010004 00000000000000000000000000000001 0050'))
  assert.deepEqual(await c.read(12), hex('0500 05080001000000000000'))
  await c.expectClose()
  assert.equal(socks4.requests.length, 2)
  // A SOCKS4 refusal (91) becomes REP 01.
  assert.deepEqual(await rawReply(t, frontA.port, domainRequest(1, 'unknown.test', 80)), hex('05010001000000000000'))
})

test('http:// tunnels with CONNECT and basic auth; a refused login is REP 01', async (t) => {
  const echo = await startEcho(t)
  const proxy = await startHttpProxy(t, { username: 'alice', password: 's3cret:x', hosts: { 'echo.test': '127.0.0.1' } })
  const front = await startFront(t, { proxy: `http://alice:s3cret%3Ax@127.0.0.1:${proxy.port}` })
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  assert.deepEqual(proxy.requests, [`echo.test:${echo.port}`], 'the name went to the HTTP proxy unchanged')
  assert.deepEqual(proxy.credentials, ['alice:s3cret:x'])
  const wrong = await startFront(t, { proxy: `http://alice:nope@127.0.0.1:${proxy.port}` })
  assert.deepEqual(await rawReply(t, wrong.port, ipv4Request(1, '127.0.0.1', echo.port)), hex('05010001000000000000'))
  assert.equal(echo.accepted(), 1, 'the destination was reached only by the good login')
})

test('microsocks as an upstream: every connection passes through it', needs(microsocksPeer), async (t) => {
  const echo = await startEcho(t)
  const microsocks = await startMicrosocks(t)
  const forwarder = await startCountingForwarder(t, microsocks)
  const front = await startFront(t, { proxy: `socks5://127.0.0.1:${forwarder.port}` })
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  await echoThrough(t, front.port, { host: '127.0.0.1', port: echo.port })
  assert.equal(forwarder.accepted(), 2)
  assert.equal(echo.accepted(), 2)
})

test('a 2-hop chain: microsocks, then socksmith reached through it, which gets the name', needs(microsocksPeer), async (t) => {
  const echo = await startEcho(t)
  const microsocks = await startMicrosocks(t)
  const forwarder = await startCountingForwarder(t, microsocks)
  const up = await startUpstreamSocks(t)
  const front = await startFront(t, { chain: [`socks5://127.0.0.1:${forwarder.port}`, up.url('socks5h')] })
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  assert.equal(forwarder.accepted(), 1, 'hop 1 carried the connection')
  assert.deepEqual(up.seen, [{ command: 'connect', type: 'domain', host: 'echo.test', port: echo.port, user: null }])
  assert.deepEqual(front.resolver.calls, [])
})

test('a chain through an HTTP proxy to a SOCKS5 hop, and a dead second hop is REP 01', async (t) => {
  const echo = await startEcho(t)
  const proxy = await startHttpProxy(t)
  const up = await startUpstreamSocks(t)
  const front = await startFront(t, { chain: [`http://127.0.0.1:${proxy.port}`, up.url('socks5h')] })
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  assert.deepEqual(proxy.requests, [`127.0.0.1:${up.port}`])
  assert.equal(up.seen.length, 1)
  const dead = await freePort()
  const broken = await startFront(t, { chain: [`http://127.0.0.1:${proxy.port}`, `socks5://127.0.0.1:${dead}`] })
  assert.deepEqual(await rawReply(t, broken.port, ipv4Request(1, '127.0.0.1', echo.port)), hex('05010001000000000000'), 'the HTTP hop\'s 502 for the next hop is not the destination\'s fault')
})

test('an upstream on [::1], and a server that speaks first through SOCKS4a and HTTP', async (t) => {
  const echo = await startEcho(t)
  const up = await startUpstreamSocks(t, { host: '::1' })
  const front = await startFront(t, { proxy: `socks5h://[::1]:${up.port}` })
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  assert.equal(up.seen.length, 1)
  // The banner can arrive in the same segment as the proxy's answer: it must not be lost in the handshake.
  const banner = await startTcpServer(t, (socket) => socket.end('220 hello\r\n'))
  const socks4 = await startSocks4Proxy(t, { 'banner.test': '127.0.0.1' })
  const http = await startHttpProxy(t, { hosts: { 'banner.test': '127.0.0.1' } })
  for (const url of [`socks4a://127.0.0.1:${socks4.port}`, `http://127.0.0.1:${http.port}`]) {
    const via = await startFront(t, { proxy: url })
    const { socket } = await socksConnect({ host: '127.0.0.1', port: via.port }, { host: 'banner.test', port: banner.port })
    trackClient(t, socket)
    assert.equal(await readToEnd(socket), '220 hello\r\n', url)
    socket.end()
  }
})

// ---- failures ----

test('the upstream\'s failure reply is passed back; an unreachable upstream is REP 01', async (t) => {
  const echo = await startEcho(t)
  const up = await startUpstreamSocks(t, {}, (server) => {
    server.use('connect', async function denyPort(ctx, next) {
      if (ctx.destination.port === 25) throw new SocksError('ERR_SOCKS_NOT_ALLOWED', 'no SMTP')
      await next()
    })
  })
  const front = await startFront(t, { proxy: up.url() })
  assert.deepEqual(await rawReply(t, front.port, ipv4Request(1, '127.0.0.1', 25)), hex('05020001000000000000'))
  const closed = await freePort()
  assert.deepEqual(await rawReply(t, front.port, ipv4Request(1, '127.0.0.1', closed)), hex('05050001000000000000'), 'the upstream\'s "connection refused" comes through as 05')
  const dead = await startFront(t, { proxy: `socks5://127.0.0.1:${closed}` })
  assert.deepEqual(await rawReply(t, dead.port, ipv4Request(1, '127.0.0.1', echo.port)), hex('05010001000000000000'), 'not 05: the destination did not refuse')
  assert.equal(echo.accepted(), 0)
})

test('an upstream that never greets is its failure (REP 01); one that greets but never answers the CONNECT is the destination\'s timeout (REP 06); a client leaving mid-dial frees everything', async (t) => {
  const silent = await startSilentServer(t)
  // The handshake step is at most half the connect timeout: the hop's failure is noticed before the connect timeout.
  const front = await startFront(t, { proxy: `socks5://127.0.0.1:${silent.port}` }, { timeouts: { connect: 400 } })
  assert.deepEqual(await rawReply(t, front.port, ipv4Request(1, '127.0.0.1', 9)), hex('05010001000000000000'))
  const greeter = await startTcpServer(t, (socket) => {
    socket.once('data', () => socket.write(hex('0500'))) // NO AUTH, then silence: the request was sent
  })
  const up = await startUpstreamSocks(t)
  const slow = await startFront(t, { pool: [`socks5://127.0.0.1:${greeter.port}`, up.url()] }, { timeouts: { connect: 400 } })
  assert.deepEqual(await rawReply(t, slow.port, ipv4Request(1, '127.0.0.1', 9)), hex('05060001000000000000'))
  assert.equal(up.seen.length, 0, 'no failover: the upstream works, the destination is slow')
  const c = await RawClient.connect(t, front.port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', 9)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  await waitFor(() => silent.accepted() === 2)
  c.socket.destroy()
  await waitFor(() => front.server.connections === 0)
  await waitFor(() => silent.ended() === 2) // the upstream connections were closed too
})

test('failover pool: a dead upstream is skipped for the next connections', async (t) => {
  const echo = await startEcho(t)
  const broken = await startTcpServer(t, (socket) => socket.destroy())
  const up = await startUpstreamSocks(t)
  const front = await startFront(t, { pool: [`socks5://127.0.0.1:${broken.port}`, up.url()], strategy: 'failover' })
  await echoThrough(t, front.port, { host: '127.0.0.1', port: echo.port })
  await echoThrough(t, front.port, { host: '127.0.0.1', port: echo.port })
  await echoThrough(t, front.port, { host: '127.0.0.1', port: echo.port })
  assert.equal(broken.accepted(), 1, 'tried once, then skipped')
  assert.equal(up.seen.length, 3)
})

test('failover pool: a member that accepts but never answers its greeting fails over at handshakeTimeout and cools down', async (t) => {
  const echo = await startEcho(t)
  const hung = await startSilentServer(t)
  const failures = recordUpstreamFailures(t)
  const up = await startUpstreamSocks(t)
  const hungUrl = `socks5://127.0.0.1:${hung.port}`
  const front = await startFront(t, { pool: [hungUrl, up.url()], handshakeTimeout: 0.2 }, { timeouts: { connect: 10_000 } })
  const started = performance.now()
  await echoThrough(t, front.port, { host: '127.0.0.1', port: echo.port })
  const elapsed = performance.now() - started
  assert.ok(elapsed < 5000, `failed over after the 200 ms handshake deadline, not the 10 s connect timeout (took ${Math.round(elapsed)} ms)`)
  assert.deepEqual(failures, [hungUrl], 'the hung member is reported like a refusing one')
  await waitFor(() => hung.ended() === 1) // the hung member's socket was destroyed, not left open
  await echoThrough(t, front.port, { host: '127.0.0.1', port: echo.port })
  assert.equal(hung.accepted(), 1, 'cooling down: the second CONNECT skipped it')
  assert.equal(up.seen.length, 2)
})

test('a handshakeTimeout above half of timeouts.connect is lowered, with a warning, so a hung member is still failed over', async (t) => {
  const echo = await startEcho(t)
  const hung = await startSilentServer(t)
  const up = await startUpstreamSocks(t)
  const warnings: string[] = []
  const logger = { error() {}, info() {}, debug() {}, warn: (message: string) => void warnings.push(message) }
  const front = await startFront(t, { pool: [`socks5://127.0.0.1:${hung.port}`, up.url()], handshakeTimeout: 5 }, { timeouts: { connect: 2000 }, logger })
  assert.deepEqual(warnings.filter((w) => w.includes('handshakeTimeout')), ['upstream: handshakeTimeout 5 s is more than half of timeouts.connect (2 s); using 1 s so that a hung upstream can still be failed over'])
  await echoThrough(t, front.port, { host: '127.0.0.1', port: echo.port })
  assert.equal(up.seen.length, 1, 'the second member carried it within the connect timeout')
})

test('failover pool: an HTTP or SOCKS4 member that never answers is blamed once another member answers for the same destination', async (t) => {
  const echo = await startEcho(t)
  const failures = recordUpstreamFailures(t)
  const hungHttp = await startSilentServer(t)
  const hungSocks4 = await startSilentServer(t)
  const up = await startUpstreamSocks(t)
  const members = [`http://127.0.0.1:${hungHttp.port}`, `socks4://127.0.0.1:${hungSocks4.port}`]
  const front = await startFront(t, { pool: [...members, up.url()], handshakeTimeout: 0.2 }, { timeouts: { connect: 10_000 } })
  const started = performance.now()
  await echoThrough(t, front.port, { host: '127.0.0.1', port: echo.port })
  const elapsed = performance.now() - started
  assert.ok(elapsed < 5000, `failed over after 2 × 200 ms, not the 10 s connect timeout (took ${Math.round(elapsed)} ms)`)
  assert.deepEqual(failures.sort(), [...members].sort(), 'both silent members are reported once the third answered')
  await waitFor(() => hungHttp.ended() === 1 && hungSocks4.ended() === 1)
  await echoThrough(t, front.port, { host: '127.0.0.1', port: echo.port })
  assert.deepEqual([hungHttp.accepted(), hungSocks4.accepted()], [1, 1], 'cooling down: skipped by the next CONNECT')
})

test('failover pool: when no HTTP member answers for a destination, it is the destination\'s timeout (REP 06) and nobody cools down', async (t) => {
  const a = await startSilentServer(t)
  const b = await startSilentServer(t)
  const front = await startFront(t, { pool: [`http://127.0.0.1:${a.port}`, `http://127.0.0.1:${b.port}`], handshakeTimeout: 0.1 }, { timeouts: { connect: 400 } })
  assert.deepEqual(await rawReply(t, front.port, ipv4Request(1, '127.0.0.1', 9)), hex('05060001000000000000'))
  assert.deepEqual([a.accepted(), b.accepted()], [1, 1])
  assert.deepEqual(await rawReply(t, front.port, ipv4Request(1, '127.0.0.1', 9)), hex('05060001000000000000'))
  assert.equal(a.accepted(), 2, 'not skipped: a slow destination is nobody\'s failure')
})

test('failover pool: with cooldown 0 the first upstream is tried again; all dead is REP 01', async (t) => {
  const echo = await startEcho(t)
  const broken = await startTcpServer(t, (socket) => socket.destroy())
  const up = await startUpstreamSocks(t)
  const front = await startFront(t, { pool: [`socks5://127.0.0.1:${broken.port}`, up.url()], cooldown: 0 })
  await echoThrough(t, front.port, { host: '127.0.0.1', port: echo.port })
  await echoThrough(t, front.port, { host: '127.0.0.1', port: echo.port })
  assert.equal(broken.accepted(), 2)
  const dead = await freePort()
  const allDead = await startFront(t, { pool: [`socks5://127.0.0.1:${broken.port}`, `http://127.0.0.1:${dead}`] })
  assert.deepEqual(await rawReply(t, allDead.port, ipv4Request(1, '127.0.0.1', echo.port)), hex('05010001000000000000'))
  assert.equal(broken.accepted(), 3)
})

test('round-robin pool: connections take turns', async (t) => {
  const echo = await startEcho(t)
  const log: string[] = []
  const a = await startUpstreamSocks(t, { log, name: 'a' })
  const b = await startUpstreamSocks(t, { log, name: 'b' })
  const front = await startFront(t, { pool: [a.url(), b.url()], strategy: 'round-robin' })
  for (let i = 0; i < 4; i++) await echoThrough(t, front.port, { host: '127.0.0.1', port: echo.port })
  assert.deepEqual(log, ['a', 'b', 'a', 'b'])
})

test('a pool member that is a chain: both hops carry its connections; when its second hop dies, the pool fails over and skips the chain', async (t) => {
  const echo = await startEcho(t)
  const failures = recordUpstreamFailures(t)
  const hop1 = await startUpstreamSocks(t)
  const hop2 = await startUpstreamSocks(t)
  const single = await startUpstreamSocks(t)
  const chain = [hop1.url('socks5'), hop2.url('socks5h')]
  const front = await startFront(t, { pool: [chain, single.url()], cooldown: 60 })
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  assert.deepEqual(hop1.seen, [{ command: 'connect', type: 'ipv4', host: '127.0.0.1', port: hop2.port, user: null }], 'hop 1 was asked for hop 2')
  assert.deepEqual(hop2.seen, [{ command: 'connect', type: 'domain', host: 'echo.test', port: echo.port, user: null }], 'hop 2 got the name (socks5h)')
  assert.equal(single.seen.length, 0)
  await hop2.server.close({ drainTimeout: 0 })
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  assert.equal(hop1.seen.length, 2, 'the chain was tried: hop 1 could not reach hop 2')
  assert.equal(single.seen.length, 1, 'the other member carried it')
  assert.deepEqual(failures, [`${chain[0]} -> ${chain[1]}`], 'the chain as a whole failed')
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  assert.equal(hop1.seen.length, 2, 'the chain cools down as one member')
  assert.equal(single.seen.length, 2)
})

test('round-robin pool of an HTTP -> SOCKS5 chain and a SOCKS4a proxy: connections take turns, each through every hop of its member', async (t) => {
  const echo = await startEcho(t)
  const http = await startHttpProxy(t)
  const hop = await startUpstreamSocks(t)
  const socks4 = await startSocks4Proxy(t, { 'echo.test': '127.0.0.1' })
  const front = await startFront(t, { pool: [[`http://127.0.0.1:${http.port}`, hop.url('socks5h')], `socks4a://127.0.0.1:${socks4.port}`], strategy: 'round-robin' })
  for (let i = 0; i < 4; i++) await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  assert.deepEqual(http.requests, [`127.0.0.1:${hop.port}`, `127.0.0.1:${hop.port}`])
  assert.deepEqual(hop.seen.map((s) => `${s.host}:${s.port}`), [`echo.test:${echo.port}`, `echo.test:${echo.port}`])
  assert.deepEqual(socks4.requests.map((r) => `${r.host}:${r.port} ${r.socks4a}`), [`echo.test:${echo.port} true`, `echo.test:${echo.port} true`])
  assert.equal(echo.accepted(), 4)
})

// ---- routes ----

test('routes by user, by domain and by function; unmatched traffic goes direct', async (t) => {
  const echo = await startEcho(t)
  const other = await startEcho(t)
  const a = await startUpstreamSocks(t)
  const b = await startUpstreamSocks(t)
  const front = await startFront(t, {
    routes: [
      { match: { users: 'alice' }, proxy: a.url() },
      { match: { domains: '*.b.test' }, proxy: b.url('socks5h') },
      { match: (ctx: { destination: { port: number } }) => ctx.destination.port === other.port, proxy: b.url() },
    ],
  }, {}, acceptAnyLogin)
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port }, { username: 'alice', password: 'x' })
  await echoThrough(t, front.port, { host: 'x.b.test', port: echo.port }, { username: 'bob', password: 'x' })
  await echoThrough(t, front.port, { host: '127.0.0.1', port: other.port }, { username: 'bob', password: 'x' })
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port }, { username: 'bob', password: 'x' })
  assert.deepEqual(a.seen.map((s) => s.host), ['127.0.0.1'])
  assert.deepEqual(b.seen.map((s) => s.host), ['x.b.test', '127.0.0.1'])
  assert.equal(echo.accepted() + other.accepted(), 4, 'the last one went direct')
})

test('a route with a top-level fallback, and direct: true for matched destinations', async (t) => {
  const echo = await startEcho(t)
  const other = await startEcho(t)
  const up = await startUpstreamSocks(t)
  const front = await startFront(t, {
    proxy: up.url('socks5h'),
    routes: [
      { match: { ports: other.port }, direct: true },
      { match: { to: 'private' }, direct: true },
    ],
  })
  await echoThrough(t, front.port, { host: '127.0.0.1', port: other.port })
  assert.equal(up.seen.length, 0, 'the port route went direct')
  assert.equal(other.accepted(), 1)
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  assert.deepEqual(front.resolver.calls, ['echo.test'], 'the `to` condition resolved the name locally')
  assert.deepEqual(up.seen.map((s) => `${s.type} ${s.host}`), ['ipv4 127.0.0.1'], 'loopback is not private: the fallback got the vetted IP, not the name')
})

test('with rules before it, the vetted IP goes upstream and a denied name never does', async (t) => {
  const echo = await startEcho(t)
  const up = await startUpstreamSocks(t)
  const front = await startFront(t, { proxy: up.url('socks5h') }, {}, (server) => {
    server.register(rules, { default: 'allow', rules: [{ action: 'deny', to: '10.0.0.0/8' }] })
  })
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  assert.deepEqual(up.seen.map((s) => `${s.type} ${s.host}`), ['ipv4 127.0.0.1'])
  assert.deepEqual(await rawReply(t, front.port, domainRequest(1, 'evil.test', echo.port)), hex('05020001000000000000'))
  assert.equal(up.seen.length, 1, 'the upstream was never asked for the denied name')
})

// ---- UDP ASSOCIATE and BIND through a SOCKS5 upstream ----

test('UDP ASSOCIATE through a socksmith upstream: datagrams are re-wrapped for its relay', async (t) => {
  const udpEcho = await startUdpEcho(t)
  const up = await startUpstreamSocks(t, { resolver: mapResolver({ 'udp.test': ['127.0.0.1'] }) })
  const front = await startFront(t, { proxy: up.url('socks5h') })
  const association = await socksAssociate({ host: '127.0.0.1', port: front.port })
  t.after(() => association.close())
  association.send(Buffer.from('one'), { host: '127.0.0.1', port: udpEcho.port })
  const [data, from] = (await once(association, 'message')) as [Buffer, Address]
  assert.equal(data.toString(), 'one')
  assert.deepEqual(from, { type: 'ipv4', host: '127.0.0.1', port: udpEcho.port })
  association.send(Buffer.from('two'), { host: 'udp.test', port: udpEcho.port })
  const [data2] = (await once(association, 'message')) as [Buffer]
  assert.equal(data2.toString(), 'two')
  assert.deepEqual(up.seen.map((s) => s.command), ['udp'])
  assert.deepEqual(up.datagrams.filter((d) => d.direction === 'out').map((d) => `${d.type} ${d.host}`), ['ipv4 127.0.0.1', 'domain udp.test'], 'the name went upstream (socks5h)')
  assert.equal(udpEcho.received.length, 2)
  association.close()
  await waitFor(() => front.server.connections === 0 && up.server.connections === 0)
})

test('UDP ASSOCIATE through a chain of two socksmith hops: one header per hop, replies unwrapped, and the end closes every hop\'s control connection', async (t) => {
  const udpEcho = await startUdpEcho(t)
  const hop1 = await startUpstreamSocks(t)
  const hop2 = await startUpstreamSocks(t, { resolver: mapResolver({ 'udp.test': ['127.0.0.1'] }) })
  const front = await startFront(t, { chain: [hop1.url('socks5'), hop2.url('socks5h')] })
  const association = await socksAssociate({ host: '127.0.0.1', port: front.port })
  t.after(() => association.close())
  // Hop 2's association is opened through a tunnel across hop 1, so it comes from hop 1's side.
  assert.deepEqual(hop1.seen.map((s) => `${s.command} ${s.host}:${s.port}`), [`connect 127.0.0.1:${hop2.port}`, `udp 0.0.0.0:${hop1.seen[1]?.port}`])
  assert.notEqual(hop1.seen[1]!.port, 0, 'hop 1 was told the port the front sends from')
  assert.deepEqual(hop2.seen.map((s) => `${s.command} ${s.host}:${s.port}`), ['udp 0.0.0.0:0'], 'hop 2 was told the sender is not known (hop 1\'s relay picks it)')
  for (const [payload, host] of [['one', '127.0.0.1'], ['two', 'udp.test']] as const) {
    association.send(Buffer.from(payload), { host, port: udpEcho.port })
    const [data, from] = (await once(association, 'message')) as [Buffer, Address]
    assert.equal(data.toString(), payload)
    assert.deepEqual(from, { type: 'ipv4', host: '127.0.0.1', port: udpEcho.port })
  }
  const out = (d: { direction: string }) => d.direction === 'out'
  const relay2 = hop1.datagrams.filter(out).map((d) => `${d.type} ${d.host}:${d.port}`)
  assert.equal(relay2.length, 2)
  assert.ok(relay2.every((d) => d === relay2[0] && d !== `ipv4 127.0.0.1:${udpEcho.port}`), `hop 1 sent both to hop 2's relay, never to the echo: ${relay2.join(', ')}`)
  assert.deepEqual(hop2.datagrams.filter(out).map((d) => `${d.type} ${d.host}:${d.port}`), [`ipv4 127.0.0.1:${udpEcho.port}`, `domain udp.test:${udpEcho.port}`], 'hop 2 sent them on, the name as it is (socks5h)')
  assert.equal(hop2.datagrams.filter((d) => d.direction === 'in').length, 2, 'the echoes came back through hop 2')
  assert.deepEqual(udpEcho.received.map((r) => r.data.toString()), ['one', 'two'])
  assert.equal(hop1.server.connections, 2, 'hop 1: its own control connection and the tunnel to hop 2')
  assert.equal(hop2.server.connections, 1)
  association.close()
  await waitFor(() => front.server.connections === 0 && hop1.server.connections === 0 && hop2.server.connections === 0)
})

test('UDP through a chain of two SOCKS5 hops ends when the last hop\'s association does', async (t) => {
  const udpEcho = await startUdpEcho(t)
  const hop1 = await startUpstreamSocks(t)
  const hop2 = await startUpstreamSocks(t)
  const front = await startFront(t, { chain: [hop1.url(), hop2.url()] })
  const association = await socksAssociate({ host: '127.0.0.1', port: front.port })
  t.after(() => association.close())
  association.send(Buffer.from('one'), { host: '127.0.0.1', port: udpEcho.port })
  await once(association, 'message')
  const closed = once(association, 'close')
  await hop2.server.close({ drainTimeout: 0 })
  await closed
  await waitFor(() => front.server.connections === 0 && hop1.server.connections === 0)
})

test('UDP through a chain with an HTTP or SOCKS4 hop is refused with REP 07; a pool tries only its all-SOCKS5 members', async (t) => {
  const udpEcho = await startUdpEcho(t)
  const http = await startHttpProxy(t)
  const socks4 = await startSocks4Proxy(t)
  const hop = await startUpstreamSocks(t)
  for (const chain of [[`http://127.0.0.1:${http.port}`, hop.url()], [hop.url(), `socks4://127.0.0.1:${socks4.port}`]]) {
    const front = await startFront(t, { chain })
    assert.deepEqual(await rawReply(t, front.port, ipv4Request(3, '0.0.0.0', 0)), hex('05070001000000000000'))
  }
  assert.equal(http.accepted(), 0)
  assert.equal(hop.seen.length, 0, 'nothing was sent anywhere')
  const other = await startUpstreamSocks(t)
  const front = await startFront(t, { pool: [[`http://127.0.0.1:${http.port}`, hop.url()], other.url()] })
  const association = await socksAssociate({ host: '127.0.0.1', port: front.port })
  t.after(() => association.close())
  association.send(Buffer.from('one'), { host: '127.0.0.1', port: udpEcho.port })
  await once(association, 'message')
  assert.deepEqual(other.seen.map((s) => s.command), ['udp'])
  assert.equal(http.accepted(), 0)
  association.close()
  await waitFor(() => front.server.connections === 0 && other.server.connections === 0)
})

test('UDP and BIND through an HTTP upstream are refused with REP 07, never sent direct', async (t) => {
  const proxy = await startHttpProxy(t)
  const front = await startFront(t, { proxy: `http://127.0.0.1:${proxy.port}` })
  assert.deepEqual(await rawReply(t, front.port, ipv4Request(3, '0.0.0.0', 0)), hex('05070001000000000000'))
  assert.deepEqual(await rawReply(t, front.port, ipv4Request(2, '127.0.0.1', 0)), hex('05070001000000000000'))
  assert.equal(proxy.accepted(), 0)
})

test('BIND through a socksmith upstream: its listener is announced and its peer relayed', async (t) => {
  const up = await startUpstreamSocks(t)
  const front = await startFront(t, { proxy: up.url() })
  const { socket, bound, accepted } = await socksBind({ host: '127.0.0.1', port: front.port }, { host: '127.0.0.1', port: 0 })
  trackClient(t, socket)
  assert.equal(bound.host, '127.0.0.1')
  const peer = connect({ host: bound.host, port: bound.port })
  trackClient(t, peer)
  await once(peer, 'connect')
  const { peer: announced } = await accepted
  assert.equal(announced.port, peer.localPort, 'the second reply names the peer')
  peer.end('from peer')
  socket.end('from client')
  assert.equal(await readToEnd(socket), 'from peer')
  assert.equal(await readToEnd(peer), 'from client')
  assert.deepEqual(up.seen.map((s) => s.command), ['bind'])
})

test('BIND through an upstream: no peer within bindAccept is REP 06 in the second reply', async (t) => {
  // The upstream has its own, longer accept timeout; it learns of our giving up only when that fires,
  // because a SOCKS server does not read its client's socket while it waits.
  const up = await startUpstreamSocks(t, { timeouts: { bindAccept: 400 } })
  const front = await startFront(t, { proxy: up.url() }, { timeouts: { bindAccept: 150 } })
  const { socket, accepted } = await socksBind({ host: '127.0.0.1', port: front.port }, { host: '127.0.0.1', port: 0 })
  trackClient(t, socket)
  await assert.rejects(accepted, (err: SocksError) => err.code === 'ERR_SOCKS_REPLY' && err.reply === 0x06)
  await waitFor(() => up.server.connections === 0)
})

test('registered before rules, the upstream still relays only what the rules allow: CONNECT, UDP datagrams and BIND', { timeout: 8000 }, async (t) => {
  const echo = await startEcho(t)
  const allowedUdp = await startUdpEcho(t)
  const deniedUdp = await startUdpEcho(t)
  const up = await startUpstreamSocks(t)
  const front = await startSocks(t, { resolver: mapResolver({ 'echo.test': ['127.0.0.1'], 'evil.test': ['127.0.0.2'] }) }, (server) => {
    server.register(upstream, { proxy: up.url('socks5h') })
    server.register(rules, { default: 'allow', rules: [{ action: 'deny', to: '127.0.0.2' }, { action: 'deny', ports: deniedUdp.port }] })
  })
  // CONNECT: the vetted IP goes upstream, a denied name never does.
  await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
  assert.deepEqual(await rawReply(t, front.port, domainRequest(1, 'evil.test', echo.port)), hex('05020001000000000000'))
  assert.deepEqual(up.seen.map((s) => `${s.command} ${s.type} ${s.host}`), ['connect ipv4 127.0.0.1'])

  // UDP: a datagram to a denied peer is dropped before it reaches the upstream relay.
  const association = await socksAssociate({ host: '127.0.0.1', port: front.port })
  t.after(() => association.close())
  association.send(Buffer.from('one'), { host: '127.0.0.1', port: allowedUdp.port })
  assert.equal(String(((await once(association, 'message')) as [Buffer])[0]), 'one')
  association.send(Buffer.from('denied'), { host: '127.0.0.1', port: deniedUdp.port })
  association.send(Buffer.from('two'), { host: '127.0.0.1', port: allowedUdp.port })
  assert.equal(String(((await once(association, 'message')) as [Buffer])[0]), 'two')
  assert.deepEqual(up.datagrams.filter((d) => d.direction === 'out').map((d) => d.port), [allowedUdp.port, allowedUdp.port], 'the upstream relay never got the denied datagram')
  assert.equal(deniedUdp.received.length, 0)
  association.close()

  // BIND: a denied DST.ADDR is refused before the upstream is asked ...
  assert.deepEqual(await rawReply(t, front.port, ipv4Request(2, '127.0.0.2', 0)), hex('05020001000000000000'))
  assert.equal(up.seen.filter((s) => s.command === 'bind').length, 0)
  // ... and a denied peer of the upstream's listener ends the BIND with REP 02.
  const { socket, bound, accepted } = await socksBind({ host: '127.0.0.1', port: front.port }, { host: '0.0.0.0', port: 0 })
  trackClient(t, socket)
  const peer = connect({ host: bound.host, port: bound.port, localAddress: '127.0.0.2' })
  peer.on('error', () => {})
  trackClient(t, peer)
  await assert.rejects(accepted, (err: SocksError) => err.code === 'ERR_SOCKS_REPLY' && err.reply === 0x02)
  await once(peer, 'close')
  await waitFor(() => front.server.connections === 0 && up.server.connections === 0)
})

// ---- Dante ----

describe('through Dante', () => {
  let dante: ChildProcess | null = null
  let dantePort = 0
  let danteLog = ''
  let dir = ''

  before(async () => {
    if (danted.skipped) return
    dantePort = await freePort()
    dir = mkdtempSync(join(tmpdir(), 'socksmith-dante-'))
    const config = join(dir, 'danted.conf')
    writeFileSync(config, [
      'logoutput: stderr',
      `internal: 127.0.0.1 port = ${dantePort}`,
      'external: 127.0.0.1',
      'socksmethod: none',
      'clientmethod: none',
      'user.privileged: root',
      'user.unprivileged: nobody',
      'client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }',
      'socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect }',
      '',
    ].join('\n'))
    dante = spawn(danted.path, ['-f', config], { stdio: ['ignore', 'ignore', 'pipe'] })
    dante.stderr!.setEncoding('utf8')
    dante.stderr!.on('data', (chunk: string) => (danteLog += chunk))
    await waitFor(() => danteLog.includes('running') || dante!.exitCode !== null, 5000)
    if (!danteLog.includes('running')) throw new Error(`danted did not start:\n${danteLog}`)
  })

  after(() => {
    dante?.kill()
    rmSync(dir, { recursive: true, force: true })
  })

  test('socks5:// and socks4:// CONNECT through Dante, seen in its log', needs(danted), async (t) => {
    const echo = await startEcho(t)
    for (const scheme of ['socks5', 'socks4']) {
      const front = await startFront(t, { proxy: `${scheme}://127.0.0.1:${dantePort}` })
      await echoThrough(t, front.port, { host: 'echo.test', port: echo.port })
    }
    // Dante logs each passed session as "... -> 127.0.0.1.<its port> 127.0.0.1.<destination port>".
    await waitFor(() => danteLog.split(`127.0.0.1.${echo.port}`).length - 1 >= 2)
    assert.equal(echo.accepted(), 2)
  })

  test('BIND through Dante', needs(danted), async (t) => {
    const front = await startFront(t, { proxy: `socks5://127.0.0.1:${dantePort}` })
    const { socket, bound, accepted } = await socksBind({ host: '127.0.0.1', port: front.port }, { host: '127.0.0.1', port: 0 })
    trackClient(t, socket)
    const peer = connect({ host: bound.host, port: bound.port })
    trackClient(t, peer)
    await once(peer, 'connect')
    const { peer: announced } = await accepted
    assert.equal(announced.port, peer.localPort)
    peer.write('from peer')
    socket.write('from client')
    const [fromPeer, fromClient] = await Promise.all([once(socket, 'data'), once(peer, 'data')])
    assert.equal(String(fromPeer[0]), 'from peer')
    assert.equal(String(fromClient[0]), 'from client')
    socket.destroy()
    await waitFor(() => front.server.connections === 0)
  })

  test('UDP ASSOCIATE through Dante', needs(danted), async (t) => {
    const udpEcho = await startUdpEcho(t)
    const front = await startFront(t, { proxy: `socks5://127.0.0.1:${dantePort}` })
    const association = await socksAssociate({ host: '127.0.0.1', port: front.port })
    t.after(() => association.close())
    association.send(Buffer.from('via dante'), { host: '127.0.0.1', port: udpEcho.port })
    const [data, from] = (await once(association, 'message')) as [Buffer, Address]
    assert.equal(data.toString(), 'via dante')
    assert.equal(from.port, udpEcho.port)
    association.close()
    await waitFor(() => front.server.connections === 0)
  })

  test('UDP ASSOCIATE through a chain of Dante and socksmith, either way round: datagrams through both, replies back, every control connection closed', needs(danted), async (t) => {
    const udpEcho = await startUdpEcho(t)
    const hop = await startUpstreamSocks(t)
    for (const chain of [[`socks5://127.0.0.1:${dantePort}`, hop.url()], [hop.url(), `socks5://127.0.0.1:${dantePort}`]]) {
      const front = await startFront(t, { chain })
      const association = await socksAssociate({ host: '127.0.0.1', port: front.port })
      t.after(() => association.close())
      for (const payload of ['one', 'two']) {
        association.send(Buffer.from(payload), { host: '127.0.0.1', port: udpEcho.port })
        const [data, from] = (await once(association, 'message')) as [Buffer, Address]
        assert.equal(data.toString(), payload, chain.join(' -> '))
        assert.deepEqual(from, { type: 'ipv4', host: '127.0.0.1', port: udpEcho.port })
      }
      association.close()
      await waitFor(() => front.server.connections === 0 && hop.server.connections === 0)
    }
    const out = hop.datagrams.filter((d) => d.direction === 'out').map((d) => d.port)
    assert.deepEqual(out.slice(0, 2), [udpEcho.port, udpEcho.port], 'socksmith as hop 2 sent them to the echo')
    assert.ok(out[2] === out[3] && out[2] !== udpEcho.port, `socksmith as hop 1 sent them to Dante's relay: ${out.join(', ')}`)
    assert.equal(udpEcho.received.length, 4)
  })
})
