// ctx.throttle(side, bucket): shaping that holds its rate, is shared by the connections of one
// bucket, works with backpressure (a slow reader keeps the proxy's buffer bounded), on the fast path
// and off it; ctx.close(reason) and the lifecycle (disconnect after the relay chain's code).
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import fc from 'fast-check'
import { connectThrough, hex, ipv4Request, startSocks, startTcpServer, trackClient, waitFor } from '../helpers/net.js'
import { createServer, isSocksError, TokenBucket, type ConnectionContext, type RelayContext } from 'socksmith'
import { accessFields, collectMetrics, silentLogger } from 'socksmith/ops'
import type { TestContext } from 'node:test'
import { readBufferStats } from '../../src/commands/read-buffers.js'

const KiB = 1024

describe('TokenBucket arithmetic (injected clock)', () => {
  test('starts full, refills at its rate up to the burst, and a debt says how long to wait', () => {
    let now = 0
    const bucket = new TokenBucket({ rate: 1000, burst: 500, now: () => now })
    assert.equal(bucket.tokens, 500)
    assert.equal(bucket.consume(200), 0)
    assert.equal(bucket.consume(500), 200) // 200 tokens of debt at 1000/s
    now += 100
    assert.equal(bucket.tokens, -100)
    now += 10_000
    assert.equal(bucket.tokens, 500, 'capped at the burst')
    assert.equal(bucket.tryConsume(501), false)
    assert.equal(bucket.tokens, 500, 'a refused tryConsume takes nothing')
    assert.equal(bucket.tryConsume(500), true)
    assert.equal(bucket.tokens, 0)
  })

  test('over any sequence of takes, what passes is at most burst + rate × time (+ the last take), and waiting as told keeps up the rate', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.integer({ min: 1, max: 1_000_000 }), fc.array(fc.integer({ min: 1, max: 100_000 }), { minLength: 1, maxLength: 200 }), (rate, burst, takes) => {
        let now = 0
        const bucket = new TokenBucket({ rate, burst, now: () => now })
        let passed = 0
        for (const n of takes) {
          passed += n
          const wait = bucket.consume(n)
          // Everything taken so far, less the last take, fits in burst + rate × elapsed.
          assert.ok(passed - n <= burst + (rate * now) / 1000 + 1e-6)
          now += wait
        }
        // After the last wait the bucket is out of debt: what passed was all paid for.
        assert.ok(bucket.tokens >= -1e-6)
        assert.ok(passed <= burst + (rate * now) / 1000 + 1e-6)
      }),
    )
  })

  test('setRate keeps a debt and the tokens there (capped): a new limit never hands out a fresh burst', () => {
    let now = 0
    const bucket = new TokenBucket({ rate: 1000, now: () => now })
    assert.equal(bucket.burst, 1000, 'burst defaults to one second of rate')
    bucket.consume(3000)
    bucket.setRate(10_000)
    assert.equal(bucket.tokens, -2000)
    now += 100
    assert.equal(bucket.tokens, -1000)
    bucket.setRate(10, 5)
    now += 1_000_000
    assert.equal(bucket.tokens, 5)
  })

  test('rejects a rate or burst that is not a positive number', () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '5' as unknown as number]) {
      assert.throws(() => new TokenBucket({ rate: bad }), (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_INVALID_ARGUMENT')
      assert.throws(() => new TokenBucket({ rate: 1, burst: bad }), (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_INVALID_ARGUMENT')
    }
  })
})

/** Connects through the proxy to `targetPort` and reads until the end: bytes and milliseconds from the success reply. */
async function download(t: TestContext, proxyPort: number, targetPort: number): Promise<{ bytes: number; ms: number }> {
  const client = await connectThrough(t, proxyPort, targetPort)
  const started = performance.now()
  let bytes = 0
  client.socket.on('data', (chunk: Buffer) => {
    bytes += chunk.length
  })
  await once(client.socket, 'end')
  return { bytes, ms: performance.now() - started }
}

