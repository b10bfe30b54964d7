// What is dialled is what the rules see: names that are not host names are refused before anything
// resolves them, and the unspecified addresses count as the loopback they reach.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { RawClient, startEcho, startSocks, startTcpServer, ipv4Request, domainRequest, mapResolver, hex } from '../helpers/net.js'
import rules from 'socksmith/plugins/rules'
import { encodeAddress, isValidDomainName, toAsciiDomainName } from 'socksmith/protocol'
import { isSocksError } from 'socksmith'

const CONNECT = 1
const BIND = 2
const REFUSED_04 = hex('05040001000000000000')
const DENIED_02 = hex('05020001000000000000')

/** Sends greeting + request at once and returns the reply to the request. */
async function ask(t: Parameters<typeof RawClient.connect>[0], port: number, request: Buffer): Promise<Buffer> {
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), request]))
  assert.deepEqual(await c.read(2), hex('0500'))
  return c.read(10)
}

function ipv6Request(command: number, bytes: string, port: number): Buffer {
  return Buffer.concat([hex(`05 ${command.toString(16).padStart(2, '0')} 00 04`), hex(bytes), Buffer.from([port >> 8, port & 0xff])])
}

test('a NUL in a domain name is refused with REP 04 before anything resolves it, even when an allow rule matches the name', async (t) => {
  // The system resolver (getaddrinfo) stops at the NUL: "127.0.0.3\0.allowed.test" would be dialled to 127.0.0.3.
  const hidden = await startTcpServer(t, () => {}, '127.0.0.3')
  const loopback = await startTcpServer(t, () => {})
  const { port } = await startSocks(t, {}, (server) =>
    server.register(rules, { default: 'deny', rules: [{ action: 'allow', domains: '*.allowed.test' }] }),
  )
  for (const name of ['127.0.0.3\0.allowed.test', 'forbidden.test\0.allowed.test', 'localhost\0.allowed.test']) {
    const target = name.startsWith('127.0.0.3') ? hidden.port : loopback.port
    assert.deepEqual(await ask(t, port, domainRequest(CONNECT, name, target)), REFUSED_04, JSON.stringify(name))
  }
  assert.equal(hidden.accepted(), 0, 'the name behind the NUL was never dialled')
  assert.equal(loopback.accepted(), 0)
})

test('control characters, whitespace and malformed labels are not names: REP 04, the resolver is never asked', async (t) => {
  const resolver = mapResolver({})
  const { port } = await startSocks(t, { resolver })
  const bad = ['a b.test', 'tab\t.test', 'new\nline.test', 'del\x7f.test', '.leading.test', 'double..dot.test', `${'a'.repeat(64)}.test`, 'per%cent.test', 'slash/x.test', 'at@x.test', '.']
  for (const name of bad) {
    assert.deepEqual(await ask(t, port, domainRequest(CONNECT, name, 80)), REFUSED_04, JSON.stringify(name))
    assert.deepEqual(await ask(t, port, domainRequest(BIND, name, 80)), REFUSED_04, `BIND ${JSON.stringify(name)}`)
  }
  assert.deepEqual(resolver.calls, [])
})

test('valid names pass: underscores, a trailing dot, and an IDN asked in its A-label form', async (t) => {
  const echo = await startEcho(t)
  const resolver = mapResolver({ '_svc.echo.test': ['127.0.0.1'], 'echo.test.': ['127.0.0.1'], 'xn--bcher-kva.test': ['127.0.0.1'] })
  const { port } = await startSocks(t, { resolver })
  for (const name of ['_svc.echo.test', 'echo.test.', 'bücher.test']) {
    assert.equal((await ask(t, port, domainRequest(CONNECT, name, echo.port)))[1], 0, name)
  }
  assert.deepEqual(resolver.calls, ['_svc.echo.test', 'echo.test.', 'xn--bcher-kva.test'])
})

test('the domain-name check: lengths, labels, characters, IDN', () => {
  assert.equal(isValidDomainName(`${'a'.repeat(63)}.test`), true)
  assert.equal(isValidDomainName(`${'a'.repeat(64)}.test`), false)
  const long = Array.from({ length: 4 }, () => 'a'.repeat(62)).join('.') // 251 characters
  assert.equal(isValidDomainName(`${long}.b`), true) // 253
  assert.equal(isValidDomainName(`${long}.b.`), true) // 253 and the root
  assert.equal(isValidDomainName(`${long}.bc`), false) // 254
  assert.equal(isValidDomainName(''), false)
  assert.equal(isValidDomainName('x\0'), false)
  assert.equal(toAsciiDomainName('BÜCHER.test'), 'xn--bcher-kva.test')
  assert.equal(toAsciiDomainName('a\u0000b'), null)
})

