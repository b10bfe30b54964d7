// ctx.tap(side, fn): a relay middleware sees every relayed byte of a side, in order, on the fast
// path and off it; a tap added late sees what comes after; misuse throws; a throwing tap is a bug.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import { once } from 'node:events'
import { connectThrough, RawClient, startEcho, startSocks, startTcpServer, ipv4Request, hex, waitFor } from '../helpers/net.js'
import { isSocksError, type RelayContext, type RequestContext } from 'socksmith'

/** Collects what a tap sees (copies: a chunk is valid only during the call). */
function collector(): { fn: (chunk: Buffer) => void; bytes: () => Buffer } {
  const chunks: Buffer[] = []
  return { fn: (chunk) => chunks.push(Buffer.from(chunk)), bytes: () => Buffer.concat(chunks) }
}

/** Hashes a stream of bytes as a tap or a socket sees it. */
function hasher(): { update: (chunk: Buffer) => void; bytes: () => number; digest: () => string } {
  const hash = createHash('sha256')
  let bytes = 0
  return {
    update: (chunk) => {
      hash.update(chunk)
      bytes += chunk.length
    },
    bytes: () => bytes,
    digest: () => hash.digest('hex'),
  }
}

for (const fastRelay of [true, false]) {
  describe(fastRelay ? 'fast path on' : 'fast path off', () => {
    test('taps see every byte both ways, in order, early data included, and the bytes arrive intact', async (t) => {
      const size = 6 * 1024 * 1024
      const down = randomBytes(size)
      const upAtTarget = hasher()
      const target = await startTcpServer(t, (s) => {
        // Speaks first: its bytes wait in the proxy until the relay starts, and must be tapped too.
        s.end(down)
        s.on('data', upAtTarget.update)
      })
      const upTapped = hasher()
      const downTapped = hasher()
      const { port } = await startSocks(t, { fastRelay }, (server) => {
        server.use('relay', async function tapBoth(ctx: RelayContext, next) {
          ctx.tap('client', upTapped.update)
          ctx.tap('outbound', downTapped.update)
          await next()
        })
      })
      const early = randomBytes(50_000)
      const rest = randomBytes(size)
      const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true })
      t.after(() => socket.destroy())
      await once(socket, 'connect')
      // Greeting, request and the first payload in one write: that payload is the early data.
      socket.write(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', target.port), early]))
      const downAtClient = hasher()
      let head = Buffer.alloc(0)
      socket.on('data', (chunk: Buffer) => {
        if (head.length >= 12) return downAtClient.update(chunk)
        head = Buffer.concat([head, chunk])
        if (head.length >= 12) downAtClient.update(head.subarray(12))
      })
      const ended = once(socket, 'end')
      socket.end(rest)
      await ended
      await waitFor(() => upAtTarget.bytes() === early.length + rest.length, 5000)
      const upSent = createHash('sha256').update(early).update(rest).digest('hex')
      const downSent = createHash('sha256').update(down).digest('hex')
      assert.deepEqual(head.subarray(0, 4), hex('05000500'))
      assert.equal(upTapped.bytes(), early.length + rest.length, 'bytes the client tap saw')
      assert.equal(upTapped.digest(), upSent, 'the client tap saw what the client sent, in order')
      assert.equal(upAtTarget.digest(), upSent, 'the target got what the client sent')
      assert.equal(downTapped.bytes(), size, 'bytes the upstream tap saw')
      assert.equal(downTapped.digest(), downSent, 'the upstream tap saw what the target sent, in order')
      assert.equal(downAtClient.digest(), downSent, 'the client got what the target sent')
    })

    test('a tap added while the relay runs sees the bytes from then on; so does a late data listener', async (t) => {
      const echo = await startEcho(t)
      let relayed: RelayContext | null = null
      const { port } = await startSocks(t, { fastRelay }, (server) => {
        server.use('relay', async function keep(ctx: RelayContext, next) {
          relayed = ctx
          await next()
        })
      })
      const c = await connectThrough(t, port, echo.port)
      c.send(Buffer.from('before'))
      assert.equal((await c.read(6)).toString(), 'before')
      assert.ok(relayed !== null)
      const ctx = relayed as RelayContext
      const up = collector()
      const down = collector()
      const upListened = collector()
      const downListened = collector()
      ctx.tap('client', up.fn)
      ctx.tap('outbound', down.fn)
      ctx.socket.on('data', upListened.fn)
      ctx.outbound!.on('data', downListened.fn)
      const bulk = randomBytes(3 * 1024 * 1024)
      c.send(bulk)
      assert.ok((await c.read(bulk.length, 10_000)).equals(bulk))
      c.send(Buffer.from('after'))
      assert.equal((await c.read(5)).toString(), 'after')
      const expected = Buffer.concat([bulk, Buffer.from('after')])
      assert.ok(up.bytes().equals(expected), `client tap: ${up.bytes().length} bytes, expected ${expected.length}`)
      assert.ok(down.bytes().equals(expected), `upstream tap: ${down.bytes().length} bytes, expected ${expected.length}`)
      assert.ok(upListened.bytes().equals(expected), `late 'data' listener on ctx.socket: ${upListened.bytes().length} bytes`)
      assert.ok(downListened.bytes().equals(expected), `late 'data' listener on ctx.outbound: ${downListened.bytes().length} bytes`)
      c.socket.end()
      await c.readToEnd()
    })

    test('a tap that throws ends its connection and is reported as a bug; others go on', async (t) => {
      const echo = await startEcho(t)
      const boom = new Error('tap bug')
      const reported: unknown[] = []
      const { port, server } = await startSocks(t, { fastRelay }, (srv) => {
        srv.use('relay', async function faultyTap(ctx: RelayContext, next) {
          ctx.tap('outbound', (chunk) => {
            if (chunk.includes('boom')) throw boom
          })
          await next()
        })
      })
      server.on('error', (err) => reported.push(err))
      const bystander = await connectThrough(t, port, echo.port)
      const c = await connectThrough(t, port, echo.port)
      c.send(Buffer.from('boom'))
      await c.expectClose()
      await waitFor(() => reported.length === 1)
      assert.equal(reported[0], boom)
      bystander.send(Buffer.from('fine'))
      assert.equal((await bystander.read(4)).toString(), 'fine')
      bystander.socket.end()
      await bystander.readToEnd()
    })
  })
}

