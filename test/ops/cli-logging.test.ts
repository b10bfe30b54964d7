// The built CLI logs JSON lines on stderr (stderr is a pipe here, not a terminal) and serves metrics.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { get } from 'node:http'
import { join } from 'node:path'
import { startEcho, startTcpServer, waitFor } from '../helpers/net.js'
import { echoThrough, listeningPort, startCli, stop, tempDir } from '../helpers/spawn.js'

const PASSWORD = 'cli-log-secret'

function jsonLines(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      try {
        return JSON.parse(line) as Record<string, unknown>
      } catch {
        throw new Error(`not a JSON log line: ${line}`)
      }
    })
}

async function fetchText(url: string): Promise<string> {
  const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => get(url, { agent: false }, resolve).on('error', reject))
  let body = ''
  for await (const chunk of res) body += String(chunk)
  assert.equal(res.statusCode, 200)
  return body
}

test('stderr gets pino JSON lines, one access line per connection (no password); metrics are served', async (t) => {
  const echo = await startEcho(t)
  const dir = tempDir(t)
  writeFileSync(
    join(dir, 'socksmith.config.json'),
    JSON.stringify({
      listen: { port: 0 },
      log: { level: 'info' },
      metrics: { port: 0, perUser: true },
      plugins: [['auth', { users: { alice: PASSWORD } }]],
    }),
  )
  const cli = startCli(t, [], { cwd: dir })
  const port = await listeningPort(cli)
  const metricsUrl = (await cli.line(/socksmith metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/))[1]!
  assert.equal(await echoThrough(port, echo.port, { user: 'alice', password: PASSWORD, payload: 'json please' }), 'json please')
  await cli.errLine(/"msg":"access"/)

  const lines = jsonLines(cli.stderr())
  const listening = lines.find((l) => l.msg === `listening on 127.0.0.1:${port}`)
  assert.equal(listening?.level, 30)
  assert.equal(typeof listening?.time, 'number')
  const access = lines.filter((l) => l.msg === 'access')
  assert.equal(access.length, 1)
  const { time, pid, hostname, durationMs, client, ...fields } = access[0]!
  assert.equal(typeof time, 'number')
  assert.equal(pid, cli.child.pid)
  assert.equal(typeof hostname, 'string')
  assert.equal(typeof durationMs, 'number')
  assert.match(String(client), /^127\.0\.0\.1:\d+$/)
  assert.deepEqual(fields, {
    level: 30,
    msg: 'access',
    id: 1,
    user: 'alice',
    command: 'connect',
    destination: `127.0.0.1:${echo.port}`,
    dialed: `127.0.0.1:${echo.port}`,
    via: null,
    reply: 0,
    bytesFromClient: 11,
    bytesToClient: 11,
    error: null,
    reason: null,
    protocol: 'socks5',
  })
  assert.ok(!cli.stderr().includes(PASSWORD))

  const metrics = await fetchText(metricsUrl)
  assert.match(metrics, /^socksmith_connections_total\{outcome="success",reply="0",protocol="socks5"\} 1$/m)
  assert.match(metrics, /^socksmith_user_connections_total\{user="alice"\} 1$/m)
  await stop(cli)
})

test('access lines are written in batches, and none is lost: 60 connections, then SIGTERM at once', async (t) => {
  const echo = await startEcho(t)
  const cli = startCli(t, ['--port', '0'], { cwd: tempDir(t) })
  const port = await listeningPort(cli)
  const payloads = Array.from({ length: 60 }, (_, i) => `batch-${i}`)
  assert.deepEqual(await Promise.all(payloads.map((payload) => echoThrough(port, echo.port, { payload }))), payloads)
  // No wait for the lines: the drain and the exit must write whatever is still gathered.
  await stop(cli)
  const access = jsonLines(cli.stderr()).filter((l) => l.msg === 'access')
  assert.equal(access.length, payloads.length)
  assert.deepEqual(new Set(access.map((l) => l.id)).size, payloads.length)
  assert.ok(access.every((l) => l.bytesFromClient === l.bytesToClient && (l.bytesFromClient as number) >= 'batch-0'.length))
})

test('log.access: false and --log-level warn: no access line, nothing at info', async (t) => {
  const echo = await startEcho(t)
  const dir = tempDir(t)
  writeFileSync(join(dir, 'socksmith.config.json'), JSON.stringify({ listen: { port: 0 }, log: { access: false } }))
  const quiet = startCli(t, [], { cwd: dir })
  const port = await listeningPort(quiet)
  assert.equal(await echoThrough(port, echo.port), 'ping')
  // The level is info: the listening line shows logging works, and no access line is written.
  await quiet.errLine(/"msg":"listening on/)
  await stop(quiet)
  assert.ok(!quiet.stderr().includes('"msg":"access"'))

  const warnOnly = startCli(t, ['--log-level', 'warn', '--port', '0'], { cwd: tempDir(t) })
  const port2 = await listeningPort(warnOnly)
  assert.equal(await echoThrough(port2, echo.port), 'ping')
  await stop(warnOnly)
  assert.deepEqual(jsonLines(warnOnly.stderr()).filter((l) => (l.level as number) < 40), [])
})

test('SIGHUP switches the level of the pino logger: the access log comes on with log.level info', async (t) => {
  let closed = 0
  const echo = await startTcpServer(t, (socket) => {
    socket.pipe(socket)
    socket.on('close', () => closed++)
  })
  const dir = tempDir(t)
  const file = join(dir, 'socksmith.config.json')
  writeFileSync(file, JSON.stringify({ listen: { port: 0 }, log: { level: 'warn' } }))
  const cli = startCli(t, [], { cwd: dir })
  const port = await listeningPort(cli)
  assert.equal(await echoThrough(port, echo.port, { payload: 'before' }), 'before')
  // The first connection must be over (and so not logged, at warn) before the level changes.
  await waitFor(() => closed === 1, 3000)
  await new Promise((resolve) => setTimeout(resolve, 100))
  writeFileSync(file, JSON.stringify({ listen: { port: 0 }, log: { level: 'info' } }))
  cli.child.kill('SIGHUP')
  await cli.line(/socksmith reloaded/)
  assert.equal(await echoThrough(port, echo.port, { payload: 'after!' }), 'after!')
  await cli.errLine(/"msg":"access"/)
  await stop(cli)
  const access = jsonLines(cli.stderr()).filter((l) => l.msg === 'access')
  assert.deepEqual(access.map((l) => l.bytesFromClient), [6], 'only the connection after the reload')
})
