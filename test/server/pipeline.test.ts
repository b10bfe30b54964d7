// A reload swaps the pipeline: connections keep the one they were accepted with.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { createServer, type Dialer } from 'socksmith'
import { directDialer } from 'socksmith/net'
import { silentLogger } from 'socksmith/ops'
import { RawClient, startEcho, startSocks, domainRequest, mapResolver, hex } from '../helpers/net.js'

function recordingDialer(name: string, log: string[]): Dialer {
  return {
    dial(ctx, options): Promise<Socket> {
      log.push(`${name} ${ctx.destination.host}`)
      return directDialer.dial(ctx, options)
    },
  }
}

test('a connection accepted before a reload keeps its resolver, dialer and timeouts; one accepted after gets the new ones', async (t) => {
  const echo = await startEcho(t)
  const dials: string[] = []
  const oldResolver = mapResolver({ 'svc.test': ['127.0.0.1'] })
  const newResolver = mapResolver({ 'svc.test': ['127.0.0.1'] })
  const { port, server } = await startSocks(t, { resolver: oldResolver, dialer: recordingDialer('old', dials), timeouts: { handshake: 5000 } })
  // Accepted before the reload, still in its handshake.
  const before = await RawClient.connect(t, port)
  before.send('050100')
  assert.deepEqual(await before.read(2), hex('0500'))
  const next = createServer({ logger: silentLogger, resolver: newResolver, dialer: recordingDialer('new', dials), timeouts: { handshake: 300 } })
  await server.reload(next)
  const after = await RawClient.connect(t, port)
  after.send('050100')
  assert.deepEqual(await after.read(2), hex('0500'))
  // The new pipeline's 300 ms handshake deadline ends the new connection; the old one has 5 s.
  await after.expectClose(2000)
  assert.equal(before.ended, false, 'the connection accepted before the reload keeps its handshake timeout')
  before.send(domainRequest(1, 'svc.test', echo.port))
  assert.equal((await before.read(10))[1], 0)
  const late = await RawClient.connect(t, port)
  late.send(Buffer.concat([hex('050100'), domainRequest(1, 'svc.test', echo.port)]))
  assert.deepEqual(await late.read(2), hex('0500'))
  assert.equal((await late.read(10))[1], 0)
  assert.deepEqual(oldResolver.calls, ['svc.test'])
  assert.deepEqual(newResolver.calls, ['svc.test'])
  assert.deepEqual(dials, ['old svc.test', 'new svc.test'])
  assert.equal(server.timeouts.handshake, 300, 'the server reports the live pipeline')
})

test('the server\'s settings before listen are those of its options; a plugin\'s resolver becomes the pipeline\'s', async (t) => {
  const resolver = mapResolver({})
  const replaced = mapResolver({})
  const { server } = await startSocks(t, { resolver }, (s) =>
    s.register({ name: 'swap-resolver', setup: (host) => host.setResolver(replaced) }),
  )
  assert.equal(server.resolver, replaced)
  assert.ok(Object.isFrozen(server.settings))
  const fresh = createServer({ logger: silentLogger, resolver })
  assert.equal(fresh.resolver, resolver)
  await fresh.close()
})
