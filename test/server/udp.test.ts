// UDP ASSOCIATE (RFC 1928 §7).
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { once } from 'node:events'
import { RawClient, startSocks, startUdpEcho, hex, mapResolver, waitFor } from '../helpers/net.js'
import { encodeDatagramHeader, parseDatagramHeader, toAddress, type Address } from 'socksmith/protocol'
import type { DatagramContext } from 'socksmith'

interface Association {
  control: RawClient
  relay: { host: string; port: number }
  udp: UdpSocket
  send(to: Address, data: Buffer | string): void
  receive(timeout?: number): Promise<{ from: Address; data: Buffer }>
}

async function associate(t: TestContext, socksPort: number, options: { host?: string; family?: 4 | 6; hint?: Buffer } = {}): Promise<Association> {
  const host = options.host ?? '127.0.0.1'
  const udp = createSocket(options.family === 6 ? 'udp6' : 'udp4')
  udp.bind(0, host)
  await once(udp, 'listening')
  t.after(() => udp.close())
  const control = await RawClient.connect(t, socksPort, host)
  const hint = options.hint ?? (options.family === 6 ? hex('04 00000000000000000000000000000000 0000') : hex('01 00000000 0000'))
  control.send(Buffer.concat([hex('050100 050300'), hint]))
  assert.deepEqual(await control.read(2), hex('0500'))
  const head = await control.read(4)
  assert.equal(head[1], 0, 'UDP ASSOCIATE succeeded')
  const rest = await control.read(head[3] === 1 ? 6 : 18)
  const reply = parseDatagramHeader(Buffer.concat([hex('000000'), rest.subarray(0, 0), Buffer.from([head[3]!]), rest]))!
  const queue: { from: Address; data: Buffer }[] = []
  let wake: (() => void) | null = null
  udp.on('message', (msg) => {
    const header = parseDatagramHeader(msg)
    assert.ok(header !== null)
    queue.push({ from: header.address, data: msg.subarray(header.headerLength) })
    wake?.()
  })
  return {
    control,
    relay: { host: reply.address.host, port: reply.address.port },
    udp,
    send(to, data) {
      udp.send([encodeDatagramHeader(to), typeof data === 'string' ? Buffer.from(data) : data], reply.address.port, reply.address.host)
    },
    async receive(timeout = 2000) {
      const deadline = Date.now() + timeout
      while (queue.length === 0) {
        if (Date.now() > deadline) throw new Error('no datagram arrived')
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 20)
          wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
        wake = null
      }
      return queue.shift()!
    },
  }
}

/** Sends a datagram and expects none back within a short window (the proxy dropped it). */
async function expectSilence(a: Association, ms = 150): Promise<void> {
  await assert.rejects(a.receive(ms), /no datagram/)
}

test('UDP: DST 0.0.0.0:0 is accepted, the reply names the control connection IP, datagrams go both ways', async (t) => {
  const echo = await startUdpEcho(t)
  const { port } = await startSocks(t)
  const a = await associate(t, port)
  assert.equal(a.relay.host, '127.0.0.1')
  assert.notEqual(a.relay.port, 0)
  a.send(toAddress('127.0.0.1', echo.port), 'ping')
  const got = await a.receive()
  assert.equal(got.data.toString(), 'ping')
  assert.deepEqual(got.from, { type: 'ipv4', host: '127.0.0.1', port: echo.port })
})

test('UDP over IPv6: relay on ::1, IPv6 destination', async (t) => {
  const echo = await startUdpEcho(t, 'udp6')
  const { port } = await startSocks(t, { host: '::1' })
  const a = await associate(t, port, { host: '::1', family: 6 })
  assert.equal(a.relay.host, '::1')
  a.send(toAddress('::1', echo.port), 'six')
  const got = await a.receive()
  assert.equal(got.data.toString(), 'six')
  assert.deepEqual(got.from, { type: 'ipv6', host: '::1', port: echo.port })
})

test('UDP: a domain destination is resolved with the server resolver', async (t) => {
  const echo = await startUdpEcho(t)
  const resolver = mapResolver({ 'udp.test': ['127.0.0.1'] })
  const { port } = await startSocks(t, { resolver })
  const a = await associate(t, port)
  a.send(toAddress('udp.test', echo.port), 'named')
  assert.equal((await a.receive()).data.toString(), 'named')
  assert.deepEqual(resolver.calls, ['udp.test'])
})

test('UDP: FRAG ≠ 0 and malformed headers are dropped; the association lives on', async (t) => {
  const echo = await startUdpEcho(t)
  const { port } = await startSocks(t)
  const a = await associate(t, port)
  const header = encodeDatagramHeader(toAddress('127.0.0.1', echo.port))
  header[2] = 1
  a.udp.send([header, Buffer.from('fragment')], a.relay.port, a.relay.host)
  a.udp.send(hex('000000 09 01020304'), a.relay.port, a.relay.host)
  a.udp.send(hex('0000'), a.relay.port, a.relay.host)
  await expectSilence(a)
  assert.equal(echo.received.length, 0)
  a.send(toAddress('127.0.0.1', echo.port), 'whole')
  assert.equal((await a.receive()).data.toString(), 'whole')
})