/** A target that sends `size` random bytes to every connection, then ends. */
async function sender(t: TestContext, size: number) {
  const payload = randomBytes(size)
  return startTcpServer(t, (socket) => socket.end(payload))
}

for (const fastRelay of [true, false]) {
  describe(`shaping, fast path ${fastRelay ? 'on' : 'off'}`, () => {
    test('a download at 128 KiB/s with a 32 KiB burst takes (size - burst) / rate, ±15%', async (t) => {
      // Off the fast path reads are Node's 64 KiB: a larger download keeps that one read small.
      const size = fastRelay ? 288 * KiB : 416 * KiB
      const target = await sender(t, size)
      const { port } = await startSocks(t, { fastRelay }, (server) => {
        server.use('relay', async function shape(ctx: RelayContext, next) {
          ctx.throttle('outbound', new TokenBucket({ rate: 128 * KiB, burst: 32 * KiB }))
          await next()
        })
      })
      const { bytes, ms } = await download(t, port, target.port)
      assert.equal(bytes, size)
      const expected = ((size - 32 * KiB) / (128 * KiB)) * 1000
      assert.ok(Math.abs(ms - expected) <= expected * 0.15, `took ${ms.toFixed(0)} ms, expected ${expected.toFixed(0)} ms ±15%`)
    })

    test('two connections through one bucket share its rate', async (t) => {
      // Each connection's last read goes out unpaid for: reads are 16 KiB (64 KiB off the fast
      // path), so the downloads are large next to them.
      const size = 512 * KiB
      const rate = 512 * KiB
      const target = await sender(t, size)
      const shared = new TokenBucket({ rate, burst: 16 * KiB })
      const { port } = await startSocks(t, { fastRelay }, (server) => {
        server.use('relay', async function shape(ctx: RelayContext, next) {
          ctx.throttle('outbound', shared)
          await next()
        })
      })
      const started = performance.now()
      const results = await Promise.all([download(t, port, target.port), download(t, port, target.port)])
      const ms = performance.now() - started
      assert.deepEqual(
        results.map((r) => r.bytes),
        [size, size],
      )
      const expected = ((2 * size - 16 * KiB) / rate) * 1000
      assert.ok(Math.abs(ms - expected) <= expected * 0.2, `both took ${ms.toFixed(0)} ms together, expected ${expected.toFixed(0)} ms ±20% (alone each would take half)`)
      // They took turns: neither finished long before the other.
      const [a, b] = results.map((r) => r.ms) as [number, number]
      assert.ok(Math.min(a, b) > expected * 0.6, `the faster one took ${Math.min(a, b).toFixed(0)} ms of ${expected.toFixed(0)}`)
    })

    test('an upload is shaped too (the client side), and the bytes arrive intact', async (t) => {
      const size = 160 * KiB
      const payload = randomBytes(size)
      const received: Buffer[] = []
      const target = await startTcpServer(t, (socket) => {
        socket.on('data', (chunk: Buffer) => received.push(chunk))
        socket.on('end', () => socket.end())
      })
      const { port } = await startSocks(t, { fastRelay }, (server) => {
        server.use('relay', async function shape(ctx: RelayContext, next) {
          ctx.throttle('client', new TokenBucket({ rate: 256 * KiB, burst: 32 * KiB }))
          await next()
        })
      })
      const client = await connectThrough(t, port, target.port)
      const started = performance.now()
      client.socket.end(payload)
      await once(client.socket, 'end')
      const ms = performance.now() - started
      assert.ok(Buffer.concat(received).equals(payload))
      // The last read goes out unpaid for: 16 KiB on the fast path, Node's 64 KiB off it.
      const least = ((size - 32 * KiB - (fastRelay ? 16 : 64) * KiB) / (256 * KiB)) * 1000 * 0.9
      assert.ok(ms >= least, `took ${ms.toFixed(0)} ms, at least ${least.toFixed(0)} expected`)
    })

    test('a client that does not read keeps the proxy buffer bounded while a fast bucket keeps firing', async (t) => {
      // The target sends as fast as it can; the client reads nothing. The shaper's timers fire
      // often (a high rate, a small burst), and must not resume a side that waits for its peer.
      const chunk = randomBytes(64 * KiB)
      const target = await startTcpServer(t, (socket) => {
        const pump = (): void => {
          while (socket.write(chunk));
        }
        socket.on('drain', pump)
        pump()
      })
      let toClient: Socket | null = null
      const { port } = await startSocks(t, { fastRelay }, (server) => {
        server.use('relay', async function shape(ctx: RelayContext, next) {
          toClient = ctx.socket
          ctx.throttle('outbound', new TokenBucket({ rate: 64 * 1024 * KiB, burst: 16 * KiB }))
          await next()
        })
      })
      const client = await connectThrough(t, port, target.port)
      client.socket.pause()
      await waitFor(() => toClient !== null)
      const samples: number[] = []
      for (let i = 0; i < 6; i++) {
        await new Promise((resolve) => setTimeout(resolve, 150))
        samples.push(toClient!.writableLength)
      }
      const bound = 1024 * KiB
      assert.ok(
        samples.every((n) => n <= bound),
        `what the proxy buffers toward the client stays under ${bound} bytes: ${samples.join(', ')}`,
      )
      assert.ok(samples[samples.length - 1]! <= samples[1]! + 64 * KiB, `and does not grow: ${samples.join(', ')}`)
      client.socket.destroy()
    })
  })
}

