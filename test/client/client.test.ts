import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, createServer, isIP, type AddressInfo, type Socket } from 'node:net'
import { createSocket } from 'node:dgram'
import { socksAssociate, socksAssociateHop, socksBind, socksConnect, SocksError, type ProxyOptions } from '../../src/client/index.js'
import { waitFor } from '../helpers/net.js'
import { Reply, encodeDatagramHeader, encodeReply, parseDatagramHeader, toAddress } from '../../src/protocol/index.js'

function h(hex: string): Buffer {
  return Buffer.from(hex.replace(/\s+/g, ''), 'hex')
}

/** The proxy's side of one connection, scripted in raw bytes. */
class Peer {
  constructor(readonly socket: Socket) {}

  /** Exactly `n` bytes; fails if the client closes first. */
  async read(n: number): Promise<Buffer> {
    for (;;) {
      const chunk = this.socket.read(n) as Buffer | null
      if (chunk !== null) {
        if (chunk.length < n) throw new Error(`client closed after ${chunk.length} of ${n} bytes`)
        return chunk
      }
      if (this.socket.readableEnded) throw new Error('client closed')
      await Promise.race([once(this.socket, 'readable'), once(this.socket, 'end')])
    }
  }

  async expect(hex: string): Promise<void> {
    const expected = h(hex)
    assert.equal((await this.read(expected.length)).toString('hex'), expected.toString('hex'))
  }

  write(data: string | Buffer): Promise<void> {
    const bytes = typeof data === 'string' ? h(data) : data
    return new Promise((resolve, reject) => this.socket.write(bytes, (err) => (err ? reject(err) : resolve())))
  }

  /** Resolves once the client has closed its side (after reading anything still buffered). */
  async clientClosed(): Promise<void> {
    this.socket.resume()
    // allowHalfOpen: the client's FIN shows up as 'end' and no 'close' follows until we end too.
    if (!this.socket.readableEnded && !this.socket.destroyed) await Promise.race([once(this.socket, 'end'), once(this.socket, 'close')])
  }
}

interface ScriptedProxy extends ProxyOptions {
  /** Settles with the script of the first connection: a failed assertion there fails the test. */
  served: Promise<void>
}

async function scriptedProxy(
  t: TestContext,
  script: (peer: Peer) => Promise<void>,
  options: Partial<ProxyOptions> = {},
  host = '127.0.0.1',
): Promise<ScriptedProxy> {
  const sockets = new Set<Socket>()
  let settle!: (result: Promise<void>) => void
  const served = new Promise<void>((resolve) => (settle = resolve))
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.setNoDelay(true)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    settle(script(new Peer(socket)))
  })
  server.listen(0, host)
  await once(server, 'listening')
  t.after(async () => {
    for (const socket of sockets) socket.destroy()
    server.close()
    await once(server, 'close')
  })
  return { host, port: (server.address() as AddressInfo).port, served, ...options }
}

function cleanup(t: TestContext, socket: Socket): Socket {
  t.after(() => {
    socket.destroy()
  })
  return socket
}

async function readAll(socket: Socket): Promise<string> {
  let text = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => (text += chunk))
  await once(socket, 'end')
  return text
}

async function rejectsWith(promise: Promise<unknown>, code: string, extra: Record<string, unknown> = {}): Promise<SocksError> {
  let caught: unknown
  await assert.rejects(promise, (err) => {
    caught = err
    return true
  })
  assert.ok(caught instanceof SocksError, `expected a SocksError, got ${String(caught)}`)
  assert.equal(caught.code, code, caught.message)
  for (const [key, value] of Object.entries(extra)) assert.equal((caught as unknown as Record<string, unknown>)[key], value)
  return caught
}

async function hasIPv6Loopback(): Promise<boolean> {
  const server = createServer()
  try {
    server.listen(0, '::1')
    await once(server, 'listening')
    return true
  } catch {
    return false
  } finally {
    server.close()
  }
}

const REPLY_OK_LOCAL = '05 00 00 01 7f000001 1234'