test('ctx.tap() misuse throws ERR_SOCKS_INVALID_ARGUMENT at once', async (t) => {
  const echo = await startEcho(t)
  const errors: Record<string, unknown> = {}
  const attempt = (name: string, fn: () => void): void => {
    try {
      fn()
      errors[name] = 'no error'
    } catch (err) {
      errors[name] = isSocksError(err) ? err.code : err
    }
  }
  const { port } = await startSocks(t, {}, (server) => {
    server.use('request', async function tooEarly(view: RequestContext, next) {
      const ctx = view as RelayContext
      attempt('upstream before the connect phase', () => ctx.tap('outbound', () => {}))
      attempt('unknown side', () => ctx.tap('sideways' as 'client', () => {}))
      attempt('not a function', () => ctx.tap('client', 'count' as unknown as () => void))
      await next()
    })
  })
  const c = await connectThrough(t, port, echo.port)
  c.socket.end()
  await c.readToEnd()
  assert.deepEqual(errors, {
    'upstream before the connect phase': 'ERR_SOCKS_INVALID_ARGUMENT',
    'unknown side': 'ERR_SOCKS_INVALID_ARGUMENT',
    'not a function': 'ERR_SOCKS_INVALID_ARGUMENT',
  })
})

test('ctx.tap() on a UDP ASSOCIATE throws: it relays datagrams, not a stream', async (t) => {
  let error: unknown = null
  const { port } = await startSocks(t, {}, (server) => {
    server.use('relay', async function tapUdp(ctx: RelayContext, next) {
      try {
        ctx.tap('client', () => {})
      } catch (err) {
        error = err
      }
      await next()
    })
  })
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(3, '0.0.0.0', 0)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.deepEqual((await c.read(10)).subarray(0, 2), hex('0500'))
  await waitFor(() => error !== null)
  assert.ok(isSocksError(error) && error.code === 'ERR_SOCKS_INVALID_ARGUMENT' && /UDP/.test(error.message), String(error))
  c.socket.end()
  await c.readToEnd()
})
