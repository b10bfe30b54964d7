import { test } from 'node:test'
import assert from 'node:assert/strict'
import { RawClient, startEcho, startSocks, startTcpServer, ipv4Request, domainRequest, mapResolver, hex } from '../helpers/net.js'

test('CONNECT to an IPv4 echo server relays both ways and replies with the outgoing socket address', async (t) => {
  const echo = await startEcho(t)
  const { port } = await startSocks(t)
  const c = await RawClient.connect(t, port)
  c.send('050100')
  assert.deepEqual(await c.read(2), hex('0500'))
  c.send(ipv4Request(1, '127.0.0.1', echo.port))
  const reply = await c.read(10)
  assert.deepEqual(reply.subarray(0, 4), hex('05000001'))
  assert.deepEqual([...reply.subarray(4, 8)], [127, 0, 0, 1])
  const boundPort = reply.readUInt16BE(8)
  assert.equal(boundPort, echo.sockets[0]!.remotePort, 'BND.PORT is the local port of the outgoing socket')
  c.send(Buffer.from('hello'))
  assert.equal((await c.read(5)).toString(), 'hello')
  c.socket.end()
  assert.equal((await c.readToEnd()).length, 0)
})

test('CONNECT to a domain uses the server resolver', async (t) => {
  const echo = await startEcho(t)
  const resolver = mapResolver({ 'echo.test': ['127.0.0.1'] })
  const { port } = await startSocks(t, { resolver })
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), domainRequest(1, 'echo.test', echo.port), Buffer.from('ping')]))
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05000001'))
  assert.equal((await c.read(4)).toString(), 'ping', 'payload pipelined with the handshake arrives after the connect')
  assert.deepEqual(resolver.calls, ['echo.test'])
})

test('refused connect replies 05 and unknown name replies 04', async (t) => {
  const closed = await startTcpServer(t, () => {})
  closed.server.close()
  const { port } = await startSocks(t, { resolver: mapResolver({}) })
  const a = await RawClient.connect(t, port)
  a.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', closed.port)]))
  assert.deepEqual(await a.read(2), hex('0500'))
  assert.deepEqual(await a.read(10), hex('05050001000000000000'))
  await a.expectClose()
  const b = await RawClient.connect(t, port)
  b.send(Buffer.concat([hex('050100'), domainRequest(1, 'nowhere.test', 80)]))
  assert.deepEqual(await b.read(12), hex('0500 05040001000000000000'))
  await b.expectClose()
})

test('a DNS lookup that never answers gets the connect timeout and REP 04', async (t) => {
  const hanging = { resolve: () => new Promise<never>(() => {}) }
  const { port } = await startSocks(t, { resolver: hanging, timeouts: { connect: 200, handshake: 5000 } })
  const c = await RawClient.connect(t, port)
  const started = Date.now()
  c.send(Buffer.concat([hex('050100'), domainRequest(1, 'slow.test', 80)]))
  assert.deepEqual(await c.expectClose(3000), hex('0500 05040001000000000000'))
  assert.ok(Date.now() - started < 2000)
})