test('CONNECT without auth: exact bytes, BND, then a working stream', async (t) => {
  const proxy = await scriptedProxy(t, async (peer) => {
    await peer.expect('05 01 00')
    await peer.write('05 00')
    await peer.expect('05 01 00 01 0a000001 1f90')
    await peer.write(REPLY_OK_LOCAL)
    await peer.write(await peer.read(4))
  })
  const { socket, bound } = await socksConnect(proxy, { host: '10.0.0.1', port: 8080 })
  cleanup(t, socket)
  assert.deepEqual(bound, { type: 'ipv4', host: '127.0.0.1', port: 0x1234 })
  socket.write('ping')
  const [echo] = (await once(socket, 'data')) as [Buffer]
  assert.equal(echo.toString(), 'ping')
  await proxy.served
})

test('CONNECT with username/password: exact bytes of greeting, RFC 1929 request and domain request', async (t) => {
  const received: Buffer[] = []
  const proxy = await scriptedProxy(
    t,
    async (peer) => {
      const read = async (n: number): Promise<Buffer> => {
        const bytes = await peer.read(n)
        received.push(bytes)
        return bytes
      }
      await read(4)
      await peer.write('05 02')
      await read(14)
      await peer.write('01 00')
      await read(18)
      await peer.write('05 00 00 04 20010db8000000000000000000000001 0050')
    },
    { username: 'alice', password: 'secret' },
  )
  const { socket, bound } = await socksConnect(proxy, { host: 'example.com', port: 443 })
  cleanup(t, socket)
  await proxy.served
  assert.equal(
    Buffer.concat(received).toString('hex'),
    h('05 02 00 02' + '01 05 616c696365 06 736563726574' + '05 01 00 03 0b 6578616d706c652e636f6d 01bb').toString('hex'),
  )
  assert.deepEqual(bound, { type: 'ipv6', host: '2001:db8::1', port: 80 })
})

test('onGreeted runs once, after the login succeeded and before the request is sent', async (t) => {
  const events: string[] = []
  const proxy = await scriptedProxy(
    t,
    async (peer) => {
      await peer.expect('05 02 00 02')
      await peer.write('05 02')
      await peer.expect('01 01 75 01 70')
      events.push('login read')
      await peer.write('01 00')
      await peer.expect('05 01 00 01 01020304 0050')
      events.push('request read')
      await peer.write(REPLY_OK_LOCAL)
    },
    { username: 'u', password: 'p' },
  )
  cleanup(t, (await socksConnect(proxy, { host: '1.2.3.4', port: 80 }, { onGreeted: () => events.push('greeted') })).socket)
  await proxy.served
  assert.deepEqual(events, ['login read', 'greeted', 'request read'])
})

test('credentials are not sent when the proxy picks NO AUTH', async (t) => {
  const proxy = await scriptedProxy(
    t,
    async (peer) => {
      await peer.expect('05 02 00 02')
      await peer.write('05 00')
      await peer.expect('05 01 00 01 01020304 0050')
      await peer.write(REPLY_OK_LOCAL)
    },
    { username: 'alice', password: 'secret' },
  )
  cleanup(t, (await socksConnect(proxy, { host: '1.2.3.4', port: 80 })).socket)
  await proxy.served
})

for (const rep of [0x01, 0x02, 0x05, 0x08, 0x0b]) {
  test(`failure reply ${rep} rejects with ERR_SOCKS_REPLY, err.reply = REP, and closes the connection`, async (t) => {
    const proxy = await scriptedProxy(t, async (peer) => {
      await peer.expect('05 01 00')
      await peer.write('05 00')
      await peer.read(10)
      await peer.write(Buffer.from([5, rep, 0, 1, 0, 0, 0, 0, 0, 0]))
      await peer.clientClosed()
    })
    await rejectsWith(socksConnect(proxy, { host: '1.2.3.4', port: 80 }), 'ERR_SOCKS_REPLY', { reply: rep })
    await proxy.served
  })
}

test('05 FF rejects with ERR_SOCKS_NO_ACCEPTABLE_METHOD', async (t) => {
  const proxy = await scriptedProxy(t, async (peer) => {
    await peer.expect('05 01 00')
    await peer.write('05 ff')
    await peer.clientClosed()
  })
  await rejectsWith(socksConnect(proxy, { host: '1.2.3.4', port: 80 }), 'ERR_SOCKS_NO_ACCEPTABLE_METHOD')
  await proxy.served
})

