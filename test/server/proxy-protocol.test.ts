// PROXY protocol listeners: behind haproxy the real client address drives limits, rules and logs.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net'
import { once } from 'node:events'
import { RawClient, startEcho, startSocks, ipv4Request, hex, trackClient } from '../helpers/net.js'
import { encodeProxyHeaderV1 } from 'socksmith/protocol'
import type { Endpoint, SocksServer } from 'socksmith'

async function freePort(): Promise<number> {
  const probe = createNetServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address() as AddressInfo
  await new Promise((resolve) => probe.close(resolve))
  return port
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port })
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

/** Starts haproxy in TCP mode in front of `backendPort`, sending a PROXY header (`send-proxy` is v1). */
async function startHaproxy(t: TestContext, backendPort: number, version: 'send-proxy' | 'send-proxy-v2'): Promise<number> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'socksmith-haproxy-'))
  const conf = join(dir, 'haproxy.cfg')
  writeFileSync(conf, [
    'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 30s', '  timeout server 30s',
    'frontend socks', `  bind 127.0.0.1:${port}`, '  default_backend socksmith',
    'backend socksmith', `  server s1 127.0.0.1:${backendPort} ${version}`, '',
  ].join('\n'))
  const child = spawn('haproxy', ['-db', '-f', conf], { stdio: 'ignore' })
  t.after(() => child.kill('SIGKILL'))
  for (let i = 0; i < 100 && child.exitCode === null; i++) {
    if (await canConnect(port)) return port
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error('haproxy did not start')
}

/** A server with a plain listener (from startSocks) and a PROXY-protocol one; records each client endpoint. */
async function startBehindProxy(t: TestContext): Promise<{ server: SocksServer; proxyPort: number; seen: Endpoint[] }> {
  const seen: Endpoint[] = []
  const { server } = await startSocks(t, {}, (s) =>
    s.use('negotiate', async function recordClient(ctx, next) {
      seen.push(ctx.client)
      await next()
    }),
  )
  const { port } = await server.listen({ host: '127.0.0.1', port: 0, proxyProtocol: true })
  return { server, proxyPort: port, seen }
}

for (const version of ['send-proxy', 'send-proxy-v2'] as const) {
  test(`behind haproxy (${version}) the real client address reaches the middleware`, async (t) => {
    const echo = await startEcho(t)
    const { proxyPort, seen } = await startBehindProxy(t)
    const haproxyPort = await startHaproxy(t, proxyPort, version)
    // The client comes from 127.0.0.2; haproxy itself connects from 127.0.0.1.
    const socket = trackClient(t, connect({ host: '127.0.0.1', port: haproxyPort, localAddress: '127.0.0.2' }))
    await once(socket, 'connect')
    socket.write(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', echo.port), Buffer.from('through haproxy')]))
    let received = Buffer.alloc(0)
    while (received.length < 12 + 15) {
      const [chunk] = (await once(socket, 'data')) as [Buffer]
      received = Buffer.concat([received, chunk])
    }
    assert.deepEqual(received.subarray(0, 3), hex('050005'))
    assert.equal(received.subarray(12).toString(), 'through haproxy')
    assert.equal(seen.length, 1)
    assert.equal(seen[0]!.address, '127.0.0.2')
    assert.equal(seen[0]!.port, socket.localPort)
  })
}

test('a PROXY-protocol listener closes connections that start without the header', async (t) => {
  const { proxyPort, seen } = await startBehindProxy(t)
  const c = await RawClient.connect(t, proxyPort)
  c.send('050100')
  assert.equal((await c.expectClose()).length, 0)
  assert.equal(seen.length, 0)
})

test('a v1 header sent by hand sets the client; the plain listener of the same server is unaffected', async (t) => {
  const echo = await startEcho(t)
  const { server, proxyPort, seen } = await startBehindProxy(t)
  const c = await RawClient.connect(t, proxyPort)
  c.send(Buffer.concat([encodeProxyHeaderV1({ address: '192.0.2.7', port: 4242 }, { address: '127.0.0.1', port: proxyPort }), hex('050100'), ipv4Request(1, '127.0.0.1', echo.port)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.equal((await c.read(10))[1], 0)
  assert.deepEqual(seen[0], { address: '192.0.2.7', port: 4242, family: 4 })
  const plain = await RawClient.connect(t, server.addresses()[0]!.port)
  plain.send('050100')
  assert.deepEqual(await plain.read(2), hex('0500'))
  assert.equal(seen[1]!.address, '127.0.0.1')
})

test('a config file listener with proxyProtocol: true, behind haproxy', async (t) => {
  const echo = await startEcho(t)
  const { loadConfig, createServerFromConfig, prepareServer } = await import('socksmith')
  const loaded = await loadConfig({ config: { listen: { host: '127.0.0.1', port: 0, proxyProtocol: true } } })
  assert.equal(loaded.config.listen[0]!.proxyProtocol, true)
  const server = createServerFromConfig(loaded)
  const seen: string[] = []
  await prepareServer(server, loaded)
  server.on('connection', (ctx) => seen.push(ctx.id.toString()))
  const { port } = await server.listen(loaded.config.listen[0]!)
  t.after(() => server.close({ drainTimeout: 0 }))
  const haproxyPort = await startHaproxy(t, port, 'send-proxy-v2')
  const socket = trackClient(t, connect({ host: '127.0.0.1', port: haproxyPort, localAddress: '127.0.0.3' }))
  await once(socket, 'connect')
  const clients: string[] = []
  server.on('disconnect', (ctx) => clients.push(ctx.client.address))
  socket.write(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', echo.port), Buffer.from('cfg')]))
  let received = Buffer.alloc(0)
  while (received.length < 12 + 3) {
    const [chunk] = (await once(socket, 'data')) as [Buffer]
    received = Buffer.concat([received, chunk])
  }
  assert.equal(received.subarray(12).toString(), 'cfg')
  socket.destroy()
  // (haproxy's readiness probe from startHaproxy came through too, as 127.0.0.1.)
  while (!clients.includes('127.0.0.3')) await new Promise((r) => setTimeout(r, 10))
  assert.ok(seen.length >= 1)
})
