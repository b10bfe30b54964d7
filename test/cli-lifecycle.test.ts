// The CLI's lifecycle: SIGTERM drains in-flight transfers without losing a byte, and --workers.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { socksConnect } from 'socksmith/client'
import { startEcho, startTcpServer } from './helpers/net.js'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, echoThrough, listeningPort, start, tempDir } from './helpers/spawn.js'

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

test('--workers 2 --pid-file: the file holds the primary, whose SIGHUP reloads every worker; removed on exit', async (t) => {
  const dir = tempDir(t)
  const config = join(dir, 'socksmith.yaml')
  const pidFile = join(dir, 'socksmith.pid')
  writeFileSync(config, 'listen: { port: 0 }\nlog: { level: info }\n')
  const running = start(t, process.execPath, [CLI, '--config', config, '--workers', '2', '--pid-file', pidFile])
  await running.errLine(/pid \d+ written to /)
  assert.equal(readFileSync(pidFile, 'utf8'), `${running.child.pid}\n`)
  process.kill(running.child.pid as number, 'SIGHUP')
  await running.line(/socksmith reloaded[^]*socksmith reloaded/)
  running.child.kill('SIGTERM')
  assert.equal((await running.exited).code, 0)
  assert.equal(existsSync(pidFile), false)
})

test('--workers 2 with metrics: the primary serves the sum over the workers, plugin metrics (dns-cache) included', async (t) => {
  const echo = await startEcho(t)
  const dir = tempDir(t)
  writeFileSync(join(dir, 'socksmith.yaml'), 'listen: { port: 0 }\nmetrics: { port: 0 }\nplugins: [dns-cache]\n')
  const running = start(t, process.execPath, [CLI, '--config', join(dir, 'socksmith.yaml'), '--workers', '2'])
  const port = await listeningPort(running, 30_000)
  const [, metricsPort] = await running.line(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/)
  // By name: each worker's cache misses its first lookup of localhost and answers the rest.
  for (let i = 0; i < 6; i++) assert.equal(await echoThrough(port, echo.port, { payload: `m${i}`, host: 'localhost' }), `m${i}`)
  let body = ''
  // Connections are counted when they end; the last may still be closing in its worker.
  for (let i = 0; i < 50 && !/socksmith_connections_total\{outcome="success",reply="0",protocol="socks5"\} 6\n/.test(body); i++) {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`)
    body = await res.text()
    if (!/reply="0",protocol="socks5"\} 6\n/.test(body)) await new Promise((r) => setTimeout(r, 100))
  }
  assert.match(body, /socksmith_connections_total\{outcome="success",reply="0",protocol="socks5"\} 6\n/)
  const hits = Number(/^socksmith_dns_cache_hits_total (\d+)$/m.exec(body)?.[1])
  const misses = Number(/^socksmith_dns_cache_misses_total (\d+)$/m.exec(body)?.[1])
  assert.equal(hits + misses, 6, `one lookup per connection, summed over the workers:\n${body}`)
  assert.ok(misses >= 1 && misses <= 2, `a miss per worker that served one: ${misses}`)
  running.child.kill('SIGTERM')
  assert.equal((await running.exited).code, 0)
})
