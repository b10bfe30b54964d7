import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer as createNetServer, connect, type AddressInfo, type Server, type Socket } from 'node:net'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { once } from 'node:events'
import type { TestContext } from 'node:test'
import { createServer, isSocksError, Method, type SocksServer, type UdpAssociation } from 'socksmith'
import { silentLogger } from 'socksmith/ops'
import rules, { compileMatcher, PRESETS } from 'socksmith/plugins/rules'
import { socksAssociate, socksBind, socksConnect } from 'socksmith/client'
import { RawClient, startEcho, startSocks, startTcpServer, startUdpEcho, mapResolver, hex, ipv4Request, domainRequest, waitFor, trackClient } from '../helpers/net.js'

const DENIED = hex('05020001000000000000')
const CONNECT = 1
const BIND = 2
const UDP = 3

/** Greeting (NO AUTH) + request in one write; returns the 10-byte reply after checking the method selection. */
async function request(t: TestContext, port: number, req: Buffer): Promise<{ reply: Buffer; client: RawClient }> {
  const client = await RawClient.connect(t, port)
  client.send(Buffer.concat([hex('050100'), req]))
  assert.deepEqual(await client.read(2), hex('0500'))
  return { reply: await client.read(10), client }
}

async function expectDenied(t: TestContext, port: number, req: Buffer): Promise<void> {
  const { reply, client } = await request(t, port, req)
  assert.deepEqual(reply, DENIED)
  await client.expectClose()
}

async function expectConnected(t: TestContext, port: number, req: Buffer): Promise<RawClient> {
  const { reply, client } = await request(t, port, req)
  assert.deepEqual(reply.subarray(0, 2), hex('0500'), `success reply, got ${reply.toString('hex')}`)
  return client
}

/** TCP servers on several loopback hosts sharing one port (so one name can resolve to all of them). */
/** A BIND peer from `localAddress` that the proxy must refuse: it is closed without being accepted. */
async function expectPeerRefused(t: TestContext, bound: { host: string; port: number }, localAddress: string): Promise<void> {
  const peer = connect({ host: bound.host, port: bound.port, localAddress })
  peer.on('error', () => {})
  trackClient(t, peer)
  await once(peer, 'close')
}

async function listenOnSamePort(t: TestContext, hosts: string[]): Promise<{ port: number; accepted: Map<string, number> }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const servers: Server[] = []
    const accepted = new Map<string, number>(hosts.map((h) => [h, 0]))
    const sockets: Socket[] = []
    let port = 0
    try {
      for (const host of hosts) {
        const server = createNetServer((socket) => {
          accepted.set(host, accepted.get(host)! + 1)
          sockets.push(socket)
          socket.on('error', () => {})
          socket.pipe(socket)
        })
        servers.push(server)
        server.listen(port, host)
        await once(server, 'listening')
        port = (server.address() as AddressInfo).port
      }
    } catch {
      for (const s of servers) s.close()
      continue
    }
    t.after(() => {
      for (const s of sockets) s.destroy()
      for (const s of servers) s.close()
    })
    return { port, accepted }
  }
  throw new Error('no port free on every host')
}

async function udpSocket(t: TestContext, host: string): Promise<{ socket: UdpSocket; port: number; received: Buffer[] }> {
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4')
  const received: Buffer[] = []
  socket.on('message', (msg, rinfo) => {
    received.push(msg)
    socket.send(msg, rinfo.port, rinfo.address)
  })
  socket.bind(0, host)
  await once(socket, 'listening')
  t.after(() => socket.close())
  return { socket, port: socket.address().port, received }
}

/** An inline username/password "auth" that accepts anyone and sets ctx.user, so rules can be tried by user. */
function acceptAnyUser(server: SocksServer): void {
  server.use('negotiate', async (ctx, next) => {
    if (ctx.offeredMethods.includes(Method.USERNAME_PASSWORD)) ctx.method = Method.USERNAME_PASSWORD
    await next()
  })
  server.use('auth', async (ctx, next) => {
    if (ctx.credentials !== null) ctx.user = ctx.credentials.username
    await next()
  })
}