test('a name that is not one is never forwarded: the encoder refuses it (upstream hops, UDP headers)', () => {
  for (const host of ['a\0b.test', 'a b', '']) {
    assert.throws(() => encodeAddress({ type: 'domain', host, port: 1 }), (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_BAD_ADDRESS' && err.reply === 4)
  }
  assert.equal(encodeAddress({ type: 'domain', host: 'ok.test', port: 1 }).length, 1 + 1 + 7 + 2)
})

test('a middleware that rewrites the destination to a bad name is refused at resolve time (REP 04)', async (t) => {
  const resolver = mapResolver({})
  const { port } = await startSocks(t, { resolver }, (server) =>
    server.use('request', async function rewrite(ctx, next) {
      ctx.destination = { type: 'domain', host: 'x\0.test', port: 80 }
      await next()
    }),
  )
  assert.deepEqual(await ask(t, port, domainRequest(CONNECT, 'fine.test', 80)), REFUSED_04)
  assert.deepEqual(resolver.calls, [])
})

// ---- unspecified addresses are loopback ----

test('CONNECT to 0.0.0.0, ::, ::ffff:0.0.0.0 and the name "0" is denied by a rule denying loopback', async (t) => {
  const v4 = await startTcpServer(t, () => {}, '127.0.0.1')
  const v6 = await startTcpServer(t, () => {}, '::1')
  // The README's own example rule.
  const { port } = await startSocks(t, {}, (server) => server.register(rules, { rules: [{ action: 'deny', to: ['loopback', 'private', 'link-local'] }] }))
  assert.deepEqual(await ask(t, port, ipv4Request(CONNECT, '0.0.0.0', v4.port)), DENIED_02)
  assert.deepEqual(await ask(t, port, ipv6Request(CONNECT, '00000000000000000000000000000000', v6.port)), DENIED_02)
  assert.deepEqual(await ask(t, port, ipv6Request(CONNECT, '00000000000000000000ffff00000000', v4.port)), DENIED_02)
  // The system resolver turns "0" into 0.0.0.0.
  assert.deepEqual(await ask(t, port, domainRequest(CONNECT, '0', v4.port)), DENIED_02)
  assert.equal(v4.accepted(), 0)
  assert.equal(v6.accepted(), 0)
})

test('a deny rule for 127.0.0.1/32 also covers 0.0.0.0; without rules 0.0.0.0 is dialled as 127.0.0.1', async (t) => {
  const echo = await startEcho(t)
  const denying = await startSocks(t, {}, (server) => server.register(rules, { rules: [{ action: 'deny', to: '127.0.0.1/32' }] }))
  assert.deepEqual(await ask(t, denying.port, ipv4Request(CONNECT, '0.0.0.0', echo.port)), DENIED_02)
  assert.equal(echo.sockets.length, 0)
  const dialed: string[] = []
  const open = await startSocks(t, {}, (server) =>
    server.use('relay', async function record(ctx, next) {
      dialed.push(`${ctx.destination.host} ${ctx.dialed?.host}`)
      await next()
    }),
  )
  const reply = await ask(t, open.port, ipv4Request(CONNECT, '0.0.0.0', echo.port))
  assert.equal(reply[1], 0)
  assert.deepEqual(dialed, ['127.0.0.1 127.0.0.1'])
})

test('the rest of 0.0.0.0/8 is not a destination: REP 04, never dialled', async (t) => {
  const { port } = await startSocks(t)
  assert.deepEqual(await ask(t, port, ipv4Request(CONNECT, '0.1.2.3', 80)), REFUSED_04)
  assert.deepEqual(await ask(t, port, ipv6Request(CONNECT, '00000000000000000000ffff00010203', 80)), REFUSED_04)
})

test('a name resolving to 0.0.0.0 is checked as loopback', async (t) => {
  const echo = await startEcho(t)
  const resolver = mapResolver({ 'zero.test': ['0.0.0.0'] })
  const { port } = await startSocks(t, { resolver }, (server) => server.register(rules, { rules: [{ action: 'deny', to: 'loopback' }] }))
  assert.deepEqual(await ask(t, port, domainRequest(CONNECT, 'zero.test', echo.port)), DENIED_02)
  assert.equal(echo.sockets.length, 0)
})