test('auth status ≠ 0 rejects with ERR_SOCKS_AUTH_FAILED and no request is sent (nor onGreeted called)', async (t) => {
  const proxy = await scriptedProxy(
    t,
    async (peer) => {
      await peer.expect('05 02 00 02')
      await peer.write('05 02')
      await peer.expect('01 01 75 01 70')
      await peer.write('01 01')
      assert.equal(peer.socket.readableLength, 0)
      await peer.clientClosed()
      assert.equal(peer.socket.read(), null)
    },
    { username: 'u', password: 'p' },
  )
  let greeted = 0
  await rejectsWith(socksConnect(proxy, { host: '1.2.3.4', port: 80 }, { onGreeted: () => greeted++ }), 'ERR_SOCKS_AUTH_FAILED')
  await proxy.served
  assert.equal(greeted, 0)
})

test('a method that was not offered rejects with ERR_SOCKS_PROXY_FAILED', async (t) => {
  const proxy = await scriptedProxy(t, async (peer) => {
    await peer.expect('05 01 00')
    await peer.write('05 02')
    await peer.clientClosed()
  })
  await rejectsWith(socksConnect(proxy, { host: '1.2.3.4', port: 80 }), 'ERR_SOCKS_PROXY_FAILED')
  await proxy.served
})

for (const [name, answer] of [
  ['before the method selection', ''],
  ['in the middle of the reply', '05 00 | 05 00 00 01 7f'],
] as const) {
  test(`proxy closing ${name} rejects with ERR_SOCKS_PROXY_FAILED`, async (t) => {
    const proxy = await scriptedProxy(t, async (peer) => {
      const [selection, reply] = answer.split('|')
      await peer.expect('05 01 00')
      if (selection) await peer.write(selection)
      if (reply) {
        await peer.read(10)
        await peer.write(reply)
      }
      peer.socket.end()
    })
    await rejectsWith(socksConnect(proxy, { host: '1.2.3.4', port: 80 }), 'ERR_SOCKS_PROXY_FAILED')
    await proxy.served
  })
}

for (const [name, selection, reply] of [
  ['VER ≠ 5 in the method selection', '04 00', ''],
  ['an unknown ATYP in the reply', '05 00', '05 00 00 09 00000000'],
  ['VER ≠ 5 in the reply', '05 00', '04 00 00 01 00000000 0000'],
] as const) {
  test(`${name} rejects with ERR_SOCKS_PROXY_FAILED, the codec error as cause`, async (t) => {
    const proxy = await scriptedProxy(t, async (peer) => {
      await peer.expect('05 01 00')
      await peer.write(selection)
      if (reply) {
        await peer.read(10)
        await peer.write(reply)
      }
      await peer.clientClosed()
    })
    const err = await rejectsWith(socksConnect(proxy, { host: '1.2.3.4', port: 80 }), 'ERR_SOCKS_PROXY_FAILED')
    assert.ok(err.cause instanceof SocksError)
    await proxy.served
  })
}

test('TCP errors to the proxy pass through unchanged', async () => {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  await assert.rejects(socksConnect({ host: '127.0.0.1', port }, { host: '1.2.3.4', port: 80 }), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'ECONNREFUSED')
    assert.ok(!(err instanceof SocksError))
    return true
  })
})

test('a silent proxy fails with ERR_SOCKS_CONNECT_TIMEOUT after `timeout`', async (t) => {
  const proxy = await scriptedProxy(
    t,
    async (peer) => {
      await peer.expect('05 01 00')
      await peer.clientClosed()
    },
    { timeout: 50 },
  )
  await rejectsWith(socksConnect(proxy, { host: '1.2.3.4', port: 80 }), 'ERR_SOCKS_CONNECT_TIMEOUT')
  await proxy.served
})

test('aborting the signal fails the handshake with its reason and closes the connection', async (t) => {
  const controller = new AbortController()
  const reason = new Error('changed my mind')
  const proxy = await scriptedProxy(t, async (peer) => {
    await peer.expect('05 01 00')
    controller.abort(reason)
    await peer.clientClosed()
  })
  await assert.rejects(socksConnect(proxy, { host: '1.2.3.4', port: 80 }, { signal: controller.signal }), (err) => err === reason)
  await proxy.served
  await assert.rejects(socksConnect(proxy, { host: '1.2.3.4', port: 80 }, { signal: controller.signal }), (err) => err === reason)
})