function passwordRequest(user: string, password: string): Buffer {
  return Buffer.concat([Buffer.from([1, user.length]), Buffer.from(user), Buffer.from([password.length]), Buffer.from(password)])
}

/** Captures the server-side UDP association of the next UDP ASSOCIATE (registered after rules). */
function captureAssociation(server: SocksServer): { current: UdpAssociation | null } {
  const captured: { current: UdpAssociation | null } = { current: null }
  server.use('connect', async (ctx, next) => {
    await next()
    if (ctx.association !== null) captured.current = ctx.association
  })
  return captured
}

// ---- CONNECT: addresses ----

test('a denied CIDR replies exactly 05 02 00 01 00000000 0000 and the target never sees a connection', async (t) => {
  const denied = await startTcpServer(t, () => {}, '127.0.0.2')
  const echo = await startEcho(t)
  const { port } = await startSocks(t, {}, (server) => server.register(rules, { rules: [{ action: 'deny', to: '127.0.0.2/32' }] }))
  await expectDenied(t, port, ipv4Request(CONNECT, '127.0.0.2', denied.port))
  assert.equal(denied.accepted(), 0)
  const client = await expectConnected(t, port, ipv4Request(CONNECT, '127.0.0.1', echo.port))
  client.send(Buffer.from('ping'))
  assert.equal((await client.read(4)).toString(), 'ping')
  client.socket.end()
})

test('an allow list with default deny lets only the listed destination through', async (t) => {
  const echo = await startEcho(t)
  const other = await startTcpServer(t, () => {})
  const { port } = await startSocks(t, {}, (server) =>
    server.register(rules, { default: 'deny', rules: [{ action: 'allow', to: '127.0.0.1', ports: echo.port }] }),
  )
  const client = await expectConnected(t, port, ipv4Request(CONNECT, '127.0.0.1', echo.port))
  client.socket.end()
  await expectDenied(t, port, ipv4Request(CONNECT, '127.0.0.1', other.port))
  assert.equal(other.accepted(), 0)
})

test('ports: a single port, a list and a range', async (t) => {
  const a = await startTcpServer(t, () => {})
  const b = await startTcpServer(t, () => {})
  const echo = await startEcho(t)
  const low = Math.min(a.port, b.port)
  const high = Math.max(a.port, b.port)
  const { port } = await startSocks(t, {}, (server) =>
    server.register(rules, {
      rules: [
        { action: 'deny', ports: `${low}-${high}`, to: '127.0.0.1' },
        { action: 'deny', ports: [1, 2, 3] },
        { action: 'deny', ports: 4 },
      ],
    }),
  )
  await expectDenied(t, port, ipv4Request(CONNECT, '127.0.0.1', a.port))
  await expectDenied(t, port, ipv4Request(CONNECT, '127.0.0.1', b.port))
  await expectDenied(t, port, ipv4Request(CONNECT, '127.0.0.1', 2))
  await expectDenied(t, port, ipv4Request(CONNECT, '127.0.0.1', 4))
  assert.equal(a.accepted() + b.accepted(), 0)
  if (echo.port < low || echo.port > high) (await expectConnected(t, port, ipv4Request(CONNECT, '127.0.0.1', echo.port))).socket.end()
})

test('users: a denied user is refused at connect, others pass; "*" means any authenticated user', async (t) => {
  const echo = await startEcho(t)
  const { port } = await startSocks(t, {}, (server) => {
    acceptAnyUser(server)
    server.register(rules, { default: 'deny', rules: [{ action: 'deny', users: 'mallory' }, { action: 'allow', users: '*' }] })
  })
  const login = async (user: string): Promise<{ reply: Buffer; client: RawClient }> => {
    const client = await RawClient.connect(t, port)
    client.send(Buffer.concat([hex('050102'), passwordRequest(user, 'pw'), ipv4Request(CONNECT, '127.0.0.1', echo.port)]))
    assert.deepEqual(await client.read(4), hex('0502 0100'))
    return { reply: await client.read(10), client }
  }
  const mallory = await login('mallory')
  assert.deepEqual(mallory.reply, DENIED)
  const alice = await login('alice')
  assert.deepEqual(alice.reply.subarray(0, 2), hex('0500'))
  alice.client.socket.end()
  // Without authentication there is no user, so "*" does not match and the default denies.
  await expectDenied(t, port, ipv4Request(CONNECT, '127.0.0.1', echo.port))
  assert.equal(echo.accepted(), 1)
})

