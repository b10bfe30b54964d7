// PROXY protocol listeners: behind haproxy the real client address drives limits, rules and logs.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:net'
import { once } from 'node:events'
import { RawClient, canConnect, freePort, startEcho, startSocks, ipv4Request, hex, trackClient } from '../helpers/net.js'
import { needs, peer } from '../helpers/peers.js'
import { encodeProxyHeaderV1 } from 'socksmith/protocol'
import { isSocksError, loadConfig, type Endpoint, type SocksmithConfig, type SocksServer } from 'socksmith'
import rules from 'socksmith/plugins/rules'

const haproxy = peer('haproxy')

/** Starts haproxy in TCP mode in front of `backendPort`, sending a PROXY header (`send-proxy` is v1). */
async function startHaproxy(t: TestContext, backendPort: number, version: 'send-proxy' | 'send-proxy-v2'): Promise<number> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'socksmith-haproxy-'))
  const conf = join(dir, 'haproxy.cfg')
  writeFileSync(conf, [
    'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 30s', '  timeout server 30s',
    'frontend socks', `  bind 127.0.0.1:${port}`, '  default_backend socksmith',
    'backend socksmith', `  server s1 127.0.0.1:${backendPort} ${version}`, '',
  ].join('\n'))
  const child = spawn(haproxy.path, ['-db', '-f', conf], { stdio: 'ignore' })
  t.after(() => {
    child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })
  for (let i = 0; i < 100 && child.exitCode === null; i++) {
    if (await canConnect(port)) return port
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error('haproxy did not start')
}

/** A server with a plain listener (from startSocks) and a PROXY-protocol one; records each client endpoint. */
async function startBehindProxy(t: TestContext): Promise<{ server: SocksServer; proxyPort: number; seen: Endpoint[] }> {
  const seen: Endpoint[] = []
  const { server } = await startSocks(t, {}, (s) =>
    s.use('negotiate', async function recordClient(ctx, next) {
      seen.push(ctx.client)
      await next()
    }),
  )
  const { port } = await server.listen({ host: '127.0.0.1', port: 0, proxyProtocol: true })
  return { server, proxyPort: port, seen }
}

