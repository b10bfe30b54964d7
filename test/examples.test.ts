// Every example in examples/ is started here and real traffic goes through it, so none can rot.
// Programs run as `node examples/x.ts` under this runner's tsx; configs run with the built CLI.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { copyFileSync, mkdirSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import type { Socket } from 'node:net'
import { createServer } from 'socksmith'
import { silentLogger } from 'socksmith/ops'
import { socksAssociate, socksConnect } from 'socksmith/client'
import { startEcho, startSocks, startUdpEcho, waitFor } from './helpers/net.js'
import { echoThrough, listeningPort, ROOT, start, startCli, stop, tempDir, plainEnv, type Running } from './helpers/spawn.js'

const example = (file: string): string => join(ROOT, 'examples', file)

/** Runs an example program on a free port (with the runner's tsx and source condition). */
async function runProgram(t: Parameters<typeof start>[0], file: string, env: Record<string, string> = {}): Promise<{ running: Running; port: number }> {
  const running = start(t, process.execPath, [example(file), '0'], { env: { ...process.env, ...env } })
  return { running, port: await listeningPort(running) }
}

describe('examples', { concurrency: 3 }, () => {
  test('basic-server.ts relays a CONNECT', async (t) => {
    const echo = await startEcho(t)
    const { running, port } = await runProgram(t, 'basic-server.ts')
    assert.equal(await echoThrough(port, echo.port, { payload: 'basic' }), 'basic')
    await stop(running)
  })

  test('access-log.ts logs client, destination, bytes and duration once the relay ends', async (t) => {
    const echo = await startEcho(t)
    const { running, port } = await runProgram(t, 'access-log.ts')
    assert.equal(await echoThrough(port, echo.port, { payload: '12345' }), '12345')
    const [line] = await running.line(/^\{.*"up".*\}$/m)
    const entry = JSON.parse(line) as Record<string, unknown>
    assert.equal(entry.command, 'connect')
    assert.equal(entry.destination, `127.0.0.1:${echo.port}`)
    assert.equal(entry.up, 5)
    assert.equal(entry.down, 5)
    assert.equal(typeof entry.ms, 'number')
    await stop(running)
  })

  test('user-quota.ts cuts a user off at the quota and refuses new connections; others go on', async (t) => {
    const echo = await startEcho(t)
    const { running, port } = await runProgram(t, 'user-quota.ts', { QUOTA_BYTES: '1000' })
    const proxy = { host: '127.0.0.1', port, username: 'alice', password: 'wonderland' }
    assert.equal(await echoThrough(port, echo.port, { user: 'alice', password: 'wonderland', payload: 'x'.repeat(300) }), 'x'.repeat(300))
    // 600 of 1000 bytes used; 500 more each way crosses the line and the proxy closes the connection.
    const { socket } = await socksConnect(proxy, { host: '127.0.0.1', port: echo.port })
    socket.on('error', () => {})
    socket.resume()
    socket.write('y'.repeat(500))
    await endedByProxy(socket)
    await assert.rejects(socksConnect(proxy, { host: '127.0.0.1', port: echo.port }), (err: { reply?: number }) => err.reply === 0x02)
    assert.equal(await echoThrough(port, echo.port, { user: 'bob', password: 'builder' }), 'ping')
    await stop(running)
  })

  test('udp-dns-only.ts forwards DNS queries and drops every other datagram', async (t) => {
    const dns = await startUdpEcho(t)
    const other = await startUdpEcho(t)
    const { running, port } = await runProgram(t, 'udp-dns-only.ts', { DNS_PORT: String(dns.port) })
    const association = await socksAssociate({ host: '127.0.0.1', port })
    t.after(() => association.close())
    // A query for example.com A (RFC 1035 wire format).
    const query = Buffer.from('abcd01000001000000000000076578616d706c6503636f6d0000010001', 'hex')
    association.send(Buffer.from('not dns'), { host: '127.0.0.1', port: dns.port })
    association.send(query, { host: '127.0.0.1', port: other.port })
    const answer = once(association, 'message')
    association.send(query, { host: '127.0.0.1', port: dns.port })
    const [data] = (await answer) as [Buffer]
    assert.deepEqual(data, query, 'the query reached the DNS port and its echo came back')
    // UDP keeps order on loopback: what was sent before the query and not seen was dropped.
    assert.deepEqual(dns.received.map((r) => r.data.toString('hex')), [query.toString('hex')])
    assert.equal(other.received.length, 0)
    association.close()
    await stop(running)
  })

  test('upstream-chain.ts sends connections through every hop of the chain', async (t) => {
    const echo = await startEcho(t)
    const hops = await Promise.all([startSocks(t), startSocks(t)])
    const seen = hops.map(() => [] as string[])
    hops.forEach((hop, i) => hop.server.on('connection', (ctx) => seen[i]?.push(ctx.client.address)))
    const chain = hops.map((hop) => `socks5://127.0.0.1:${hop.port}`).join(',')
    const { running, port } = await runProgram(t, 'upstream-chain.ts', { UPSTREAM: chain })
    assert.equal(await echoThrough(port, echo.port, { payload: 'chained' }), 'chained')
    assert.deepEqual(seen.map((s) => s.length), [1, 1], 'one connection through each hop')
    await stop(running)
  })

  test('config/socksmith.config.yaml: auth, rules and dns-cache from YAML', async (t) => {
    const echo = await startEcho(t)
    const cli = startCli(t, ['--config', 'examples/config/socksmith.config.yaml', '--port', '0'], { cwd: ROOT })
    const port = await listeningPort(cli)
    assert.equal(await echoThrough(port, echo.port, { user: 'alice', password: 'wonderland' }), 'ping')
    await assert.rejects(echoThrough(port, echo.port), 'no login, no relay')
    await assert.rejects(socksConnect({ host: '127.0.0.1', port, username: 'bob', password: 'builder' }, { host: '127.0.0.1', port: 25 }), (err: { reply?: number }) => err.reply === 0x02)
    await stop(cli)
  })

  test('config/all-plugins.config.ts: all four bundled plugins, through an upstream', async (t) => {
    const echo = await startEcho(t)
    const upstream = await startSocks(t)
    let viaUpstream = 0
    upstream.server.on('connection', () => viaUpstream++)
    const cli = startCli(t, ['--config', 'examples/config/all-plugins.config.ts', '--port', '0'], {
      cwd: ROOT,
      env: plainEnv({ UPSTREAM_PROXY: `socks5://127.0.0.1:${upstream.port}`, ALICE_PASSWORD: 'from-env' }),
    })
    const port = await listeningPort(cli)
    assert.equal(await echoThrough(port, echo.port, { user: 'alice', password: 'from-env', payload: 'all four' }), 'all four')
    assert.equal(viaUpstream, 1, 'the connection went through the upstream')
    await assert.rejects(socksConnect({ host: '127.0.0.1', port, username: 'alice', password: 'from-env' }, { host: '127.0.0.1', port: 25 }), (err: { reply?: number }) => err.reply === 0x02)
    assert.equal(viaUpstream, 1, 'a refused destination never reaches the upstream')
    await stop(cli)
  })

  test('local-plugin: a .ts plugin file next to a YAML config', async (t) => {
    const echo = await startEcho(t)
    const cli = startCli(t, ['--config', 'examples/local-plugin/socksmith.config.yaml', '--port', '0'], { cwd: ROOT })
    const port = await listeningPort(cli)
    assert.equal(await echoThrough(port, echo.port), 'ping')
    await assert.rejects(socksConnect({ host: '127.0.0.1', port }, { host: '127.0.0.1', port: 6667 }), (err: { reply?: number }) => err.reply === 0x02)
    await stop(cli)
  })

  test('npm-plugin: a plugin packaged like an npm module, installed next to the config', async (t) => {
    const echo = await startEcho(t)
    // As `npm install ./socksmith-plugin-max-duration` would: a link in node_modules.
    const dir = tempDir(t)
    copyFileSync(example('npm-plugin/socksmith.config.yaml'), join(dir, 'socksmith.config.yaml'))
    mkdirSync(join(dir, 'node_modules'))
    symlinkSync(example('npm-plugin/socksmith-plugin-max-duration'), join(dir, 'node_modules', 'socksmith-plugin-max-duration'), 'dir')
    const cli = startCli(t, ['--port', '0'], { cwd: dir })
    const port = await listeningPort(cli)
    const started = Date.now()
    const { socket } = await socksConnect({ host: '127.0.0.1', port }, { host: '127.0.0.1', port: echo.port })
    socket.on('error', () => {})
    socket.write('alive')
    const [data] = (await once(socket, 'data')) as [Buffer]
    assert.equal(data.toString(), 'alive')
    await endedByProxy(socket)
    assert.ok(Date.now() - started >= 900, 'closed by the plugin after about a second')
    await stop(cli)
  })
})

/** The proxy ended the connection: an end of stream (the client socket is half-open) or a reset. */
function endedByProxy(socket: Socket): Promise<void> {
  socket.resume()
  return new Promise((resolve) => {
    socket.once('end', resolve).once('close', resolve)
  })
}

// The examples' own claims about socksmith that need no process: the README promises these.
test('an example plugin file can be registered from a program too', async (t) => {
  const { default: denyPorts } = await import('../examples/local-plugin/deny-ports.js')
  const server = createServer({ logger: silentLogger })
  assert.throws(() => server.register(denyPorts, { ports: [25, 70000] }), /plugin deny-ports: ports\[1\]: must be a port number/)
  server.register(denyPorts, { ports: [25] })
  await server.listen({ port: 0 })
  t.after(() => server.close({ drainTimeout: 0 }))
  await waitFor(() => server.plugins.includes('deny-ports'))
})