test('commands: BIND and UDP ASSOCIATE denied, CONNECT allowed', async (t) => {
  const echo = await startEcho(t)
  const { port } = await startSocks(t, {}, (server) => server.register(rules, { rules: [{ action: 'deny', commands: ['bind', 'udp'] }] }))
  await expectDenied(t, port, ipv4Request(BIND, '0.0.0.0', 0))
  await expectDenied(t, port, ipv4Request(UDP, '0.0.0.0', 0))
  ;(await expectConnected(t, port, ipv4Request(CONNECT, '127.0.0.1', echo.port))).socket.end()
})

// ---- the client address, at negotiate ----

test('a client-only deny answers 05 FF at negotiate: no auth work, no resolver call', async (t) => {
  const resolver = mapResolver({ 'target.test': ['127.0.0.1'] })
  let authRuns = 0
  const { port } = await startSocks(t, { resolver }, (server) => {
    server.register(rules, { rules: [{ action: 'deny', from: 'loopback' }] })
    acceptAnyUser(server)
    server.use('auth', async (_ctx, next) => {
      authRuns++
      await next()
    })
  })
  const client = await RawClient.connect(t, port)
  client.send(Buffer.concat([hex('05020002'), domainRequest(CONNECT, 'target.test', 80)]))
  assert.deepEqual(await client.expectClose(), hex('05ff'))
  assert.deepEqual(resolver.calls, [])
  assert.equal(authRuns, 0)
})

test('from: an IPv6 client and a rule list decided by the client alone', async (t) => {
  const echo = await startEcho(t, '::1')
  const denying = await startSocks(t, { host: '::1' }, (server) => server.register(rules, { rules: [{ action: 'deny', from: '::1' }] }))
  const refused = await RawClient.connect(t, denying.port, '::1')
  refused.send('050100')
  assert.deepEqual(await refused.expectClose(), hex('05ff'))
  // 127.0.0.0/8 does not cover ::1, so the next rule (allow any client) decides at negotiate and later rules never run.
  const allowing = await startSocks(t, { host: '::1' }, (server) =>
    server.register(rules, { rules: [{ action: 'deny', from: '127.0.0.0/8' }, { action: 'allow', from: 'any' }, { action: 'deny', to: 'loopback' }] }),
  )
  const { socket } = await socksConnect({ host: '::1', port: allowing.port }, { host: '::1', port: echo.port })
  trackClient(t, socket)
  socket.end('x')
  assert.equal((await once(socket, 'data'))[0].toString(), 'x')
})

// ---- CONNECT: what the name resolves to ----

test('DNS rebinding: a name resolving to [denied, allowed] dials only the allowed address', async (t) => {
  const targets = await listenOnSamePort(t, ['127.0.0.2', '127.0.0.1'])
  const resolver = mapResolver({ 'rebind.test': ['127.0.0.2', '127.0.0.1'] })
  const { port } = await startSocks(t, { resolver }, (server) => server.register(rules, { rules: [{ action: 'deny', to: '127.0.0.2' }] }))
  const client = await expectConnected(t, port, domainRequest(CONNECT, 'rebind.test', targets.port))
  client.send(Buffer.from('hi'))
  assert.equal((await client.read(2)).toString(), 'hi')
  client.socket.end()
  assert.equal(targets.accepted.get('127.0.0.2'), 0)
  assert.equal(targets.accepted.get('127.0.0.1'), 1)
  assert.deepEqual(resolver.calls, ['rebind.test'], 'resolved once: the dialer used the vetted list')
})

