// Byte-exact checks of the handshake: every malformed case gets the right reply (or a close).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { RawClient, startEcho, startSocks, startTcpServer, ipv4Request, domainRequest, mapResolver, hex } from '../helpers/net.js'

test('a greeting with VER 4 is closed without a reply', async (t) => {
  const { port } = await startSocks(t)
  const c = await RawClient.connect(t, port)
  c.send('040100')
  assert.equal((await c.expectClose()).length, 0)
})

test('NMETHODS 0 is closed without a reply', async (t) => {
  const { port } = await startSocks(t)
  const c = await RawClient.connect(t, port)
  c.send('0500')
  assert.equal((await c.expectClose()).length, 0)
})

test('no acceptable method: 05 FF, then close', async (t) => {
  const { port } = await startSocks(t)
  const c = await RawClient.connect(t, port)
  c.send('05020102')
  assert.deepEqual(await c.expectClose(), hex('05ff'))
})

test('NO AUTH is chosen among unknown methods', async (t) => {
  const { port } = await startSocks(t)
  const c = await RawClient.connect(t, port)
  c.send('0503fe8000')
  assert.deepEqual(await c.read(2), hex('0500'))
})

test('unknown command: REP 07 before the address arrives, then close', async (t) => {
  const { port } = await startSocks(t)
  const c = await RawClient.connect(t, port)
  c.send('050100').send('0509')
  assert.deepEqual(await c.expectClose(), hex('0500 05070001000000000000'))
})

test('unknown address type: REP 08, then close', async (t) => {
  const { port } = await startSocks(t)
  const c = await RawClient.connect(t, port)
  c.send('050100 05010005 7f000001 0050')
  assert.deepEqual(await c.expectClose(), hex('0500 05080001000000000000'))
})

test('request with VER 4: REP 01, then close', async (t) => {
  const { port } = await startSocks(t)
  const c = await RawClient.connect(t, port)
  c.send('050100 04010001 7f000001 0050')
  assert.deepEqual(await c.expectClose(), hex('0500 05010001000000000000'))
})

test('an empty domain name is refused and never resolved or dialled', async (t) => {
  const resolver = mapResolver({ '': ['127.0.0.1'] })
  const { port } = await startSocks(t, { resolver })
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), domainRequest(1, '', 80)]))
  assert.deepEqual(await c.expectClose(), hex('0500 05040001000000000000'))
  assert.equal(resolver.calls.length, 0)
})

test('a handshake written one byte at a time works (fragmentation)', async (t) => {
  const echo = await startEcho(t)
  const resolver = mapResolver({ 'echo.test': ['127.0.0.1'] })
  const { port } = await startSocks(t, { resolver })
  const c = await RawClient.connect(t, port)
  const bytes = Buffer.concat([hex('050100'), domainRequest(1, 'echo.test', echo.port)])
  for (const byte of bytes) {
    c.send([byte])
    await new Promise((resolve) => setImmediate(resolve))
  }
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05000001'))
  c.send('6869')
  assert.equal((await c.read(2)).toString(), 'hi')
})

test('greeting, request and payload in one write: payload reaches the target after the connect', async (t) => {
  const received: Buffer[] = []
  const target = await startTcpServer(t, (s) => s.on('data', (d: Buffer) => received.push(d)))
  const { port } = await startSocks(t)
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', target.port), Buffer.from('GET / HTTP/1.0\r\n\r\n')]))
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.deepEqual((await c.read(10)).subarray(0, 2), hex('0500'))
  const deadline = Date.now() + 2000
  while (Buffer.concat(received).length < 18 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
  assert.equal(Buffer.concat(received).toString(), 'GET / HTTP/1.0\r\n\r\n')
})

test('a silent client is closed at the handshake deadline', async (t) => {
  const { port } = await startSocks(t, { timeouts: { handshake: 150 } })
  const c = await RawClient.connect(t, port)
  const started = Date.now()
  assert.equal((await c.expectClose()).length, 0)
  assert.ok(Date.now() - started >= 100)
})

test('a truncated request is closed at the handshake deadline', async (t) => {
  const { port } = await startSocks(t, { timeouts: { handshake: 150 } })
  const c = await RawClient.connect(t, port)
  c.send('050100 050100037f')
  assert.deepEqual(await c.expectClose(), hex('0500'))
})

test('a client that leaves mid-handshake frees everything', async (t) => {
  const { port, server } = await startSocks(t)
  const c = await RawClient.connect(t, port)
  c.send('0501')
  c.socket.destroy()
  const deadline = Date.now() + 2000
  while (server.connections > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
  assert.equal(server.connections, 0)
})
