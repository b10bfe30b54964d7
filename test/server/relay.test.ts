// The relay: half-close both ways, byte counts, idle timeout, many concurrent sessions.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { connectThrough, startEcho, startSocks, startTcpServer, waitFor } from '../helpers/net.js'
import type { RelayContext } from 'socksmith'

// Every test runs twice: on the fast path (reads into the relay's managed buffers, the default)
// and with it off (every byte through the sockets' streams, as with SOCKSMITH_FAST_RELAY=0).
for (const fastRelay of [true, false]) {
  describe(fastRelay ? 'fast path on' : 'fast path off', () => {
    test("the client's FIN reaches the target, which can still answer", async (t) => {
      let targetSocket: Socket | null = null
      const target = await startTcpServer(t, (s) => {
        targetSocket = s
        const chunks: Buffer[] = []
        s.on('data', (d: Buffer) => chunks.push(d))
        // Answer only after the client's end arrived: proves the FIN was passed on and the other direction lives.
        s.on('end', () => s.end(`got ${Buffer.concat(chunks).toString()}`))
      })
      const { port } = await startSocks(t, { fastRelay })
      const c = await connectThrough(t, port, target.port)
      c.send(Buffer.from('question'))
      c.socket.end()
      assert.equal((await c.readToEnd()).toString(), 'got question')
      assert.ok(targetSocket !== null)
    })

    test("the target's FIN reaches the client, which can still send", async (t) => {
      const received: Buffer[] = []
      let done!: () => void
      const allIn = new Promise<void>((resolve) => (done = resolve))
      const target = await startTcpServer(t, (s) => {
        s.end('bye')
        s.on('data', (d: Buffer) => received.push(d))
        s.on('end', () => done())
      })
      const { port } = await startSocks(t, { fastRelay })
      const c = await connectThrough(t, port, target.port)
      assert.equal((await c.readToEnd()).toString(), 'bye')
      c.socket.end('still here')
      await allIn
      assert.equal(Buffer.concat(received).toString(), 'still here')
    })

    test('1 MiB each way through the relay, byte counts seen by relay middleware after next()', async (t) => {
      const echo = await startEcho(t)
      let counted: [number, number] | null = null
      const { port } = await startSocks(t, { fastRelay }, (server) => {
        server.use('relay', async function countBytes(ctx: RelayContext, next) {
          await next()
          counted = [ctx.bytesFromClient, ctx.bytesToClient]
        })
      })
      const c = await connectThrough(t, port, echo.port)
      const payload = Buffer.alloc(1 << 20, 7)
      c.socket.end(payload)
      const back = await c.readToEnd(10_000)
      assert.equal(back.length, payload.length)
      assert.ok(back.equals(payload))
      await waitFor(() => counted !== null)
      assert.deepEqual(counted, [1 << 20, 1 << 20])
    })

    test('an idle relay is closed at the idle timeout', async (t) => {
      const echo = await startEcho(t)
      const { port } = await startSocks(t, { fastRelay, timeouts: { idle: 200 } })
      const c = await connectThrough(t, port, echo.port)
      c.send(Buffer.from('x'))
      assert.equal((await c.read(1)).toString(), 'x')
      const started = Date.now()
      await c.expectClose(3000)
      assert.ok(Date.now() - started >= 150)
    })

    for (const talker of ['client', 'target'] as const) {
      test(`bytes from the ${talker} alone keep a relay open past the idle timeout; it closes one timeout (+ a quarter at most) after the last`, async (t) => {
        let ticker: NodeJS.Timeout | undefined
        // When the last byte was sent: the silence is counted from there, not from when the ticking stopped.
        let lastByteAt = 0
        const tick = (socket: { write(data: string): boolean }, data: string): void => {
          lastByteAt = Date.now()
          socket.write(data)
        }
        t.after(() => clearInterval(ticker))
        const target = await startTcpServer(t, (s) => {
          s.on('data', () => {})
          if (talker === 'target') ticker = setInterval(() => tick(s, 't'), 60)
        })
        const { port } = await startSocks(t, { fastRelay, timeouts: { idle: 200 } })
        const c = await connectThrough(t, port, target.port)
        let closed = false
        c.socket.once('close', () => (closed = true))
        if (talker === 'client') ticker = setInterval(() => tick(c.socket, 'c'), 60)
        // Three timeouts of traffic one way only: still open.
        await new Promise((resolve) => setTimeout(resolve, 600))
        assert.equal(closed, false)
        clearInterval(ticker)
        await c.expectClose(3000)
        const quiet = Date.now() - lastByteAt
        assert.ok(quiet >= 150 && quiet <= 200 * 1.25 + 150, `closed after ${quiet} ms of silence`)
      })
    }

    test('a target reset mid-stream closes the client too', async (t) => {
      const target = await startTcpServer(t, (s) => s.once('data', () => s.resetAndDestroy()))
      const { port } = await startSocks(t, { fastRelay })
      const c = await connectThrough(t, port, target.port)
      c.send(Buffer.from('boom'))
      await c.expectClose()
    })

    test('an upstream closed by a middleware while the client waits on it: the client side still ends', async (t) => {
      const target = await startTcpServer(t, (s) => s.pause())
      let upstream: Socket | null = null
      const { port, server } = await startSocks(t, { fastRelay }, (srv) => {
        srv.use('relay', async (ctx: RelayContext, next) => {
          upstream = ctx.outbound
          await next()
        })
      })
      const c = await connectThrough(t, port, target.port)
      // The target does not read: the proxy's writes to it back up and it stops reading the client.
      const chunk = Buffer.alloc(1024 * 1024, 0x62)
      for (let i = 0; i < 48; i++) c.socket.write(chunk)
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.ok(upstream !== null)
      // A clean close (no error): nothing more can go that way, and the proxy's client side must not
      // stay paused behind it, or it would never see the client's FIN.
      ;(upstream as Socket).destroy()
      c.socket.end()
      await c.readToEnd(5000)
      await waitFor(() => server.connections === 0, 3000)
    })

    test('200 concurrent sessions each get their own bytes back', async (t) => {
      const echo = await startEcho(t)
      const { port, server } = await startSocks(t, { fastRelay })
      const sessions = await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const c = await connectThrough(t, port, echo.port)
          const message = Buffer.from(`session-${i.toString().padStart(4, '0')}`)
          c.send(message)
          const back = await c.read(message.length, 10_000)
          assert.deepEqual(back, message)
          return c
        }),
      )
      assert.equal(server.connections, 200)
      for (const c of sessions) c.socket.end()
      await Promise.all(sessions.map((c) => c.readToEnd(10_000)))
      await waitFor(() => server.connections === 0, 5000)
    })

    test('closing the server drains an in-flight transfer without losing a byte', async (t) => {
      const target = await startTcpServer(t, (s) => {
        s.once('data', () => {
          // Answer slowly, after close() has begun.
          setTimeout(() => s.end(Buffer.alloc(256 * 1024, 1)), 100)
        })
      })
      const { port, server } = await startSocks(t, { fastRelay })
      const c = await connectThrough(t, port, target.port)
      c.send(Buffer.from('go'))
      const closed = server.close({ drainTimeout: 5000 })
      const data = await c.readToEnd(5000)
      assert.equal(data.length, 256 * 1024)
      c.socket.end()
      await closed
      assert.equal(server.connections, 0)
    })

    test('after the drain deadline, remaining connections are destroyed', async (t) => {
      const echo = await startEcho(t)
      const { port, server } = await startSocks(t, { fastRelay })
      const c = await connectThrough(t, port, echo.port)
      const started = Date.now()
      await server.close({ drainTimeout: 100 })
      assert.ok(Date.now() - started < 2000)
      await c.expectClose()
      assert.equal(server.connections, 0)
    })
  })
}