test('a name resolving only to denied addresses replies 02 and nothing is dialled', async (t) => {
  const targets = await listenOnSamePort(t, ['127.0.0.2', '127.0.0.3'])
  const resolver = mapResolver({ 'evil.test': ['127.0.0.2', '127.0.0.3'] })
  const { port } = await startSocks(t, { resolver }, (server) => server.register(rules, { rules: [{ action: 'deny', to: ['127.0.0.2', '127.0.0.3/32'] }] }))
  await expectDenied(t, port, domainRequest(CONNECT, 'evil.test', targets.port))
  assert.deepEqual([...targets.accepted.values()], [0, 0])
})

test('mixed-family answers: the denied IPv4 is dropped and the allowed ::1 is dialled', async (t) => {
  const targets = await listenOnSamePort(t, ['::1', '127.0.0.1'])
  const resolver = mapResolver({ 'dual.test': ['127.0.0.1', '::1'] })
  const { port } = await startSocks(t, { resolver }, (server) => server.register(rules, { rules: [{ action: 'deny', to: '127.0.0.0/8' }] }))
  const client = await expectConnected(t, port, domainRequest(CONNECT, 'dual.test', targets.port))
  client.socket.end()
  assert.equal(targets.accepted.get('127.0.0.1'), 0)
  assert.equal(targets.accepted.get('::1'), 1)
})

test('IPv4-mapped IPv6 is matched as IPv4: in answers, in ATYP 04 requests and in rule CIDRs', async (t) => {
  const target = await startTcpServer(t, () => {})
  const resolver = mapResolver({ 'mapped.test': ['::ffff:127.0.0.1'], 'hex-mapped.test': ['::ffff:7f00:1'] })
  const { port } = await startSocks(t, { resolver }, (server) => server.register(rules, { rules: [{ action: 'deny', to: '127.0.0.0/8' }] }))
  await expectDenied(t, port, domainRequest(CONNECT, 'mapped.test', target.port))
  await expectDenied(t, port, domainRequest(CONNECT, 'hex-mapped.test', target.port))
  const v6 = Buffer.concat([hex('05010004 00000000 00000000 0000ffff 7f000001'), Buffer.from([target.port >> 8, target.port & 0xff])])
  await expectDenied(t, port, v6)
  assert.equal(target.accepted(), 0)

  const mappedRule = await startSocks(t, {}, (server) => server.register(rules, { rules: [{ action: 'deny', to: '::ffff:127.0.0.0/104' }] }))
  await expectDenied(t, mappedRule.port, ipv4Request(CONNECT, '127.0.0.1', target.port))
  assert.equal(target.accepted(), 0)
})

test('numeric spellings of 127.0.0.1 sent as names are judged by what the system resolver returns', async (t) => {
  const target = await startTcpServer(t, () => {})
  const { port } = await startSocks(t, {}, (server) => server.register(rules, { rules: [{ action: 'deny', to: 'loopback' }] }))
  for (const name of ['2130706433', '0x7f.0.0.1', '0177.0.0.1', '127.1', '127.0.0.1', 'LOCALHOST']) {
    await expectDenied(t, port, domainRequest(CONNECT, name, target.port))
  }
  assert.equal(target.accepted(), 0)
  // And the other way round: an allow rule for 127.0.0.1 lets "2130706433" through, because that is where it goes.
  const echo = await startEcho(t)
  const allowing = await startSocks(t, {}, (server) => server.register(rules, { default: 'deny', rules: [{ action: 'allow', to: '127.0.0.1' }] }))
  ;(await expectConnected(t, allowing.port, domainRequest(CONNECT, '2130706433', echo.port))).socket.end()
})

