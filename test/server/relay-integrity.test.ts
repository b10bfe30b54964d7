// Every byte arrives, in order, whichever way the relay reads: the shared read buffer, buffers of
// a connection's own, writes the kernel takes only in part (slow readers), a middleware watching
// the bytes, a target that speaks first.
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { startSocks, startTcpServer, ipv4Request, hex } from '../helpers/net.js'
import type { RelayContext } from 'socksmith'

/** Sends `total` random bytes in chunks of random size, hashing what it sends. */
async function sendRandom(socket: Socket, total: number, random: () => number): Promise<string> {
  const hash = createHash('sha256')
  let left = total
  while (left > 0) {
    const size = Math.min(left, 1 + Math.floor(random() * 300_000))
    const chunk = randomBytes(size)
    hash.update(chunk)
    left -= size
    if (!socket.write(chunk)) await once(socket, 'drain')
  }
  socket.end()
  return hash.digest('hex')
}

/** Reads to the end, hashing (`prefix` first); stops reading now and then when `stalls` (a slow reader). */
function receiveAll(socket: Socket, random: () => number, stalls: boolean, prefix: Buffer = Buffer.alloc(0)): Promise<{ hash: string; bytes: number }> {
  const hash = createHash('sha256').update(prefix)
  let bytes = prefix.length
  socket.on('data', (chunk: Buffer) => {
    hash.update(chunk)
    bytes += chunk.length
    if (stalls && random() < 0.3) {
      socket.pause()
      setTimeout(() => socket.resume(), 1 + Math.floor(random() * 10))
    }
  })
  return new Promise((resolve, reject) => {
    socket.once('end', () => resolve({ hash: hash.digest('hex'), bytes }))
    socket.once('error', reject)
  })
}

function seeded(seed: number): () => number {
  let state = seed >>> 0 || 1
  return () => {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return (state >>> 0) / 2 ** 32
  }
}

interface Transfer {
  /** Hash of what the target sent / received. */
  downSent: Promise<string>
  upReceived: Promise<{ hash: string; bytes: number }>
}

/** A target that sends `down` random bytes and hashes what it receives, per connection. */
async function startTarget(t: TestContext, down: number, banner: Buffer | null = null): Promise<{ port: number; transfers: Transfer[] }> {
  const transfers: Transfer[] = []
  const target = await startTcpServer(t, (socket) => {
    const random = seeded(transfers.length + 1000)
    if (banner !== null) socket.write(banner)
    transfers.push({ downSent: sendRandom(socket, down, random), upReceived: receiveAll(socket, random, true) })
  })
  return { port: target.port, transfers }
}

