// Each phase is bounded by its own timeout, and what is logged as sent was sent.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { RawClient, startEcho, startSocks, ipv4Request, domainRequest, hex } from '../helpers/net.js'
import type { BaseContext, Dialer } from 'socksmith'

/** A dialer whose connect never completes, as with a blackholed destination; it ends when aborted. */
function blackholeDialer(): Dialer & { aborted: number } {
  const dialer = {
    aborted: 0,
    dial(_ctx: unknown, options: { signal: AbortSignal }): Promise<Socket> {
      return new Promise((_resolve, reject) => {
        options.signal.addEventListener('abort', () => {
          dialer.aborted++
          reject(options.signal.reason)
        }, { once: true })
      })
    },
  }
  return dialer
}

test('a CONNECT that outlasts the handshake timeout is bounded by the connect timeout and answered REP 06', async (t) => {
  const dialer = blackholeDialer()
  const { port } = await startSocks(t, { dialer, timeouts: { handshake: 200, connect: 700 } })
  const c = await RawClient.connect(t, port)
  const started = Date.now()
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', 9)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.deepEqual(await c.expectClose(3000), hex('05060001000000000000'))
  const took = Date.now() - started
  assert.ok(took >= 650, `not cut at the handshake timeout (${took} ms)`)
  assert.ok(took < 2500, `answered at the connect timeout (${took} ms)`)
  assert.equal(dialer.aborted, 1, 'the dial was told to stop')
})

test('a DNS lookup that outlasts the handshake timeout still gets REP 04 at the connect timeout', async (t) => {
  const resolver = { resolve: () => new Promise<never>(() => {}) }
  const { port } = await startSocks(t, { resolver, timeouts: { handshake: 150, connect: 500 } })
  const c = await RawClient.connect(t, port)
  const started = Date.now()
  c.send(Buffer.concat([hex('050100'), domainRequest(1, 'silent.test', 80)]))
  assert.deepEqual(await c.expectClose(3000), hex('0500 05040001000000000000'))
  assert.ok(Date.now() - started >= 450)
})

test('a BIND peer may arrive after the handshake timeout, within bindAccept', async (t) => {
  const { port } = await startSocks(t, { timeouts: { handshake: 200, bindAccept: 3000 } })
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(2, '127.0.0.1', 0)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  const first = await c.read(10)
  assert.equal(first[1], 0)
  await new Promise((resolve) => setTimeout(resolve, 500)) // well past the handshake timeout
  const peer = connect({ host: '127.0.0.1', port: first.readUInt16BE(8) })
  peer.on('error', () => {})
  t.after(() => peer.destroy())
  await once(peer, 'connect')
  const second = await c.read(10)
  assert.equal(second[1], 0, 'second BIND reply is a success')
  peer.write('from peer')
  assert.equal((await c.read(9)).toString(), 'from peer')
})

test('the handshake deadline is a deadline: a client trickling bytes cannot stretch it', async (t) => {
  const { port } = await startSocks(t, { timeouts: { handshake: 400 } })
  const c = await RawClient.connect(t, port)
  const started = Date.now()
  // A greeting offering 200 methods, one byte every 100 ms: each byte would reset an idle timer.
  const greeting = Buffer.concat([hex('05c8'), Buffer.alloc(200, 0x80)])
  let offset = 0
  const drip = setInterval(() => {
    if (!c.ended && offset < greeting.length) c.socket.write(greeting.subarray(offset, ++offset))
  }, 100)
  t.after(() => clearInterval(drip))
  await c.expectClose(3000)
  const took = Date.now() - started
  assert.ok(took < 1200, `closed at the handshake deadline, not stretched by trickling (${took} ms)`)
})

test('the access log and the reply field report only replies that were written', async (t) => {
  const dialer = blackholeDialer()
  const ended: (BaseContext & { reply: number | null })[] = []
  const { port, server } = await startSocks(t, { dialer, timeouts: { connect: 5000 } })
  server.on('disconnect', (ctx) => ended.push(ctx))
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', 9)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  c.socket.resetAndDestroy() // leaves (RST) while the dial hangs: no reply can be written
  await once(server, 'disconnect')
  assert.equal(ended[0]!.reply, null)
})

test('after a successful CONNECT no phase timer is left: the relay lives past both timeouts', async (t) => {
  const echo = await startEcho(t)
  const { port } = await startSocks(t, { timeouts: { handshake: 150, connect: 300 } })
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', echo.port)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.equal((await c.read(10))[1], 0)
  await new Promise((resolve) => setTimeout(resolve, 600))
  c.send(Buffer.from('still here'))
  assert.equal((await c.read(10)).toString(), 'still here')
})