test('domains: exact names match case-insensitively and with a trailing dot, decided before any lookup', async (t) => {
  const target = await startTcpServer(t, () => {})
  const resolver = mapResolver({ 'EVIL.test.': ['127.0.0.1'], 'evil.test..': ['127.0.0.1'] })
  const { port } = await startSocks(t, { resolver }, (server) => server.register(rules, { rules: [{ action: 'deny', domains: 'evil.test' }] }))
  await expectDenied(t, port, domainRequest(CONNECT, 'EVIL.test.', target.port))
  // Two trailing dots make an empty label: not a host name at all, refused by the core (REP 04) before any rule.
  const { reply } = await request(t, port, domainRequest(CONNECT, 'evil.test..', target.port))
  assert.deepEqual(reply, hex('05040001000000000000'))
  assert.deepEqual(resolver.calls, [], 'a rule on the name alone needs no DNS')
  assert.equal(target.accepted(), 0)
})

test('domains: "*.example.com" matches sub-domains at any depth but not the apex', async (t) => {
  const echo = await startEcho(t)
  const names = ['a.good.test', 'x.y.good.test', 'good.test', 'a.bad.test', 'notgood.test']
  const resolver = mapResolver(Object.fromEntries(names.map((n) => [n, ['127.0.0.1']])))
  const { port } = await startSocks(t, { resolver }, (server) => server.register(rules, { default: 'deny', rules: [{ action: 'allow', domains: '*.GOOD.test' }] }))
  ;(await expectConnected(t, port, domainRequest(CONNECT, 'a.good.test', echo.port))).socket.end()
  ;(await expectConnected(t, port, domainRequest(CONNECT, 'x.y.good.test', echo.port))).socket.end()
  await expectDenied(t, port, domainRequest(CONNECT, 'good.test', echo.port))
  await expectDenied(t, port, domainRequest(CONNECT, 'a.bad.test', echo.port))
  await expectDenied(t, port, domainRequest(CONNECT, 'notgood.test', echo.port))
  await expectDenied(t, port, ipv4Request(CONNECT, '127.0.0.1', echo.port))
})

test('deny rules before an allowed domain still catch a name that points at a denied range', async (t) => {
  const target = await startTcpServer(t, () => {})
  const resolver = mapResolver({ 'intranet.good.test': ['127.0.0.1'] })
  const { port } = await startSocks(t, { resolver }, (server) =>
    server.register(rules, { default: 'deny', rules: [{ action: 'deny', to: ['loopback', 'private'] }, { action: 'allow', domains: '*.good.test' }] }),
  )
  await expectDenied(t, port, domainRequest(CONNECT, 'intranet.good.test', target.port))
  assert.equal(target.accepted(), 0)
})

// ---- BIND ----

test('BIND: a denied DST.ADDR is refused at the request; a denied inbound peer is closed and the wait goes on', async (t) => {
  const { port } = await startSocks(t, {}, (server) => server.register(rules, { rules: [{ action: 'deny', to: '127.0.0.2' }] }))
  await expectDenied(t, port, ipv4Request(BIND, '127.0.0.2', 0))

  const proxy = { host: '127.0.0.1', port }
  const { socket, bound, accepted } = await socksBind(proxy, { host: '0.0.0.0', port: 0 })
  trackClient(t, socket)
  await expectPeerRefused(t, bound, '127.0.0.2')
  const goodPeer = connect({ host: bound.host, port: bound.port, localAddress: '127.0.0.1' })
  trackClient(t, goodPeer)
  const { peer } = await accepted
  assert.equal(peer.host, '127.0.0.1')
  assert.equal(peer.port, goodPeer.localPort)
  goodPeer.end('from peer')
  assert.equal((await once(socket, 'data'))[0].toString(), 'from peer')
})

test('BIND: with a specific DST.ADDR the core rule still holds (only that IP may connect)', async (t) => {
  const { port } = await startSocks(t, {}, (server) => server.register(rules, { rules: [{ action: 'deny', to: '127.0.0.9' }] }))
  const { socket, bound, accepted } = await socksBind({ host: '127.0.0.1', port }, { host: '127.0.0.1', port: 0 })
  trackClient(t, socket)
  await expectPeerRefused(t, bound, '127.0.0.3')
  const expected = connect({ host: bound.host, port: bound.port, localAddress: '127.0.0.1' })
  trackClient(t, expected)
  assert.equal((await accepted).peer.host, '127.0.0.1')
})

