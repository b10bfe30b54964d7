// Backpressure: a client that does not read stops the target from sending, both ways, so the
// proxy never buffers without bound.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import { RawClient, startSocks, startTcpServer, ipv4Request, hex } from '../helpers/net.js'

// Kernel socket buffers on loopback can hold several MiB per socket; four of them sit between
// target and client. Anything well under the total written proves the proxy stopped reading.
const LIMIT = 48 * 1024 * 1024
const CHUNK = Buffer.alloc(256 * 1024, 0x61)

/** Writes until the socket stays blocked for `quiet` ms; returns the bytes it accepted. */
async function writeUntilBlocked(socket: Socket, max: number, quiet = 300): Promise<number> {
  let written = 0
  while (written < max) {
    written += CHUNK.length
    if (!socket.write(CHUNK)) {
      const drained = await Promise.race([once(socket, 'drain').then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), quiet))])
      if (!drained) return written
    }
  }
  return written
}

test('a client that stops reading stalls the target (download direction)', async (t) => {
  let accepted = -1
  const stalled = new Promise<void>((resolve) => {
    void startTcpServer(t, (s) => {
      void writeUntilBlocked(s, 256 * 1024 * 1024).then((n) => {
        accepted = n
        resolve()
      })
    }).then(async (target) => {
      const { port } = await startSocks(t)
      const c = await RawClient.connect(t, port)
      c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', target.port)]))
      await c.read(12)
      c.socket.pause()
    })
  })
  await stalled
  assert.ok(accepted > 0 && accepted < LIMIT, `target could write ${accepted} bytes before stalling`)
})

test('a target that stops reading stalls the client (upload direction)', async (t) => {
  const target = await startTcpServer(t, (s) => s.pause())
  const { port } = await startSocks(t)
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', target.port)]))
  await c.read(12)
  const written = await writeUntilBlocked(c.socket, 256 * 1024 * 1024)
  assert.ok(written < LIMIT, `client could write ${written} bytes before stalling`)
})
