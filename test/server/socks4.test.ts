// SOCKS4 and SOCKS4a on a listener with protocols [socks5, socks4]: the codec's golden vectors
// (also one byte per write over a real socket), CONNECT and BIND, SOCKS5 on the same port, the
// first byte deciding; refusals (91) where auth is required, and the USERID as the user when the
// auth plugin opts in; curl --socks4 / --socks4a (PySocks SOCKS4: test/interop/clients.test.ts).
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { once } from 'node:events'
import { createServer, isSocksError, loadConfig, type ConnectionContext, type ServerOptions, type SocksServer } from 'socksmith'
import { project, write } from '../config/helpers.js'
import { encodeSocks4Reply, encodeSocks4Request, parseSocks4Reply, parseSocks4Request, Socks4Status } from 'socksmith/protocol'
import { collectMetrics, silentLogger } from 'socksmith/ops'
import auth from 'socksmith/plugins/auth'
import rules from 'socksmith/plugins/rules'
import { RawClient, startListening, hex, ipv4Request, mapResolver, startEcho, trackClient, waitFor } from '../helpers/net.js'
import { run, startHttp } from '../helpers/processes.js'
import { needs, peer } from '../helpers/peers.js'

const curl = peer('curl')

/** A server listening for SOCKS5 and SOCKS4 on one port. */
function startMixed(t: TestContext, options: ServerOptions = {}, configure?: (server: SocksServer) => void) {
  return startListening(t, ['socks5', 'socks4'], options, configure)
}

/** SOCKS4 CONNECT to 127.0.0.1:port with USERID. */
function connect4(port: number, userId = ''): Buffer {
  return Buffer.concat([hex('0401'), Buffer.from([port >> 8, port & 255]), hex('7f000001'), Buffer.from(userId), hex('00')])
}