test('BIND: an acceptBindPeer set by an earlier middleware is kept and chained with the rules', async (t) => {
  const { port } = await startSocks(t, {}, (server) => {
    server.use('connect', async (ctx, next) => {
      ctx.acceptBindPeer = (peer) => peer.host !== '127.0.0.3'
      await next()
    })
    server.register(rules, { rules: [{ action: 'deny', to: '127.0.0.2' }] })
  })
  const { socket, bound, accepted } = await socksBind({ host: '127.0.0.1', port }, { host: '0.0.0.0', port: 0 })
  trackClient(t, socket)
  for (const localAddress of ['127.0.0.2', '127.0.0.3']) await expectPeerRefused(t, bound, localAddress)
  const peer = connect({ host: bound.host, port: bound.port, localAddress: '127.0.0.4' })
  trackClient(t, peer)
  assert.equal((await accepted).peer.host, '127.0.0.4')
})

// ---- UDP ----

test('UDP: a datagram to a denied address is dropped while an allowed one is relayed', async (t) => {
  const echo = await startUdpEcho(t)
  const denied = await udpSocket(t, '127.0.0.2')
  const resolver = mapResolver({ 'bad.test': ['::ffff:127.0.0.2'], 'ok.test': ['127.0.0.1'] })
  let captured: { current: UdpAssociation | null } = { current: null }
  const { port } = await startSocks(t, { resolver }, (server) => {
    server.register(rules, { rules: [{ action: 'deny', to: '127.0.0.2' }] })
    captured = captureAssociation(server)
  })
  const association = await socksAssociate({ host: '127.0.0.1', port })
  t.after(() => association.close())
  const replies: string[] = []
  association.on('message', (data) => replies.push(data.toString()))
  association.send(Buffer.from('to-denied-ip'), { host: '127.0.0.2', port: denied.port })
  association.send(Buffer.from('to-denied-name'), { host: 'bad.test', port: denied.port })
  association.send(Buffer.from('to-allowed-ip'), { host: '127.0.0.1', port: echo.port })
  association.send(Buffer.from('to-allowed-name'), { host: 'ok.test', port: echo.port })
  await waitFor(() => replies.length === 2 && captured.current !== null && captured.current.datagramsDropped === 2)
  assert.deepEqual(replies.sort(), ['to-allowed-ip', 'to-allowed-name'])
  assert.equal(denied.received.length, 0)
  association.close()
})

test('UDP: inbound datagrams from a denied peer are dropped (acceptFromAnyPeer)', async (t) => {
  const echo = await startUdpEcho(t)
  const deniedPeer = await udpSocket(t, '127.0.0.2')
  const allowedPeer = await udpSocket(t, '127.0.0.3')
  let captured: { current: UdpAssociation | null } = { current: null }
  const { port } = await startSocks(t, { udp: { acceptFromAnyPeer: true } }, (server) => {
    server.register(rules, { rules: [{ action: 'deny', to: '127.0.0.2' }] })
    captured = captureAssociation(server)
  })
  const association = await socksAssociate({ host: '127.0.0.1', port })
  t.after(() => association.close())
  const from: string[] = []
  association.on('message', (_data, peer) => from.push(peer.host))
  association.send(Buffer.from('hello'), { host: '127.0.0.1', port: echo.port })
  await waitFor(() => from.length === 1)
  // The proxy's outbound socket is where the echo saw the datagram come from; unsolicited peers send there.
  const outPort = echo.received[0]!.port
  deniedPeer.socket.send('unsolicited', outPort, '127.0.0.1')
  await waitFor(() => captured.current !== null && captured.current.datagramsDropped === 1)
  allowedPeer.socket.send('unsolicited', outPort, '127.0.0.1')
  await waitFor(() => from.length === 2)
  assert.deepEqual(from, ['127.0.0.1', '127.0.0.3'])
  association.close()
})

