// The relay's fast path (managed read buffers, src/commands/read-buffers.ts): engaged by default
// on every Node CI runs, switched off by the option or the environment, kept with a tap, never
// given to the public dialers, and nothing of it allocated at import.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { randomBytes } from 'node:crypto'
import { connectThrough, startEcho, startSocks, waitFor } from '../helpers/net.js'
import { ROOT } from '../helpers/spawn.js'
import type { RelayContext } from 'socksmith'
import { dialTcp } from 'socksmith/net'
import { managedReadsUnavailable, readBufferStats, readsThroughManagedBuffers } from '../../src/commands/read-buffers.js'

const NODE = `Node ${process.version} (${process.platform}/${process.arch})`

interface Relayed {
  /** Whether the client's and the upstream's socket read through managed buffers. */
  client: boolean
  upstream: boolean
  /** readBufferStats moved by this relay. */
  switched: number
  lent: number
}

/** Relays `size` random bytes to an echo target and back, checking them; reports what read how. */
async function relayBulk(t: TestContext, options: { fastRelay?: boolean }, size: number, tap = false): Promise<Relayed> {
  const echo = await startEcho(t)
  let sockets: { client: boolean; upstream: boolean } | null = null
  const { port } = await startSocks(t, options, (server) => {
    server.use('relay', async function inspect(ctx: RelayContext, next) {
      if (tap) {
        ctx.tap('client', () => {})
        ctx.tap('outbound', () => {})
      }
      await next()
      sockets = { client: readsThroughManagedBuffers(ctx.socket), upstream: readsThroughManagedBuffers(ctx.outbound!) }
    })
  })
  const before = { ...readBufferStats }
  const c = await connectThrough(t, port, echo.port)
  const payload = randomBytes(size)
  c.socket.end(payload)
  assert.ok((await c.readToEnd(10_000)).equals(payload), 'the bytes came back intact')
  await waitFor(() => sockets !== null)
  return { ...sockets!, switched: readBufferStats.switched - before.switched, lent: readBufferStats.lent - before.lent }
}

test(`the fast path is engaged by default: accepted and dialled sockets read into managed buffers (${NODE})`, async (t) => {
  const unavailable = managedReadsUnavailable()
  assert.equal(unavailable, null, `${NODE}: accepted sockets cannot be switched to managed reads: ${unavailable}`)
  const relayed = await relayBulk(t, {}, 8 * 1024 * 1024)
  assert.ok(relayed.client, `${NODE}: the accepted client socket was not switched to managed reads`)
  assert.ok(relayed.upstream, `${NODE}: the dialled upstream socket does not read through managed buffers`)
  assert.ok(relayed.switched >= 1, `${NODE}: no accepted socket was switched (readBufferStats.switched)`)
  assert.ok(relayed.lent > 0, `${NODE}: no bulk read went out without a copy (readBufferStats.lent)`)
})

test('fastRelay: false: no socket reads into managed buffers, and the bytes still arrive', async (t) => {
  const relayed = await relayBulk(t, { fastRelay: false }, 4 * 1024 * 1024)
  assert.deepEqual(relayed, { client: false, upstream: false, switched: 0, lent: 0 })
})

test('SOCKSMITH_FAST_RELAY=0 turns the fast path off, whatever the option says', async (t) => {
  const saved = process.env.SOCKSMITH_FAST_RELAY
  process.env.SOCKSMITH_FAST_RELAY = '0'
  t.after(() => {
    if (saved === undefined) delete process.env.SOCKSMITH_FAST_RELAY
    else process.env.SOCKSMITH_FAST_RELAY = saved
  })
  const relayed = await relayBulk(t, { fastRelay: true }, 4 * 1024 * 1024)
  assert.deepEqual(relayed, { client: false, upstream: false, switched: 0, lent: 0 })
})

test('a tap keeps the fast path: tapped sides still read into managed buffers', async (t) => {
  const relayed = await relayBulk(t, {}, 8 * 1024 * 1024, true)
  assert.ok(relayed.client && relayed.upstream, `${NODE}: ${JSON.stringify(relayed)}`)
  assert.ok(relayed.lent > 0, `${NODE}: no bulk read went out without a copy`)
})

test('the public dialer gives plain sockets', async (t) => {
  const echo = await startEcho(t)
  const socket = await dialTcp('127.0.0.1', echo.port, null, { signal: new AbortController().signal, timeout: 2000 })
  t.after(() => socket.destroy())
  assert.equal(readsThroughManagedBuffers(socket), false)
  socket.end('plain')
  let back = ''
  for await (const chunk of socket) back += String(chunk)
  assert.equal(back, 'plain')
})

test('importing socksmith allocates no read buffer and builds no socket', async () => {
  // A child process, so the import is the first one: the package's modules are already loaded here.
  const script = `
    import net from 'node:net'
    import { syncBuiltinESMExports } from 'node:module'
    let sockets = 0
    const readBufferSizes = []
    const Socket = net.Socket
    net.Socket = new Proxy(Socket, { construct(target, args, newTarget) { sockets++; return Reflect.construct(target, args, newTarget) } })
    syncBuiltinESMExports()
    const allocUnsafeSlow = Buffer.allocUnsafeSlow
    // Loading modules allocates too (file reads); the read buffers are 1 MiB and 64 KiB.
    Buffer.allocUnsafeSlow = (size) => {
      if (size === 1024 * 1024 || size === 64 * 1024) readBufferSizes.push(size)
      return allocUnsafeSlow(size)
    }
    const socksmith = await import('socksmith')
    socksmith.createServer()
    console.log(JSON.stringify({ sockets, readBufferSizes }))
  `
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT })
  assert.deepEqual(JSON.parse(stdout), { sockets: 0, readBufferSizes: [] })
})
