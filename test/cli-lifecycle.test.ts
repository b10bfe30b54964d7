// The CLI's lifecycle: SIGTERM drains in-flight transfers without losing a byte, and --workers.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { socksConnect } from 'socksmith/client'
import { startEcho, startTcpServer } from './helpers/net.js'
import { CLI, echoThrough, listeningPort, start } from './helpers/spawn.js'

test('SIGTERM: stops accepting, lets an in-flight transfer finish, exits 0', async (t) => {
  const size = 4 * 1024 * 1024
  // The target answers slowly: the signal arrives while its bytes are still coming.
  const target = await startTcpServer(t, (s) => {
    s.once('data', () => {
      let sent = 0
      const chunk = Buffer.alloc(256 * 1024, 0x33)
      const timer = setInterval(() => {
        s.write(chunk)
        sent += chunk.length
        if (sent >= size) {
          clearInterval(timer)
          s.end()
        }
      }, 20)
      s.on('close', () => clearInterval(timer))
    })
  })
  const running = start(t, process.execPath, [CLI, '--port', '0'])
  const port = await listeningPort(running)
  const { socket } = await socksConnect({ host: '127.0.0.1', port }, { host: '127.0.0.1', port: target.port })
  let received = 0
  socket.on('data', (d: Buffer) => (received += d.length))
  const ended = new Promise<void>((resolve) => socket.once('end', resolve))
  socket.write('go')
  while (received === 0) await new Promise((r) => setTimeout(r, 10))
  running.child.kill('SIGTERM')
  await ended
  socket.end()
  assert.equal(received, size, 'every byte of the in-flight transfer arrived')
  const exit = await running.exited
  assert.equal(exit.code, 0)
})

test('--workers 2: one listening line, connections relayed, SIGTERM exits 0', async (t) => {
  const echo = await startEcho(t)
  const running = start(t, process.execPath, [CLI, '--port', '0', '--workers', '2'])
  const port = await listeningPort(running)
  for (let i = 0; i < 6; i++) assert.equal(await echoThrough(port, echo.port, { payload: `w${i}` }), `w${i}`)
  assert.equal(running.stdout().match(/listening on/g)?.length, 1)
  running.child.kill('SIGTERM')
  const exit = await running.exited
  assert.equal(exit.code, 0)
})