test('UDP: a domain allow rule also admits the replies of the peer it resolved to', async (t) => {
  const echo = await startUdpEcho(t)
  const resolver = mapResolver({ 'dns.good.test': ['127.0.0.1'] })
  const { port } = await startSocks(t, { resolver }, (server) => server.register(rules, { default: 'deny', rules: [{ action: 'allow', domains: '*.good.test' }] }))
  const association = await socksAssociate({ host: '127.0.0.1', port })
  t.after(() => association.close())
  const replies: string[] = []
  association.on('message', (data) => replies.push(data.toString()))
  association.send(Buffer.from('by-ip'), { host: '127.0.0.1', port: echo.port })
  association.send(Buffer.from('by-name'), { host: 'dns.good.test', port: echo.port })
  await waitFor(() => replies.length === 1 && echo.received.length === 1)
  assert.deepEqual(replies, ['by-name'])
  assert.equal(echo.received[0]!.data.toString(), 'by-name')
  association.close()
})

// ---- options ----

function registerError(options: unknown): string {
  const server = createServer({ logger: silentLogger })
  try {
    server.register(rules, options)
  } catch (err) {
    assert.ok(isSocksError(err))
    assert.equal(err.code, 'ERR_PLUGIN_OPTIONS')
    return err.message
  }
  assert.fail('expected register() to throw')
}

test('options are validated with the field path and a hint', () => {
  const cases: [unknown, string][] = [
    [undefined, 'plugin rules: options are required'],
    [{ rules: [{ action: 'deny' }, { action: 'deny' }, { action: 'deny', to: '10.0.0.0/33' }] }, 'plugin rules: rules[2].to: "10.0.0.0/33" is not a valid CIDR or preset'],
    [{ rules: [{ action: 'deny', to: ['10.0.0.0/8', 'privat'] }] }, 'rules[0].to[1]: "privat" is not a valid CIDR or preset (did you mean "private"?)'],
    [{ rules: [{ action: 'deny', from: '0x7f.0.0.1' }] }, 'rules[0].from: "0x7f.0.0.1" is not a valid CIDR or preset'],
    [{ rules: [{ action: 'deny', tos: 'loopback' }] }, 'rules[0].tos: unknown key; did you mean "to"?'],
    [{ rule: [] }, 'plugin rules: rule: unknown key; did you mean "rules"?'],
    [{ rules: {} }, 'rules: expected a list of rules, found an object'],
    [{ default: 'reject', rules: [] }, 'default: expected "allow" or "deny", found "reject"'],
    [{ rules: [{ to: 'loopback' }] }, 'rules[0].action: is required'],
    [{ rules: [{ action: 'alow' }] }, 'rules[0].action: expected "allow" or "deny", found "alow" (did you mean "allow"?)'],
    [{ rules: [{ action: 'deny', ports: '9000-8000' }] }, 'rules[0].ports: "9000-8000": the range starts above its end'],
    [{ rules: [{ action: 'deny', ports: [80, 65536] }] }, 'rules[0].ports[1]: expected a port (0-65535) or a range like "8000-8999", found number 65536'],
    [{ rules: [{ action: 'deny', ports: [] }] }, 'rules[0].ports: must not be an empty list'],
    [{ rules: [{ action: 'deny', domains: '10.0.0.1' }] }, 'rules[0].domains: "10.0.0.1" looks like an IP address'],
    [{ rules: [{ action: 'deny', domains: 'a.*.com' }] }, 'only a leading "*." wildcard is supported'],
    [{ rules: [{ action: 'deny', domains: 'bad name.com' }] }, 'is not a valid domain name'],
    [{ rules: [{ action: 'deny', commands: 'udp-associate' }] }, 'rules[0].commands: "udp-associate" is not a command (connect, bind, udp)'],
    [{ rules: [{ action: 'deny', users: [''] }] }, 'rules[0].users[0]: expected a user name'],
  ]
  for (const [options, expected] of cases) {
    const message = registerError(options)
    assert.ok(message.includes(expected), `${JSON.stringify(options)}\n  got:      ${message}\n  expected: ${expected}`)
  }
})

