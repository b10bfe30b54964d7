// BIND (RFC 1928 §4): two replies, peer check, accept timeout, relay.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { once } from 'node:events'
import type { Binder } from 'socksmith'
import { RawClient, startEcho, startSocks, ipv4Request, hex, trackClient } from '../helpers/net.js'

test('BIND: first reply names the listening address, second names the peer, then data flows both ways', async (t) => {
  const { port } = await startSocks(t)
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(2, '127.0.0.1', 0)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  const first = await c.read(10)
  assert.deepEqual(first.subarray(0, 8), hex('05000001 7f000001'))
  const bindPort = first.readUInt16BE(8)
  assert.ok(bindPort > 0)
  const peer = trackClient(t, connect({ host: '127.0.0.1', port: bindPort, allowHalfOpen: true }))
  await once(peer, 'connect')
  const second = await c.read(10)
  assert.deepEqual(second.subarray(0, 8), hex('05000001 7f000001'))
  assert.equal(second.readUInt16BE(8), peer.localPort)
  peer.write('from peer')
  assert.equal((await c.read(9)).toString(), 'from peer')
  c.send(Buffer.from('from client'))
  const [chunk] = (await once(peer, 'data')) as [Buffer]
  assert.equal(chunk.toString(), 'from client')
  peer.end()
  await c.readToEnd()
})

test('BIND: a peer from another address is turned away; the accept timeout then replies 06', async (t) => {
  const { port } = await startSocks(t, { timeouts: { bindAccept: 300 } })
  const c = await RawClient.connect(t, port)
  // Only 127.0.0.2 may connect; our peer comes from 127.0.0.1.
  c.send(Buffer.concat([hex('050100'), ipv4Request(2, '127.0.0.2', 0)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  const first = await c.read(10)
  const intruder = trackClient(t, connect({ host: '127.0.0.1', port: first.readUInt16BE(8) }))
  intruder.on('error', () => {})
  await once(intruder, 'close')
  assert.deepEqual(await c.expectClose(), hex('05060001000000000000'))
})

test('BIND: a ctx.binder set by a middleware runs instead of the server\'s listener, after every later middleware', async (t) => {
  const order: string[] = []
  const echo = await startEcho(t)
  const { port } = await startSocks(t, {}, (server) => {
    server.use('connect', async function chooseBinder(ctx, next) {
      const binder: Binder = {
        async bind(bctx) {
          order.push('binder')
          bctx.sendFirstBindReply({ type: 'ipv4', host: '192.0.2.1', port: 4321 })
          // The "peer" is an echo server the binder connects to itself.
          const socket = connect({ host: '127.0.0.1', port: echo.port, allowHalfOpen: true })
          await once(socket, 'connect')
          bctx.outbound = socket
          bctx.bound = { type: 'ipv4', host: '198.51.100.7', port: 7 }
        },
      }
      ctx.binder = binder
      await next()
    })
    server.use('connect', async function later(_ctx, next) {
      order.push('later')
      await next()
    })
  })
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(2, '0.0.0.0', 0)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.deepEqual(await c.read(10), hex('05000001 c0000201 10e1'), 'first reply from the binder')
  assert.deepEqual(await c.read(10), hex('05000001 c6336407 0007'), 'second reply names the binder\'s peer')
  c.send(Buffer.from('ping'))
  assert.equal((await c.read(4)).toString(), 'ping')
  assert.deepEqual(order, ['later', 'binder'])
  c.socket.end()
  await c.readToEnd()
})