test('bad arguments reject before any connection is made', async () => {
  const proxy = { host: '127.0.0.1', port: 1 }
  await rejectsWith(socksConnect(proxy, { host: '1.2.3.4', port: 70000 }), 'ERR_SOCKS_INVALID_ARGUMENT')
  await rejectsWith(socksConnect({ ...proxy, username: 'u', password: '' }, { host: '1.2.3.4', port: 80 }), 'ERR_SOCKS_INVALID_ARGUMENT')
  await rejectsWith(socksConnect({ ...proxy, timeout: 0 }, { host: '1.2.3.4', port: 80 }), 'ERR_SOCKS_INVALID_ARGUMENT')
})

test('bytes sent in the same chunk as the reply reach the caller, in order, then end', async (t) => {
  const proxy = await scriptedProxy(t, async (peer) => {
    await peer.expect('05 01 00')
    await peer.write('05 00')
    await peer.read(10)
    await peer.write(Buffer.concat([h(REPLY_OK_LOCAL), Buffer.from('hello ')]))
    peer.socket.end('world')
  })
  const { socket } = await socksConnect(proxy, { host: '1.2.3.4', port: 80 })
  cleanup(t, socket)
  assert.equal(await readAll(socket), 'hello world')
  await proxy.served
})

test('reply, payload and FIN in one write: nothing is lost and "end" is still seen', async (t) => {
  const proxy = await scriptedProxy(t, async (peer) => {
    await peer.expect('05 01 00')
    await peer.write('05 00')
    await peer.read(10)
    peer.socket.end(Buffer.concat([h(REPLY_OK_LOCAL), Buffer.from('bye')]))
  })
  const { socket } = await socksConnect(proxy, { host: '1.2.3.4', port: 80 })
  cleanup(t, socket)
  assert.equal(await readAll(socket), 'bye')
  await proxy.served
})

test('reply then FIN with no payload: the caller still sees "end"', async (t) => {
  const proxy = await scriptedProxy(t, async (peer) => {
    await peer.expect('05 01 00')
    await peer.write('05 00')
    await peer.read(10)
    peer.socket.end(h(REPLY_OK_LOCAL))
  })
  const { socket } = await socksConnect(proxy, { host: '1.2.3.4', port: 80 })
  cleanup(t, socket)
  assert.equal(await readAll(socket), '')
  await proxy.served
})

test('answers written one byte at a time', async (t) => {
  const proxy = await scriptedProxy(
    t,
    async (peer) => {
      const dribble = async (hex: string): Promise<void> => {
        for (const byte of h(hex)) await peer.write(Buffer.from([byte]))
      }
      await peer.expect('05 02 00 02')
      await dribble('05 02')
      await peer.read(14)
      await dribble('01 00')
      await peer.read(10)
      await dribble('05 00 00 03 0a 70726f78792e74657374 0001 6869')
      peer.socket.end()
    },
    { username: 'alice', password: 'secret' },
  )
  const { socket, bound } = await socksConnect(proxy, { host: '1.2.3.4', port: 80 })
  cleanup(t, socket)
  assert.deepEqual(bound, { type: 'domain', host: 'proxy.test', port: 1 })
  assert.equal(await readAll(socket), 'hi')
  await proxy.served
})

test('chaining: a second handshake runs over the socket of the first, pipelined answers included', async (t) => {
  const proxy = await scriptedProxy(t, async (peer) => {
    await peer.expect('05 01 00')
    await peer.write('05 00')
    await peer.expect('05 01 00 03 0c 7365636f6e642e70726f7879 0438')
    // The first hop's reply and the second hop's method selection arrive together.
    await peer.write(REPLY_OK_LOCAL + '05 00')
    await peer.expect('05 01 00')
    await peer.expect('05 01 00 01 01020304 0050')
    await peer.write('05 00 00 01 01020304 0050')
    peer.socket.end('through two proxies')
  })
  const hop = await socksConnect(proxy, { host: 'second.proxy', port: 1080 })
  cleanup(t, hop.socket)
  const { socket, bound } = await socksConnect({ host: 'second.proxy', port: 1080 }, { host: '1.2.3.4', port: 80 }, { socket: hop.socket })
  assert.equal(socket, hop.socket)
  assert.deepEqual(bound, toAddress('1.2.3.4', 80))
  assert.equal(await readAll(socket), 'through two proxies')
  await proxy.served
})