test('a bucket at 16 MiB/s or more keeps the large, uncopied reads of the fast path, and still holds its rate', async (t) => {
  const size = 24 * 1024 * KiB
  const rate = 32 * 1024 * KiB
  const target = await sender(t, size)
  const { port } = await startSocks(t, {}, (server) => {
    server.use('relay', async function shape(ctx: RelayContext, next) {
      ctx.throttle('outbound', new TokenBucket({ rate, burst: 1024 * KiB }))
      await next()
    })
  })
  const lentBefore = readBufferStats.lent
  const { bytes, ms } = await download(t, port, target.port)
  assert.equal(bytes, size)
  assert.ok(readBufferStats.lent > lentBefore, 'reads were lent, not copied')
  const expected = ((size - 1024 * KiB) / rate) * 1000
  assert.ok(ms >= expected * 0.85, `took ${ms.toFixed(0)} ms, at least ${(expected * 0.85).toFixed(0)} expected (it is shaped)`)
})

test('taking the bucket off resumes a side that waits for it; misuse throws at once', async (t) => {
  const size = 256 * KiB
  const target = await sender(t, size)
  let remove: (() => void) | null = null
  const errors: string[] = []
  const { port } = await startSocks(t, {}, (server) => {
    server.use('relay', async function shape(ctx: RelayContext, next) {
      for (const bad of [() => ctx.throttle('sideways' as 'client', new TokenBucket({ rate: 1 })), () => ctx.throttle('client', {} as TokenBucket)]) {
        try {
          bad()
        } catch (err) {
          if (isSocksError(err)) errors.push(err.code)
        }
      }
      // 1 KiB/s: the download would take minutes.
      remove = ctx.throttle('outbound', new TokenBucket({ rate: 1 * KiB, burst: 1 * KiB }))
      await next()
    })
  })
  const done = download(t, port, target.port)
  await new Promise((resolve) => setTimeout(resolve, 200))
  remove!()
  const { bytes, ms } = await done
  assert.equal(bytes, size)
  assert.ok(ms < 2000, `finished ${ms.toFixed(0)} ms after the start, once unthrottled`)
  assert.deepEqual(errors, ['ERR_SOCKS_INVALID_ARGUMENT', 'ERR_SOCKS_INVALID_ARGUMENT'])
})