for (const version of ['send-proxy', 'send-proxy-v2'] as const) {
  test(`behind haproxy (${version}) the real client address reaches the middleware`, needs(haproxy), async (t) => {
    const echo = await startEcho(t)
    const { proxyPort, seen } = await startBehindProxy(t)
    const haproxyPort = await startHaproxy(t, proxyPort, version)
    // The client comes from 127.0.0.2; haproxy itself connects from 127.0.0.1.
    const socket = trackClient(t, connect({ host: '127.0.0.1', port: haproxyPort, localAddress: '127.0.0.2' }))
    await once(socket, 'connect')
    socket.write(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', echo.port), Buffer.from('through haproxy')]))
    let received = Buffer.alloc(0)
    while (received.length < 12 + 15) {
      const [chunk] = (await once(socket, 'data')) as [Buffer]
      received = Buffer.concat([received, chunk])
    }
    assert.deepEqual(received.subarray(0, 3), hex('050005'))
    assert.equal(received.subarray(12).toString(), 'through haproxy')
    assert.equal(seen.length, 1)
    assert.equal(seen[0]!.address, '127.0.0.2')
    assert.equal(seen[0]!.port, socket.localPort)
  })
}

test('a PROXY-protocol listener closes connections that start without the header', async (t) => {
  const { proxyPort, seen } = await startBehindProxy(t)
  const c = await RawClient.connect(t, proxyPort)
  c.send('050100')
  assert.equal((await c.expectClose()).length, 0)
  assert.equal(seen.length, 0)
})

test('a v1 header sent by hand sets the client; the plain listener of the same server is unaffected', async (t) => {
  const echo = await startEcho(t)
  const { server, proxyPort, seen } = await startBehindProxy(t)
  const c = await RawClient.connect(t, proxyPort)
  c.send(Buffer.concat([encodeProxyHeaderV1({ address: '192.0.2.7', port: 4242 }, { address: '127.0.0.1', port: proxyPort }), hex('050100'), ipv4Request(1, '127.0.0.1', echo.port)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.equal((await c.read(10))[1], 0)
  assert.deepEqual(seen[0], { address: '192.0.2.7', port: 4242, family: 4 })
  const plain = await RawClient.connect(t, server.addresses()[0]!.port)
  plain.send('050100')
  assert.deepEqual(await plain.read(2), hex('0500'))
  assert.equal(seen[1]!.address, '127.0.0.1')
})

test('a config file listener with proxyProtocol: true, behind haproxy', needs(haproxy), async (t) => {
  const echo = await startEcho(t)
  const { createServerFromConfig, prepareServer } = await import('socksmith/config')
  const loaded = await loadConfig({ config: { listen: { host: '127.0.0.1', port: 0, proxyProtocol: true } } })
  assert.deepEqual(loaded.config.listen[0]!.proxyProtocol, { trusted: ['127.0.0.0/8', '::1'] }, 'true trusts loopback only')
  const server = createServerFromConfig(loaded)
  const seen: string[] = []
  await prepareServer(server, loaded)
  server.on('connection', (ctx) => seen.push(ctx.id.toString()))
  const { port } = await server.listen(loaded.config.listen[0]!)
  t.after(() => server.close({ drainTimeout: 0 }))
  const haproxyPort = await startHaproxy(t, port, 'send-proxy-v2')
  const socket = trackClient(t, connect({ host: '127.0.0.1', port: haproxyPort, localAddress: '127.0.0.3' }))
  await once(socket, 'connect')
  const clients: string[] = []
  server.on('disconnect', (ctx) => clients.push(ctx.client.address))
  socket.write(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', echo.port), Buffer.from('cfg')]))
  let received = Buffer.alloc(0)
  while (received.length < 12 + 3) {
    const [chunk] = (await once(socket, 'data')) as [Buffer]
    received = Buffer.concat([received, chunk])
  }
  assert.equal(received.subarray(12).toString(), 'cfg')
  socket.destroy()
  // (haproxy's readiness probe from startHaproxy came through too, as 127.0.0.1.)
  while (!clients.includes('127.0.0.3')) await new Promise((r) => setTimeout(r, 10))
  assert.ok(seen.length >= 1)
})

// ---- who may send a header: only trusted sources (issue 12, item 7) ----

/** A header naming `source` as the client, then a greeting (NO AUTH) and a CONNECT to 127.0.0.1:`port`. */
function spoofedHandshake(source: string, proxyPort: number, port: number): Buffer {
  return Buffer.concat([encodeProxyHeaderV1({ address: source, port: 4242 }, { address: '127.0.0.1', port: proxyPort }), hex('050100'), ipv4Request(1, '127.0.0.1', port)])
}

test('trusted: [127.0.0.2/32]: a PROXY header from 127.0.0.1 is refused at accept, unread; the handshake never starts', async (t) => {
  const echo = await startEcho(t)
  const warnings: string[] = []
  const logger = { error() {}, info() {}, debug() {}, warn: (message: string) => void warnings.push(message) }
  const seen: Endpoint[] = []
  // A handshake deadline far beyond the test: a close can only come from the refusal at accept.
  const { server } = await startSocks(t, { logger, timeouts: { handshake: 60_000 } }, (s) =>
    s.use('negotiate', async function recordClient(ctx, next) {
      seen.push(ctx.client)
      await next()
    }),
  )
  let accepted = 0
  server.on('connection', () => accepted++)
  const { port } = await server.listen({ host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['127.0.0.2/32'] } })
  const spoofer = await RawClient.connect(t, port, '127.0.0.1', '127.0.0.1')
  spoofer.send(spoofedHandshake('10.20.30.40', port, echo.port))
  assert.equal((await spoofer.expectClose()).length, 0, 'no reply of any kind')
  const silent = await RawClient.connect(t, port, '127.0.0.1', '127.0.0.1')
  assert.equal((await silent.expectClose()).length, 0, 'closed without waiting for a byte')
  assert.equal(accepted, 0, 'never became a connection')
  assert.deepEqual(seen, [])
  assert.equal(server.connections, 0)
  assert.equal(warnings.filter((w) => /127\.0\.0\.1 is not a trusted PROXY protocol source/.test(w)).length, 1, `one warning a second, not one per connection: ${warnings.join(' | ')}`)
})

test('trusted: [127.0.0.2/32]: a header from 127.0.0.2 names the client, and client rules judge that client', async (t) => {
  const echo = await startEcho(t)
  const seen: Endpoint[] = []
  const { server } = await startSocks(t, {}, (s) => {
    s.register(rules, { rules: [{ action: 'allow', from: '192.0.2.0/24' }, { action: 'deny', from: 'any' }] })
    s.use('negotiate', async function recordClient(ctx, next) {
      seen.push(ctx.client)
      await next()
    })
  })
  const { port } = await server.listen({ host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['127.0.0.2/32'] } })
  const allowed = await RawClient.connect(t, port, '127.0.0.1', '127.0.0.2')
  allowed.send(Buffer.concat([spoofedHandshake('192.0.2.7', port, echo.port), Buffer.from('via the balancer')]))
  assert.deepEqual(await allowed.read(2), hex('0500'))
  assert.equal((await allowed.read(10))[1], 0, 'REP 00')
  assert.equal((await allowed.read(16)).toString(), 'via the balancer')
  assert.deepEqual(seen, [{ address: '192.0.2.7', port: 4242, family: 4 }])
  const denied = await RawClient.connect(t, port, '127.0.0.1', '127.0.0.2')
  denied.send(spoofedHandshake('198.51.100.1', port, echo.port))
  assert.deepEqual(await denied.expectClose(), hex('05ff'), 'the rules judged the client the header named')
  assert.equal(seen[1]!.address, '198.51.100.1')
})

test('listen(): a bad trusted list is refused before anything listens', async (t) => {
  const { server } = await startSocks(t)
  const before = server.addresses().length
  const cases: [unknown, RegExp][] = [
    [{ trusted: ['127.0.0.1', '10.0.0.0/33'] }, /^proxyProtocol\.trusted\[1\]: "10\.0\.0\.0\/33" is not an IP address or CIDR/],
    [{ trusted: [] }, /^proxyProtocol\.trusted: must list at least one/],
    [{ trusted: 'localhost' }, /^proxyProtocol\.trusted: expected a list of IP addresses or CIDRs, found "localhost"/],
    [{}, /^proxyProtocol\.trusted: is required/],
    ['yes', /^proxyProtocol: expected true, false or \{ trusted: \[CIDRs\] \}, found "yes"/],
  ]
  for (const [proxyProtocol, message] of cases) {
    await assert.rejects(
      server.listen({ host: '127.0.0.1', port: 0, proxyProtocol: proxyProtocol as { trusted: string[] } }),
      (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_INVALID_ARGUMENT' && message.test(err.message),
      String(message),
    )
  }
  assert.equal(server.addresses().length, before)
})

test('config: proxyProtocol true trusts loopback; { trusted } is checked entry by entry, with paths', async () => {
  const loaded = await loadConfig({ config: { listen: [{ port: 0, proxyProtocol: { trusted: [' 10.0.0.0/8 ', '2001:db8::1'] } }, { port: 0, proxyProtocol: false }] } })
  assert.deepEqual(loaded.config.listen.map((l) => l.proxyProtocol), [{ trusted: ['10.0.0.0/8', '2001:db8::1'] }, false])
  let lines: string[] = []
  try {
    await loadConfig({
      config: {
        listen: [
          { port: 0, proxyProtocol: { trusted: ['127.0.0.1', '10.0.0.0/33', 7] } },
          { port: 0, proxyProtocol: { trusted: [] } },
          { port: 0, proxyProtocol: { trustd: ['127.0.0.1'] } },
          { port: 0, proxyProtocol: 'yes' },
        ],
      } as unknown as SocksmithConfig,
    })
  } catch (err) {
    assert.ok(isSocksError(err))
    assert.equal(err.code, 'ERR_CONFIG_INVALID')
    lines = err.message.split('\n')
  }
  assert.deepEqual(lines, [
    'config: listen[0].proxyProtocol.trusted[1]: "10.0.0.0/33" is not an IP address or CIDR (such as 10.0.0.5 or 10.0.0.0/24)',
    'config: listen[0].proxyProtocol.trusted[2]: expected an IP address or CIDR, found number 7',
    'config: listen[1].proxyProtocol.trusted: must list at least one address or CIDR (true trusts loopback only)',
    'config: listen[2].proxyProtocol.trustd: unknown key; did you mean "trusted"?',
    'config: listen[2].proxyProtocol.trusted: is required: the addresses or CIDRs of the load balancers',
    'config: listen[3].proxyProtocol: expected true, false or { trusted: [CIDRs] }, found "yes"',
  ])
})