test('BIND: first reply resolves with BND, `accepted` with the peer, then the relayed stream', async (t) => {
  const proxy = await scriptedProxy(t, async (peer) => {
    await peer.expect('05 01 00')
    await peer.write('05 00')
    await peer.expect('05 02 00 01 c0000209 0000')
    // Both replies and the peer's first bytes in one write: the wait for the peer must not eat them.
    await peer.write('05 00 00 01 7f000001 15b3' + '05 00 00 01 c0000209 0fa0' + Buffer.from('from peer').toString('hex'))
    peer.socket.end()
  })
  const { socket, bound, accepted } = await socksBind(proxy, { host: '192.0.2.9', port: 0 })
  cleanup(t, socket)
  assert.deepEqual(bound, { type: 'ipv4', host: '127.0.0.1', port: 5555 })
  assert.deepEqual(await accepted, { peer: { type: 'ipv4', host: '192.0.2.9', port: 4000 } })
  assert.equal(await readAll(socket), 'from peer')
  await proxy.served
})

test('BIND: a failure second reply rejects `accepted` with ERR_SOCKS_REPLY', async (t) => {
  const proxy = await scriptedProxy(t, async (peer) => {
    await peer.expect('05 01 00')
    await peer.write('05 00')
    await peer.read(10)
    await peer.write('05 00 00 01 7f000001 15b3')
    await peer.write('05 06 00 01 00000000 0000')
    await peer.clientClosed()
  })
  const { socket, accepted } = await socksBind(proxy, { host: '192.0.2.9', port: 0 })
  cleanup(t, socket)
  await rejectsWith(accepted, 'ERR_SOCKS_REPLY', { reply: 6 })
  await proxy.served
  assert.ok(socket.destroyed)
})

/** A scripted UDP ASSOCIATE proxy whose relay echoes every datagram back with the same header. */
async function udpProxy(t: TestContext, replyHost: string, host = '127.0.0.1') {
  const ipv6 = isIP(host) === 6
  const relay = createSocket(ipv6 ? 'udp6' : 'udp4')
  relay.bind(0, host)
  await once(relay, 'listening')
  t.after(() => relay.close())
  const relayPort = relay.address().port
  const received: Buffer[] = []
  let announcedPort = -1
  let control: Socket | null = null
  relay.on('message', (packet, rinfo) => {
    // Only the port the client announced may use the relay.
    if (rinfo.port !== announcedPort) return
    received.push(packet)
    relay.send(packet, rinfo.port, rinfo.address)
  })
  const proxy = await scriptedProxy(t, async (peer) => {
    control = peer.socket
    await peer.expect('05 01 00')
    await peer.write('05 00')
    await peer.expect(ipv6 ? '05 03 00 04 00000000000000000000000000000000' : '05 03 00 01 00000000')
    announcedPort = (await peer.read(2)).readUInt16BE(0)
    await peer.write(encodeReply(Reply.SUCCEEDED, toAddress(replyHost, relayPort)))
  }, {}, host)
  return { proxy, relay, relayPort, received, announced: () => announcedPort, control: () => control! }
}