test('ctx.close(reason): both sockets end, and the access fields, the metric and disconnect report the reason', async (t) => {
  const target = await startTcpServer(t, (socket) => socket.on('data', () => {}))
  let order: string[] = []
  let ended: ConnectionContext | null = null
  const { server, port } = await startSocks(t, {}, (s) => {
    s.use('relay', async function cutAfter1000(ctx: RelayContext, next) {
      let seen = 0
      ctx.tap('client', (chunk) => {
        seen += chunk.length
        if (seen >= 1000) ctx.close('test:cut')
      })
      await next()
      order.push('after next')
    })
    s.on('disconnect', (ctx) => {
      order.push('disconnect')
      ended = ctx
    })
  })
  const metrics = await collectMetrics(server)
  t.after(() => metrics.detach())
  order = []
  const client = await connectThrough(t, port, target.port)
  client.socket.write(Buffer.alloc(1500))
  await once(client.socket, 'end')
  await waitFor(() => ended !== null)
  assert.deepEqual(order, ['after next', 'disconnect'], "disconnect comes after the relay chain's code after next()")
  const ctx = ended as unknown as ConnectionContext
  assert.ok(isSocksError(ctx.error) && ctx.error.code === 'ERR_SOCKS_CLOSED')
  assert.equal(ctx.closeReason, 'test:cut')
  const fields = accessFields(ctx)
  assert.equal(fields['error'], 'ERR_SOCKS_CLOSED')
  assert.equal(fields['reason'], 'test:cut')
  // The outbound side was ended too.
  if (!target.sockets[0]!.readableEnded) await once(target.sockets[0]!, 'end')
  const text = await metrics.registry.metrics()
  assert.match(text, /socksmith_connection_reasons_total\{reason="test:cut"\} 1/)
})

test('ctx.close() refuses a reason that is not a short label', async (t) => {
  const target = await startTcpServer(t, (socket) => socket.end())
  const thrown: unknown[] = []
  const { port } = await startSocks(t, {}, (server) => {
    server.use('relay', async function badClose(ctx: RelayContext, next) {
      for (const reason of ['', 'has space', 'x'.repeat(65), 'new\nline', 5 as unknown as string]) {
        try {
          ctx.close(reason)
        } catch (err) {
          thrown.push(isSocksError(err) ? err.code : err)
        }
      }
      await next()
    })
  })
  await download(t, port, target.port)
  assert.deepEqual(thrown, Array(5).fill('ERR_SOCKS_INVALID_ARGUMENT'))
})

test('byte counters are payload only: 0 on a connection refused before the reply', async (t) => {
  const ended: ConnectionContext[] = []
  const { port } = await startSocks(t, {}, (server) => {
    server.use('request', async function refuse() {
      throw new Error('refused by test')
    })
    server.on('error', () => {})
    server.on('disconnect', (ctx) => ended.push(ctx))
  })
  const socket = trackClient(t, connect({ host: '127.0.0.1', port }))
  await once(socket, 'connect')
  socket.write(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', 9)]))
  socket.resume()
  await once(socket, 'close')
  await waitFor(() => ended.length === 1)
  assert.equal(ended[0]!.replied, false)
  assert.equal(ended[0]!.bytesFromClient, 0)
  assert.equal(ended[0]!.bytesToClient, 0)
})

test("close() waits for a relay middleware still at work after next(), and does not hang on it", async (t) => {
  const target = await startTcpServer(t, (socket) => socket.end('bye'))
  let finished = false
  const server = createServer({ logger: silentLogger })
  server.use('relay', async function accountSlowly(_ctx: RelayContext, next) {
    await next()
    await new Promise((resolve) => setTimeout(resolve, 300))
    finished = true
  })
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 })
  const { bytes } = await download(t, port, target.port)
  assert.equal(bytes, 3)
  const started = performance.now()
  await server.close({ drainTimeout: 0 })
  assert.equal(finished, true, "the middleware's code after next() ran before close() resolved")
  assert.ok(performance.now() - started < 2000)
})