async function openThrough(socksPort: number, targetPort: number): Promise<{ socket: Socket; early: Buffer }> {
  const socket = connect({ host: '127.0.0.1', port: socksPort, allowHalfOpen: true })
  await once(socket, 'connect')
  socket.write(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', targetPort)]))
  // Greeting answer (2) and reply (10); whatever follows in the same reads is already payload.
  let got = Buffer.alloc(0)
  while (got.length < 12) {
    const [chunk] = (await once(socket, 'data')) as [Buffer]
    got = Buffer.concat([got, chunk])
  }
  socket.pause()
  assert.deepEqual(got.subarray(0, 4), hex('05000500'))
  return { socket, early: got.subarray(12) }
}

// Every test runs twice: on the fast path (reads into the relay's managed buffers, the default)
// and with it off (every byte through the sockets' streams, as with SOCKSMITH_FAST_RELAY=0).
for (const fastRelay of [true, false]) {
  describe(fastRelay ? 'fast path on' : 'fast path off', () => {
    test('8 concurrent transfers of 12 MiB each way arrive intact, with slow readers on both sides', async (t) => {
      const { port } = await startSocks(t, { fastRelay })
      const bytes = 12 * 1024 * 1024
      const target = await startTarget(t, bytes)
      const results = await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          const { socket, early } = await openThrough(port, target.port)
          t.after(() => socket.destroy())
          const random = seeded(i + 1)
          const received = receiveAll(socket, random, i % 2 === 0, early)
          socket.resume()
          const upHash = await sendRandom(socket, bytes, random)
          const { hash: down, bytes: bytesDown } = await received
          return { down, bytesDown, upHash }
        }),
      )
      assert.equal(target.transfers.length, 8)
      // Connections reach the target in an order of their own: match them by hash.
      const sentDown = new Set(await Promise.all(target.transfers.map((x) => x.downSent)))
      const gotUp = new Set((await Promise.all(target.transfers.map((x) => x.upReceived))).map((x) => x.hash))
      for (const [i, r] of results.entries()) {
        assert.equal(r.bytesDown, bytes, `connection ${i}: bytes down`)
        assert.ok(sentDown.has(r.down), `connection ${i}: download arrived intact`)
        assert.ok(gotUp.has(r.upHash), `connection ${i}: upload arrived intact`)
      }
    })

    test('a relay middleware watching both sockets sees every byte, and the bytes still arrive intact', async (t) => {
      let seenUp = 0
      let seenDown = 0
      const { port } = await startSocks(t, { fastRelay }, (server) => {
        server.use('relay', async (ctx: RelayContext, next) => {
          const count = (side: 'up' | 'down') => (chunk: Buffer) => {
            if (side === 'up') seenUp += chunk.length
            else seenDown += chunk.length
          }
          ctx.socket.on('data', count('up'))
          ctx.outbound?.on('data', count('down'))
          await next()
        })
      })
      const bytes = 8 * 1024 * 1024
      const target = await startTarget(t, bytes)
      const { socket, early } = await openThrough(port, target.port)
      t.after(() => socket.destroy())
      const hash = createHash('sha256').update(early)
      let bytesDown = early.length
      socket.on('data', (chunk: Buffer) => {
        hash.update(chunk)
        bytesDown += chunk.length
      })
      const ended = once(socket, 'end')
      socket.resume()
      const upHash = await sendRandom(socket, bytes, seeded(7))
      await ended
      const [transfer] = target.transfers
      assert.equal(bytesDown, bytes)
      assert.equal(hash.digest('hex'), await transfer!.downSent)
      assert.equal((await transfer!.upReceived).hash, upHash)
      assert.equal(seenUp, bytes, 'the middleware saw every byte the client sent')
      assert.equal(seenDown, bytes, 'the middleware saw every byte the target sent')
    })

    test('a target that speaks first: its banner arrives right after the reply, then the bulk', async (t) => {
      const { port } = await startSocks(t, { fastRelay })
      const banner = Buffer.from('220 ready\r\n')
      const bytes = 4 * 1024 * 1024
      const target = await startTarget(t, bytes, banner)
      // The target writes its banner and data as soon as the proxy dials it, before the proxy replies:
      // those bytes wait in the proxy and must come out after the reply, first and in order.
      const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true })
      t.after(() => socket.destroy())
      await once(socket, 'connect')
      socket.write(hex('050100'))
      await once(socket, 'data')
      socket.write(ipv4Request(1, '127.0.0.1', target.port))
      let got = Buffer.alloc(0)
      const hashFrom = createHash('sha256')
      let total = 0
      socket.on('data', (chunk: Buffer) => {
        if (got.length < 10 + banner.length) {
          got = Buffer.concat([got, chunk])
          if (got.length >= 10 + banner.length) {
            const rest = got.subarray(10 + banner.length)
            hashFrom.update(rest)
            total += rest.length
          }
          return
        }
        hashFrom.update(chunk)
        total += chunk.length
      })
      socket.end()
      await once(socket, 'end')
      assert.deepEqual(got.subarray(0, 2), hex('0500'))
      assert.equal(got.subarray(10, 10 + banner.length).toString(), banner.toString())
      assert.equal(total, bytes)
      assert.equal(hashFrom.digest('hex'), await target.transfers[0]!.downSent)
    })
  })
}
