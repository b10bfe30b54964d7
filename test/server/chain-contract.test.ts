// A middleware that forgets `await next()` must not produce a fake success or end the process.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { RawClient, startEcho, startSocks, startTcpServer, ipv4Request, hex, waitFor } from '../helpers/net.js'

function watchUnhandled(t: Parameters<typeof startSocks>[0]): unknown[] {
  const seen: unknown[] = []
  const record = (err: unknown): void => {
    seen.push(err)
  }
  process.on('unhandledRejection', record)
  t.after(() => process.removeListener('unhandledRejection', record))
  return seen
}

test('connect: a middleware calling next() without awaiting it gets REP 01 naming it, never REP 00; the late upstream is closed', async (t) => {
  const unhandled = watchUnhandled(t)
  const echo = await startEcho(t)
  const errors: unknown[] = []
  const { port, server } = await startSocks(t, {}, (s) =>
    s.use('connect', async function forgetful(_ctx, next) {
      void next()
    }),
  )
  server.on('error', (err) => errors.push(err))
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', echo.port)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.deepEqual(await c.expectClose(), hex('05010001000000000000'))
  assert.equal(errors.length, 1)
  assert.match(String(errors[0]), /middleware "forgetful" returned before the next\(\) it called settled/)
  // The dial the forgotten next() started is stopped when the connection fails (or, if the target
  // accepted it already, closed): nothing is left open at the target, also once a late accept lands.
  await new Promise((resolve) => setTimeout(resolve, 300))
  await waitFor(() => echo.sockets.every((socket) => socket.destroyed), 3000)
  assert.deepEqual(unhandled, [])
})

test('connect: the forgotten next() rejecting later (target refuses) is not an unhandled rejection', async (t) => {
  const unhandled = watchUnhandled(t)
  const closed = await startTcpServer(t, () => {})
  closed.server.close()
  await once(closed.server, 'close')
  const { port } = await startSocks(t, {}, (s) => {
    s.use('connect', async function first(_ctx, next) {
      await next()
    })
    s.use('connect', async function forgetful(_ctx, next) {
      next()
    })
    s.use('connect', async function inner(_ctx, next) {
      await next()
    })
  })
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', closed.port)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  const reply = await c.expectClose()
  assert.notEqual(reply[1], 0, 'no success reply')
  await new Promise((resolve) => setTimeout(resolve, 100))
  assert.deepEqual(unhandled, [])
})

test('returning next() without awaiting it is fine', async (t) => {
  const echo = await startEcho(t)
  const { port } = await startSocks(t, {}, (s) =>
    s.use('connect', function passThrough(_ctx, next) {
      return next()
    }),
  )
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', echo.port)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.equal((await c.read(10))[1], 0)
  c.send(Buffer.from('ok'))
  assert.equal((await c.read(2)).toString(), 'ok')
})

test('a connect middleware that ends the chain without connecting anything gets REP 01, not a success with BND 0.0.0.0:0', async (t) => {
  const { port } = await startSocks(t, {}, (s) =>
    s.use('connect', async function skipsTheDial() {
      // neither next() nor ctx.outbound
    }),
  )
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', 9)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.deepEqual(await c.expectClose(), hex('05010001000000000000'))
})

test('sendFirstBindReply refuses outside a BIND', async (t) => {
  const echo = await startEcho(t)
  const thrown: unknown[] = []
  const { port } = await startSocks(t, {}, (s) =>
    s.use('connect', async function misuses(ctx, next) {
      try {
        ctx.sendFirstBindReply({ type: 'ipv4', host: '127.0.0.1', port: 1 })
      } catch (err) {
        thrown.push(err)
      }
      await next()
    }),
  )
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', echo.port)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  const reply = await c.read(10)
  assert.equal(reply[1], 0, 'the only reply is the CONNECT success')
  assert.equal(thrown.length, 1)
})