describe('SOCKS4 codec (golden vectors)', () => {
  test('a SOCKS4 CONNECT, a SOCKS4a name, a BIND', () => {
    assert.deepEqual(parseSocks4Request(hex('04 01 0050 5db8d822 616c69636500')), {
      value: { command: 1, destination: { type: 'ipv4', host: '93.184.216.34', port: 80 }, userId: 'alice' },
      length: 14,
    })
    assert.deepEqual(parseSocks4Request(hex('04 01 01bb 00000001 00 6578616d706c652e636f6d00 ff')), {
      value: { command: 1, destination: { type: 'domain', host: 'example.com', port: 443 }, userId: '' },
      length: 21,
    })
    assert.deepEqual(parseSocks4Request(hex('04 02 1f90 0a000001 00'))?.value.command, 2)
  })

  test('incomplete requests wait; bad ones fail with a code', () => {
    for (const partial of ['', '04', '040100507f0000', '04010050 7f000001 6162', '04010050 00000001 00 6578']) assert.equal(parseSocks4Request(hex(partial)), null, partial)
    assert.throws(() => parseSocks4Request(hex('05010050')), (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_BAD_VERSION')
    assert.throws(() => parseSocks4Request(hex('04030050 7f000001 00')), (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_COMMAND_NOT_SUPPORTED')
    assert.throws(() => parseSocks4Request(Buffer.concat([hex('04010050 7f000001'), Buffer.alloc(300, 0x61)])), (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_MALFORMED')
  })

  test('replies, and the client side round-trips through the server side', () => {
    assert.deepEqual(encodeSocks4Reply(Socks4Status.GRANTED, { type: 'ipv4', host: '10.1.2.3', port: 1080 }), hex('005a04380a010203'))
    assert.deepEqual(encodeSocks4Reply(Socks4Status.REJECTED), hex('005b000000000000'))
    assert.deepEqual(encodeSocks4Reply(Socks4Status.GRANTED, { type: 'ipv6', host: '::1', port: 1 }), hex('005a000000000000'), 'no IPv6 in SOCKS4')
    const request = encodeSocks4Request({ type: 'domain', host: 'example.com', port: 443 }, 'bob')
    assert.deepEqual(parseSocks4Request(request)?.value, { command: 1, destination: { type: 'domain', host: 'example.com', port: 443 }, userId: 'bob' })
    assert.deepEqual(parseSocks4Reply(hex('005a04380a010203'))?.value, { status: 90, bound: { type: 'ipv4', host: '10.1.2.3', port: 1080 } })
  })
})

test('SOCKS4 and SOCKS5 on one port: the first byte decides, each gets its own replies, a request written a byte at a time works', async (t) => {
  const echo = await startEcho(t)
  const protocols: string[] = []
  const { port, ended } = await startMixed(t, {}, (server) =>
    server.use('request', async function seeProtocol(ctx, next) {
      protocols.push(ctx.protocol)
      await next()
    }),
  )
  const four = await RawClient.connect(t, port)
  for (const byte of Buffer.concat([connect4(echo.port, 'someone'), Buffer.from('ping4')])) {
    four.send([byte])
    await new Promise((resolve) => setImmediate(resolve))
  }
  const reply = await four.read(8)
  assert.equal(reply[0], 0)
  assert.equal(reply[1], 90)
  assert.deepEqual(await four.read(5), Buffer.from('ping4'), 'early data after the request is relayed')
  const five = await RawClient.connect(t, port)
  five.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', echo.port), Buffer.from('ping5')]))
  assert.deepEqual(await five.read(2), hex('0500'))
  assert.equal((await five.read(10))[1], 0)
  assert.deepEqual(await five.read(5), Buffer.from('ping5'))
  assert.deepEqual(protocols, ['socks4', 'socks5'])
  four.socket.end()
  five.socket.end()
  await waitFor(() => ended.length === 2)
})

test('SOCKS4a: the name is resolved by the proxy; a refused destination gets 91', async (t) => {
  const echo = await startEcho(t)
  const resolver = mapResolver({ 'echo.test': ['127.0.0.1'] })
  const { port, ended } = await startMixed(t, { resolver }, (server) => server.register(rules, { rules: [{ action: 'deny', ports: 9 }] }))
  const ok = await RawClient.connect(t, port)
  ok.send(encodeSocks4Request({ type: 'domain', host: 'echo.test', port: echo.port }, ''))
  assert.equal((await ok.read(8))[1], 90)
  ok.send('68690a')
  assert.deepEqual(await ok.read(3), hex('68690a'))
  const denied = await RawClient.connect(t, port)
  denied.send(encodeSocks4Request({ type: 'domain', host: 'echo.test', port: 9 }, ''))
  assert.deepEqual(await denied.read(8), hex('005b000000000000'))
  await denied.expectClose()
  denied.socket.destroy()
  await waitFor(() => ended.some((ctx) => ctx.reply === 2))
  const refused = ended.find((ctx) => ctx.reply === 2)!
  assert.equal(refused.protocol, 'socks4')
  assert.ok(isSocksError(refused.error) && refused.error.code === 'ERR_SOCKS_NOT_ALLOWED')
  assert.deepEqual(resolver.calls, ['echo.test'], 'the port rule refused the second before any lookup')
  ok.socket.destroy()
})

test('SOCKS4 BIND: the first reply names the listening address, the second the peer', async (t) => {
  const { port } = await startMixed(t)
  const client = await RawClient.connect(t, port)
  client.send(hex('0402 0000 7f000001 00'))
  const first = await client.read(8)
  assert.equal(first[1], 90)
  const bindPort = first.readUInt16BE(2)
  assert.ok(bindPort > 0)
  const inbound = trackClient(t, connect({ host: '127.0.0.1', port: bindPort }))
  await once(inbound, 'connect')
  const second = await client.read(8)
  assert.equal(second[1], 90)
  assert.equal(second.readUInt16BE(2), inbound.localPort)
  inbound.write('from peer')
  assert.deepEqual(await client.read(9), Buffer.from('from peer'))
})

test('auth required: SOCKS4 is refused with 91 (no password to check); with socks4UserId a known USERID is that user', async (t) => {
  const echo = await startEcho(t)
  const strict = await startMixed(t, {}, (server) => server.register(auth, { users: { alice: 'wonderland' } }))
  const refused = await RawClient.connect(t, strict.port)
  refused.send(connect4(echo.port, 'alice'))
  assert.deepEqual(await refused.read(8), hex('005b000000000000'))
  const users: (string | null)[] = []
  const trusting = await startMixed(t, {}, (server) => {
    server.register(auth, { users: { alice: 'wonderland' }, socks4UserId: true })
    server.use('request', async function seeUser(ctx, next) {
      users.push(ctx.user)
      await next()
    })
  })
  const alice = await RawClient.connect(t, trusting.port)
  alice.send(connect4(echo.port, 'alice'))
  assert.equal((await alice.read(8))[1], 90)
  const mallory = await RawClient.connect(t, trusting.port)
  mallory.send(connect4(echo.port, 'mallory'))
  assert.deepEqual(await mallory.read(8), hex('005b000000000000'))
  assert.deepEqual(users, ['alice'])
  alice.socket.destroy()
})

test('a socks5-only listener (the default) closes a SOCKS4 client without a word; bad listener protocols fail listen()', async (t) => {
  const server = createServer({ logger: silentLogger })
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 })
  t.after(() => server.close({ drainTimeout: 0 }))
  const client = await RawClient.connect(t, port)
  client.send(connect4(9))
  assert.deepEqual(await client.expectClose(), Buffer.alloc(0))
  await assert.rejects(server.listen({ host: '127.0.0.1', port: 0, protocols: ['socks3' as 'socks5'] }), /protocols: "socks3" is not one of socks5, socks4, http, mixed/)
  await assert.rejects(server.listen({ host: '127.0.0.1', port: 0, protocols: [] }), /protocols must be a non-empty list/)
})

test('metrics and the access log name the protocol', async (t) => {
  const echo = await startEcho(t)
  const { server, port, ended } = await startMixed(t)
  const metrics = await collectMetrics(server)
  t.after(() => metrics.detach())
  const client = await RawClient.connect(t, port)
  client.send(connect4(echo.port))
  assert.equal((await client.read(8))[1], 90)
  client.socket.end()
  await waitFor(() => ended.length === 1)
  assert.match(await metrics.registry.metrics(), /socksmith_connections_total\{outcome="success",reply="0",protocol="socks4"\} 1/)
})

test('curl --socks4 and --socks4a, and --socks5-hostname, through one port', needs(curl), async (t) => {
  const web = await startHttp(t)
  const resolver = mapResolver({ 'web.test': ['127.0.0.1'] })
  const { port } = await startMixed(t, { resolver })
  for (const [flag, host] of [['--socks4', '127.0.0.1'], ['--socks4a', 'web.test'], ['--socks5-hostname', 'web.test']] as const) {
    const r = await run(curl.path, ['-sS', '--max-time', '10', flag, `127.0.0.1:${port}`, `http://${host}:${web.port}/${flag.slice(2)}`])
    assert.equal(r.stdout, `hello /${flag.slice(2)}`, `${flag}: ${r.stderr}`)
  }
})

test('config: listen.protocols is checked, with a hint for a typo', async (t) => {
  const dir = project(t, { 'socksmith.config.yaml': 'listen: { port: 0, protocols: [socks5, socks4] }\n' })
  const loaded = await loadConfig({ file: 'socksmith.config.yaml', cwd: dir })
  assert.deepEqual(loaded.config.listen[0]?.protocols, ['socks5', 'socks4'])
  write(dir, { 'socksmith.config.yaml': 'listen: { port: 0, protocols: [socks5, sock4] }\n' })
  await assert.rejects(loadConfig({ file: 'socksmith.config.yaml', cwd: dir }), {
    message: 'socksmith.config.yaml: listen.protocols[1]: expected one of socks5, socks4, http, mixed, found "sock4"; did you mean "socks4"?',
  })
})
