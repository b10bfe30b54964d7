// BIND (RFC 1928 §4): two replies, peer check, accept timeout, relay.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { once } from 'node:events'
import { RawClient, startSocks, ipv4Request, hex, trackClient } from '../helpers/net.js'

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