test('every bad rule is reported, not only the first, one line each', () => {
  const message = registerError({
    default: 'reject',
    extra: 1,
    rules: [
      { action: 'deny', to: '10.0.0.0/33' },
      { action: 'allow', to: 'loopback' },
      { action: 'alow' },
      { action: 'deny', ports: [80, 65536] },
    ],
  })
  assert.deepEqual(message.split('\n'), [
    'plugin rules: extra: unknown key (known keys: default, rules)',
    'plugin rules: default: expected "allow" or "deny", found "reject"',
    'plugin rules: rules[0].to: "10.0.0.0/33" is not a valid CIDR or preset (presets: loopback, private, link-local, multicast, unspecified, cgnat, any)',
    'plugin rules: rules[2].action: expected "allow" or "deny", found "alow" (did you mean "allow"?)',
    'plugin rules: rules[3].ports[1]: expected a port (0-65535) or a range like "8000-8999", found number 65536',
  ])
})

test('valid options: single values, presets, bare IPs, IPv6 CIDRs, port strings', () => {
  const server = createServer({ logger: silentLogger })
  server.register(rules, {
    default: 'deny',
    rules: [
      { action: 'deny', to: ['loopback', 'private', 'link-local', 'multicast', 'unspecified', 'cgnat', '192.0.2.1', '2001:db8::/32'] },
      { action: 'allow', from: 'any', domains: ['example.com', '*.example.com', 'bücher.de', '_sip.example.com'], ports: [80, '443', '8000-8999'], users: 'alice', commands: 'connect' },
    ],
  })
  assert.deepEqual(server.plugins, ['rules'])
  assert.deepEqual(PRESETS.private, ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'])
})

test('compileMatcher: the reusable matcher (for upstream routes)', () => {
  const at = { plugin: 'upstream', fail(field: string, message: string): never { throw new Error(`${field}: ${message}`) } }
  const match = compileMatcher({ to: 'private', ports: '8000-8999' }, at, 'routes[0].match')
  assert.deepEqual(match.fields, ['to', 'ports'])
  assert.equal(match({ address: '10.1.2.3', port: 8080 }), true)
  assert.equal(match({ address: '::ffff:10.1.2.3', port: 8080 }), true)
  assert.equal(match({ address: '11.1.2.3', port: 8080 }), false)
  assert.equal(match({ name: 'example.com', port: 8080 }), false, 'an unknown address is no match')
  const byName = compileMatcher({ domains: ['*.Example.com'], users: 'bob' }, at, 'routes[1].match')
  assert.equal(byName({ name: 'API.example.COM.', user: 'bob' }), true)
  assert.equal(byName({ name: 'example.com', user: 'bob' }), false)
  assert.equal(byName({ name: 'a.example.com', user: null }), false)
  assert.equal(compileMatcher({}, at, 'routes[2].match')({}), true, 'no conditions match everything')
  assert.throws(() => compileMatcher({ proxy: 'socks5://x' }, at, 'routes[3].match'), /routes\[3\]\.match\.proxy: unknown key \(known keys: from, to, domains, ports, users, commands\)/)
  assert.doesNotThrow(() => compileMatcher({ proxy: 'socks5://x', to: 'any' }, at, 'routes[3]', ['proxy']))
})

test('BIND to a specific address with port 0 is judged at the peer, not refused for an undecided port rule', async (t) => {
  const { port } = await startSocks(t, {}, (s) => s.register(rules, { default: 'deny', rules: [{ action: 'deny', ports: [25] }, { action: 'allow', to: ['127.0.0.0/8'] }] }))
  const { socket, bound, accepted } = await socksBind({ host: '127.0.0.1', port }, { host: '127.0.0.1', port: 0 })
  trackClient(t, socket)
  const peer = trackClient(t, connect({ host: bound.host, port: bound.port }))
  const { peer: seen } = await accepted
  assert.equal(seen.port, peer.localPort)
})