test('UDP: datagrams from another port than the declared one are dropped', async (t) => {
  const echo = await startUdpEcho(t)
  const { port } = await startSocks(t)
  const other = createSocket('udp4')
  other.bind(0, '127.0.0.1')
  await once(other, 'listening')
  t.after(() => other.close())
  // Declare the port of `other`'s sibling: a socket we never send from.
  const declared = createSocket('udp4')
  declared.bind(0, '127.0.0.1')
  await once(declared, 'listening')
  t.after(() => declared.close())
  const hint = Buffer.concat([hex('01 7f000001'), Buffer.from([declared.address().port >> 8, declared.address().port & 255])])
  const a = await associate(t, port, { hint })
  a.send(toAddress('127.0.0.1', echo.port), 'wrong port')
  await expectSilence(a)
  assert.equal(echo.received.length, 0)
})

test('UDP: after the first datagram the client port is pinned', async (t) => {
  const echo = await startUdpEcho(t)
  const { port } = await startSocks(t)
  const a = await associate(t, port)
  a.send(toAddress('127.0.0.1', echo.port), 'first')
  await a.receive()
  const stranger = createSocket('udp4')
  stranger.bind(0, '127.0.0.1')
  await once(stranger, 'listening')
  t.after(() => stranger.close())
  stranger.send([encodeDatagramHeader(toAddress('127.0.0.1', echo.port)), Buffer.from('hijack')], a.relay.port, a.relay.host)
  await expectSilence(a)
  assert.deepEqual(echo.received.map((r) => r.data.toString()), ['first'])
})

test('UDP: inbound datagrams from peers the client never sent to are dropped', async (t) => {
  const echo = await startUdpEcho(t)
  const { port } = await startSocks(t)
  const a = await associate(t, port)
  a.send(toAddress('127.0.0.1', echo.port), 'hello')
  await a.receive()
  // Learn the proxy's outbound address from what the echo server saw, then write to it from a stranger.
  const outbound = echo.received[0]!
  const stranger = createSocket('udp4')
  t.after(() => stranger.close())
  stranger.send('unsolicited', outbound.port, '127.0.0.1')
  await expectSilence(a)
})

test('UDP: a 64 KiB-class datagram is relayed whole', async (t) => {
  const echo = await startUdpEcho(t)
  const { port } = await startSocks(t)
  const a = await associate(t, port)
  a.udp.setSendBufferSize(256 * 1024)
  a.udp.setRecvBufferSize(256 * 1024)
  const big = Buffer.alloc(65_000, 0x5a)
  a.send(toAddress('127.0.0.1', echo.port), big)
  const got = await a.receive()
  assert.equal(got.data.length, big.length)
  assert.ok(got.data.equals(big))
})

test('UDP: the association ends when its TCP connection closes', async (t) => {
  const echo = await startUdpEcho(t)
  let datagrams = 0
  const { port, server } = await startSocks(t, {}, (s) => s.use('datagram', async function count(_ctx, next) {
    datagrams++
    await next()
  }))
  const a = await associate(t, port)
  a.send(toAddress('127.0.0.1', echo.port), 'one')
  await a.receive()
  a.control.socket.end()
  await a.control.expectClose()
  await waitFor(() => server.connections === 0)
  const before = datagrams
  a.send(toAddress('127.0.0.1', echo.port), 'after close')
  await expectSilence(a)
  assert.equal(datagrams, before, 'the closed association saw nothing')
})

test('UDP: the idle timeout ends the association and its control connection', async (t) => {
  const { port, server } = await startSocks(t, { timeouts: { udpIdle: 150 } })
  const a = await associate(t, port)
  await a.control.expectClose(3000)
  await waitFor(() => server.connections === 0)
})

test('UDP: datagram middleware can count, drop and reroute, in both directions', async (t) => {
  const echo = await startUdpEcho(t)
  const seen: string[] = []
  const { port } = await startSocks(t, {}, (s) =>
    s.use('datagram', async function policy(ctx: DatagramContext, next) {
      seen.push(`${ctx.direction}:${ctx.data.toString()}`)
      if (ctx.data.toString() === 'drop me') return ctx.drop()
      if (ctx.direction === 'out' && ctx.peer.host === 'reroute.invalid') ctx.peer = toAddress('127.0.0.1', echo.port)
      await next()
    }),
  )
  const a = await associate(t, port)
  a.send(toAddress('127.0.0.1', echo.port), 'drop me')
  await expectSilence(a)
  a.send(toAddress('reroute.invalid', 9), 'rerouted')
  const got = await a.receive()
  assert.equal(got.data.toString(), 'rerouted')
  assert.deepEqual(seen, ['out:drop me', 'out:rerouted', 'in:rerouted'])
})

test('UDP: associations per client are limited (REP 02 beyond the limit)', async (t) => {
  const { port } = await startSocks(t, { udp: { maxAssociationsPerClient: 2 } })
  await associate(t, port)
  await associate(t, port)
  const third = await RawClient.connect(t, port)
  third.send('050100 050300 01 00000000 0000')
  assert.deepEqual(await third.expectClose(), hex('0500 05020001000000000000'))
})