test('UDP ASSOCIATE: announces its bound port, wraps and unwraps datagrams, drops junk', async (t) => {
  const { proxy, relay, relayPort, received, announced } = await udpProxy(t, '127.0.0.1')
  const association = await socksAssociate(proxy)
  t.after(() => association.close())
  await proxy.served
  assert.deepEqual(association.relay, { type: 'ipv4', host: '127.0.0.1', port: relayPort })
  assert.equal(association.address().port, announced())
  assert.equal(association.address().address, '127.0.0.1')

  const send = (packet: Buffer, from = relay): Promise<void> =>
    new Promise((resolve, reject) => from.send(packet, announced(), '127.0.0.1', (err) => (err ? reject(err) : resolve())))
  // A stranger, a fragment and a malformed header must all be ignored.
  const stranger = createSocket('udp4')
  t.after(() => stranger.close())
  await send(Buffer.concat([encodeDatagramHeader(toAddress('6.6.6.6', 6)), Buffer.from('spoofed')]), stranger)
  await send(h('0000 01 01 08080808 0035 66726167'))
  await send(h('0000 00 09 0000'))

  const message = once(association, 'message')
  association.send(Buffer.from('ping'), { host: '198.51.100.1', port: 7 })
  const [data, from] = await message
  assert.equal(data.toString(), 'ping')
  assert.deepEqual(from, { type: 'ipv4', host: '198.51.100.1', port: 7 })
  assert.equal(received[0]?.toString('hex'), h('0000 00 01 c6336401 0007 70696e67').toString('hex'))

  const domainMessage = once(association, 'message')
  association.send(Buffer.from('dns?'), { host: 'dns.test', port: 53 })
  const [domainData, domainFrom] = await domainMessage
  assert.equal(domainData.toString(), 'dns?')
  assert.deepEqual(domainFrom, { type: 'domain', host: 'dns.test', port: 53 })
  assert.deepEqual(parseDatagramHeader(received[1]!)?.address, domainFrom)
})

test('UDP ASSOCIATE: BND 0.0.0.0 means the proxy address; the association closes with its control connection', async (t) => {
  const { proxy, relayPort, control } = await udpProxy(t, '0.0.0.0')
  const association = await socksAssociate(proxy)
  t.after(() => association.close())
  await proxy.served
  assert.deepEqual(association.relay, { type: 'ipv4', host: '127.0.0.1', port: relayPort })

  const message = once(association, 'message')
  association.send(Buffer.from('echo'), { host: '192.0.2.1', port: 9 })
  assert.equal((await message)[0].toString(), 'echo')

  const closed = once(association, 'close')
  control().end()
  await closed
  assert.ok(association.control.destroyed)
  association.send(Buffer.from('too late'), { host: '192.0.2.1', port: 9 }, (err) => assert.ok(err))
})

test('UDP ASSOCIATE over IPv6: binds udp6 on the control address and announces [::]:port', { skip: !(await hasIPv6Loopback()) && 'no ::1' }, async (t) => {
  const { proxy, relayPort, announced } = await udpProxy(t, '::1', '::1')
  const association = await socksAssociate(proxy)
  t.after(() => association.close())
  await proxy.served
  assert.deepEqual(association.relay, { type: 'ipv6', host: '::1', port: relayPort })
  assert.deepEqual(association.address(), { address: '::1', family: 'IPv6', port: announced() })
  const message = once(association, 'message')
  association.send(Buffer.from('six'), { host: '2001:db8::7', port: 7 })
  const [data, from] = await message
  assert.equal(data.toString(), 'six')
  assert.deepEqual(from, { type: 'ipv6', host: '2001:db8::7', port: 7 })
})

test('UDP ASSOCIATE: close() ends the control connection', async (t) => {
  let controlClosed!: Promise<void>
  const proxy = await scriptedProxy(t, async (peer) => {
    await peer.expect('05 01 00')
    await peer.write('05 00')
    await peer.read(10)
    await peer.write('05 00 00 01 7f000001 0001')
    controlClosed = peer.clientClosed()
  })
  const association = await socksAssociate(proxy)
  await proxy.served
  const closed = once(association, 'close')
  association.close()
  await closed
  await controlClosed
})

test('UDP ASSOCIATE: a failure reply rejects like CONNECT does', async (t) => {
  const proxy = await scriptedProxy(t, async (peer) => {
    await peer.expect('05 01 00')
    await peer.write('05 00')
    await peer.read(10)
    await peer.write('05 07 00 01 00000000 0000')
    await peer.clientClosed()
  })
  await rejectsWith(socksAssociate(proxy), 'ERR_SOCKS_REPLY', { reply: 7 })
  await proxy.served
})