// ---- what a datagram is sent to (hardening) ----

/** A raw SOCKS UDP header for a domain name, bytes as given (the encoder refuses names that are not names). */
function rawDomainHeader(name: string, port: number): Buffer {
  const bytes = Buffer.from(name, 'latin1')
  return Buffer.concat([hex('000000 03'), Buffer.from([bytes.length]), bytes, Buffer.from([port >> 8, port & 0xff])])
}

test('UDP: a datagram to a name with a NUL (or other non-name bytes) is dropped, never resolved or sent', async (t) => {
  const echo = await startUdpEcho(t)
  const resolver = mapResolver({ 'echo.test': ['127.0.0.1'] })
  const { port } = await startSocks(t, { resolver })
  const a = await associate(t, port)
  for (const name of ['127.0.0.1\0.echo.test', 'echo.test\0', 'a b.test', 'tab\t.test']) {
    a.udp.send([rawDomainHeader(name, echo.port), Buffer.from('smuggled')], a.relay.port, a.relay.host)
  }
  a.send({ type: 'domain', host: 'echo.test', port: echo.port }, 'fine')
  assert.equal((await a.receive()).data.toString(), 'fine')
  assert.deepEqual(echo.received.map((r) => r.data.toString()), ['fine'])
  assert.deepEqual(resolver.calls, ['echo.test'])
})

test('UDP: 0.0.0.0 and :: are sent to as loopback, so a rule denying 127.0.0.1/32 drops them', async (t) => {
  const echo = await startUdpEcho(t)
  const { default: rules } = await import('socksmith/plugins/rules')
  const { port } = await startSocks(t, {}, (s) => s.register(rules, { rules: [{ action: 'deny', to: '127.0.0.1/32' }] }))
  const a = await associate(t, port)
  a.send(toAddress('0.0.0.0', echo.port), 'via 0.0.0.0')
  a.send(toAddress('::ffff:0.0.0.0', echo.port), 'via mapped')
  await expectSilence(a)
  assert.equal(echo.received.length, 0)
  // Without rules the same datagram reaches the loopback service, and its reply names 127.0.0.1.
  const open = await startSocks(t)
  const b = await associate(t, open.port)
  b.send(toAddress('0.0.0.0', echo.port), 'hello')
  const got = await b.receive()
  assert.equal(got.data.toString(), 'hello')
  assert.deepEqual(got.from, { type: 'ipv4', host: '127.0.0.1', port: echo.port })
})

test('UDP: datagram lookups are bounded per association, dropped beyond, and all end when the association closes', async (t) => {
  const pending: AbortSignal[] = []
  const resolver = {
    // A nameserver that never answers; the lookup ends only when its signal aborts.
    resolve(_name: string, options?: { signal?: AbortSignal }) {
      pending.push(options!.signal!)
      return new Promise<never>((_resolve, reject) => options!.signal!.addEventListener('abort', () => reject(options!.signal!.reason)))
    },
  }
  let association: { datagramsDropped: number } | null = null
  const { port, server } = await startSocks(t, { resolver, timeouts: { connect: 60_000 } }, (s) =>
    s.use('connect', async function capture(ctx, next) {
      await next()
      association = ctx.association
    }),
  )
  const a = await associate(t, port)
  // Few and small enough that the kernel's receive buffer keeps them all.
  for (let i = 0; i < 40; i++) a.udp.send([rawDomainHeader(`n${i}.silent.test`, 9), Buffer.alloc(100)], a.relay.port, a.relay.host)
  await waitFor(() => association !== null && association.datagramsDropped + pending.length >= 40)
  assert.equal(pending.length, 8, 'at most 8 lookups in flight for one association')
  assert.equal(association!.datagramsDropped, 32, 'the rest are dropped and counted')
  a.control.socket.destroy()
  await waitFor(() => server.connections === 0)
  assert.ok(pending.every((signal) => signal.aborted), 'closing the association ends every pending lookup')
})

test('UDP: a datagram lookup has a deadline', async (t) => {
  const signals: AbortSignal[] = []
  const resolver = {
    resolve(_name: string, options?: { signal?: AbortSignal }) {
      signals.push(options!.signal!)
      return new Promise<never>(() => {}) // ignores its signal too
    },
  }
  const { port } = await startSocks(t, { resolver, timeouts: { connect: 200 } })
  const a = await associate(t, port)
  a.udp.send([rawDomainHeader('slow.test', 9), Buffer.from('x')], a.relay.port, a.relay.host)
  await waitFor(() => signals.length === 1)
  await waitFor(() => signals[0]!.aborted, 2000)
  // Its slot is free again: 8 more lookups may start at once.
  for (let i = 0; i < 8; i++) a.udp.send([rawDomainHeader(`s${i}.test`, 9), Buffer.from('x')], a.relay.port, a.relay.host)
  await waitFor(() => signals.length === 9)
})