/** A second hop reached straight (standing in for a tunnel through the first): its UDP ASSOCIATE must announce no sender. */
async function secondHop(t: TestContext, bound: string) {
  let control: Socket | null = null
  const proxy = await scriptedProxy(t, async (peer) => {
    control = peer.socket
    await peer.expect('05 01 00')
    await peer.write('05 00')
    await peer.expect('05 03 00 01 00000000 0000')
    await peer.write(`05 00 00 01 ${bound} 1234`)
  })
  const socket = cleanup(t, connect({ host: proxy.host, port: proxy.port }))
  const hop = await socksAssociateHop(proxy, { socket })
  await proxy.served
  return { proxy, hop, control: () => control! }
}

test('UDP ASSOCIATE through two hops: the second announces no sender, every datagram gets one header per hop, and answers are unwrapped only when they name the next relay', async (t) => {
  const second = await secondHop(t, '00000000')
  // BND 0.0.0.0: the address the previous hop reached the second one at (here proxy.host).
  assert.deepEqual(second.hop.relay, { type: 'ipv4', host: '127.0.0.1', port: 0x1234 })
  const { proxy, relay, received } = await udpProxy(t, '127.0.0.1')
  const association = await socksAssociate(proxy, { chain: [second.hop] })
  t.after(() => association.close())
  await proxy.served
  const messages: string[] = []
  association.on('message', (data, from) => messages.push(`${data.toString()} from ${from.host}:${from.port}`))

  // The first hop's relay echoes it back: the outer header then names the second relay, as it must.
  association.send(Buffer.from('ping'), { host: '198.51.100.1', port: 7 })
  await waitFor(() => messages.length === 1)
  assert.equal(received[0]?.toString('hex'), h('0000 00 01 7f000001 1234  0000 00 01 c6336401 0007  70696e67').toString('hex'))
  const send = (hex: string, payload: string): Promise<void> =>
    new Promise((resolve, reject) => relay.send(Buffer.concat([h(hex), Buffer.from(payload)]), association.address().port, '127.0.0.1', (err) => (err ? reject(err) : resolve())))
  await send('0000 00 04 00000000000000000000ffff7f000001 1234  0000 00 01 c0000201 0009', 'mapped')
  await send('0000 00 01 7f000001 1235  0000 00 01 c0000201 0009', 'not from the next relay')
  await send('0000 00 01 7f000001 1234', 'no inner header')
  await send('0000 00 01 7f000001 1234  0000 01 01 c0000201 0009', 'a fragment')
  await send('0000 00 01 7f000001 1234  0000 00 03 08 646e732e74657374 0035', 'last')
  await waitFor(() => messages.length === 3)
  assert.deepEqual(messages, ['ping from 198.51.100.1:7', 'mapped from 192.0.2.1:9', 'last from dns.test:53'])

  // The second hop's control connection ending ends the association and the first one's.
  const closed = once(association, 'close')
  second.control().end()
  await closed
  assert.ok(association.control.destroyed)
  assert.ok(second.hop.control.destroyed)
})

test('UDP ASSOCIATE through two hops: a refusal by the first (or an early failure) destroys the second one\'s control connection too; a refusal by the second rejects with its REP', async (t) => {
  const second = await secondHop(t, '7f000001')
  const proxy = await scriptedProxy(t, async (peer) => {
    await peer.expect('05 01 00')
    await peer.write('05 00')
    await peer.read(10)
    await peer.write('05 02 00 01 00000000 0000')
    await peer.clientClosed()
  })
  await rejectsWith(socksAssociate(proxy, { chain: [second.hop] }), 'ERR_SOCKS_REPLY', { reply: 2 })
  assert.ok(second.hop.control.destroyed)
  await proxy.served
  // Failing before any handshake (an aborted signal) releases them all the same.
  const early = await secondHop(t, '7f000001')
  await assert.rejects(socksAssociate(proxy, { chain: [early.hop], signal: AbortSignal.abort() }))
  assert.ok(early.hop.control.destroyed)

  const refusing = await scriptedProxy(t, async (peer) => {
    await peer.expect('05 01 00')
    await peer.write('05 00')
    await peer.expect('05 03 00 01 00000000 0000')
    await peer.write('05 07 00 01 00000000 0000')
    await peer.clientClosed()
  })
  const socket = cleanup(t, connect({ host: refusing.host, port: refusing.port }))
  await rejectsWith(socksAssociateHop(refusing, { socket }), 'ERR_SOCKS_REPLY', { reply: 7 })
  assert.ok(socket.destroyed)
  await refusing.served
})

