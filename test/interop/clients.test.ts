// Independent SOCKS5 clients against our server, so a misunderstanding shared by our server and our
// own client cannot pass: curl, ncat, OpenBSD netcat, proxychains, PySocks and the npm `socks` package.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:net'
import { once } from 'node:events'
import { createSocket } from 'node:dgram'
import { SocksClient } from 'socks'
import { createServer } from 'socksmith'
import { silentLogger } from 'socksmith/ops'
import { startEcho, startSocks, startUdpEcho, mapResolver, trackClient } from '../helpers/net.js'
import { run, startHttp } from '../helpers/processes.js'
import { needs, peer } from '../helpers/peers.js'

const curl = peer('curl')
const ncat = peer('ncat')
const netcat = peer('nc.openbsd')
const proxychains = peer('proxychains4')
const pysocks = peer('pysocks')
const chromium = peer('chromium')

test('curl --socks5 to an IPv4 target', needs(curl), async (t) => {
  const web = await startHttp(t)
  const { port } = await startSocks(t)
  const r = await run(curl.path, ['-sS', '--max-time', '10', '--socks5', `127.0.0.1:${port}`, `http://127.0.0.1:${web.port}/v4`])
  assert.equal(r.stderr, '')
  assert.equal(r.stdout, 'hello /v4')
})

test('curl --socks5 over IPv6 to an IPv6 target', needs(curl), async (t) => {
  const web = await startHttp(t, '::1')
  const { port } = await startSocks(t, { host: '::1' })
  const r = await run(curl.path, ['-sS', '--max-time', '10', '--socks5', `[::1]:${port}`, `http://[::1]:${web.port}/v6`])
  assert.equal(r.stdout, 'hello /v6', r.stderr)
})

test('curl --socks5-hostname sends the name; the server resolves it', needs(curl), async (t) => {
  const web = await startHttp(t)
  const resolver = mapResolver({ 'web.test': ['127.0.0.1'] })
  const { port } = await startSocks(t, { resolver })
  const r = await run(curl.path, ['-sS', '--max-time', '10', '--socks5-hostname', `127.0.0.1:${port}`, `http://web.test:${web.port}/name`])
  assert.equal(r.stdout, 'hello /name', r.stderr)
  assert.deepEqual(resolver.calls, ['web.test'])
})

test('curl --socks5-hostname with a hosts-file name and the system resolver', needs(curl), async (t) => {
  const web = await startHttp(t)
  const { port } = await startSocks(t)
  const r = await run(curl.path, ['-sS', '--max-time', '10', '--socks5-hostname', `127.0.0.1:${port}`, `http://localhost:${web.port}/hosts`])
  assert.equal(r.stdout, 'hello /hosts', r.stderr)
})

test('curl sees a refused connection as a SOCKS failure', needs(curl), async (t) => {
  const { port } = await startSocks(t, { resolver: mapResolver({}) })
  const r = await run(curl.path, ['-sS', '--max-time', '10', '--socks5-hostname', `127.0.0.1:${port}`, 'http://missing.test/'])
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, /SOCKS5|socks/i)
})

test('ncat through the proxy', needs(ncat), async (t) => {
  const echo = await startEcho(t)
  const { port } = await startSocks(t)
  const r = await run(ncat.path, ['--proxy', `127.0.0.1:${port}`, '--proxy-type', 'socks5', '127.0.0.1', String(echo.port)], { input: 'ncat says hi\n' })
  assert.equal(r.stdout, 'ncat says hi\n', r.stderr)
})

test('OpenBSD netcat -X 5 through the proxy', needs(netcat), async (t) => {
  const echo = await startEcho(t)
  const { port } = await startSocks(t)
  const r = await run(netcat.path, ['-N', '-X', '5', '-x', `127.0.0.1:${port}`, '127.0.0.1', String(echo.port)], { input: 'netcat says hi\n' })
  assert.equal(r.stdout, 'netcat says hi\n', r.stderr)
})

test('proxychains4 runs curl through the proxy', needs(proxychains, curl), async (t) => {
  const web = await startHttp(t)
  const { port } = await startSocks(t)
  const dir = mkdtempSync(join(tmpdir(), 'socksmith-pc-'))
  const conf = join(dir, 'proxychains.conf')
  writeFileSync(conf, `strict_chain\nquiet_mode\ntcp_read_time_out 5000\ntcp_connect_time_out 5000\n[ProxyList]\nsocks5 127.0.0.1 ${port}\n`)
  const r = await run(proxychains.path, ['-q', '-f', conf, curl.path, '-sS', '--max-time', '10', `http://127.0.0.1:${web.port}/pc`])
  assert.equal(r.stdout, 'hello /pc', r.stderr)
  assert.equal(web.requests(), 1)
})

/** argv: proxy port, echo port, and optionally the protocol (SOCKS5 by default, or SOCKS4). */
const PYSOCKS_TCP = `
import socks, sys
s = socks.socksocket()
s.set_proxy(getattr(socks, sys.argv[3] if len(sys.argv) > 3 else "SOCKS5"), "127.0.0.1", int(sys.argv[1]))
s.connect(("127.0.0.1", int(sys.argv[2])))
s.sendall(b"pysocks tcp")
print(s.recv(100).decode())
s.close()
`

const PYSOCKS_UDP = `
import socks, socket, sys
s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
s.set_proxy(socks.SOCKS5, "127.0.0.1", int(sys.argv[1]))
s.settimeout(5)
s.sendto(b"pysocks udp", ("127.0.0.1", int(sys.argv[2])))
data, addr = s.recvfrom(100)
print(data.decode(), addr[0], addr[1])
s.close()
`

test('PySocks: TCP CONNECT', needs(pysocks), async (t) => {
  const echo = await startEcho(t)
  const { port } = await startSocks(t)
  const r = await run(pysocks.path, ['-c', PYSOCKS_TCP, String(port), String(echo.port)])
  assert.equal(r.stdout.trim(), 'pysocks tcp', r.stderr)
})

test('PySocks: SOCKS4 CONNECT on a listener that takes SOCKS5 and SOCKS4', needs(pysocks), async (t) => {
  const echo = await startEcho(t)
  const server = createServer({ logger: silentLogger })
  const { port } = await server.listen({ host: '127.0.0.1', port: 0, protocols: ['socks5', 'socks4'] })
  t.after(() => server.close({ drainTimeout: 0 }))
  const r = await run(pysocks.path, ['-c', PYSOCKS_TCP, String(port), String(echo.port), 'SOCKS4'])
  assert.equal(r.stdout.trim(), 'pysocks tcp', r.stderr)
})

test('PySocks: UDP ASSOCIATE', needs(pysocks), async (t) => {
  const echo = await startUdpEcho(t)
  const { port } = await startSocks(t)
  const r = await run(pysocks.path, ['-c', PYSOCKS_UDP, String(port), String(echo.port)])
  assert.equal(r.stdout.trim(), `pysocks udp 127.0.0.1 ${echo.port}`, r.stderr)
})

test('npm socks: CONNECT with a domain destination', async (t) => {
  const echo = await startEcho(t)
  const { port } = await startSocks(t, { resolver: mapResolver({ 'echo.test': ['127.0.0.1'] }) })
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port, type: 5 },
    command: 'connect',
    destination: { host: 'echo.test', port: echo.port },
  })
  trackClient(t, socket)
  socket.write('npm socks')
  const [data] = (await once(socket, 'data')) as [Buffer]
  assert.equal(data.toString(), 'npm socks')
  socket.end()
})

test('npm socks: BIND', async (t) => {
  const { port } = await startSocks(t)
  const client = new SocksClient({ proxy: { host: '127.0.0.1', port, type: 5 }, command: 'bind', destination: { host: '0.0.0.0', port: 0 } })
  const bound = new Promise<{ port: number; host: string }>((resolve) => client.once('bound', (info) => resolve(info.remoteHost as { port: number; host: string })))
  const established = new Promise<{ socket: import('node:net').Socket; remoteHost: { host: string; port: number } }>((resolve) =>
    client.once('established', (info) => resolve(info as never)),
  )
  client.on('error', () => {})
  client.connect()
  const where = await bound
  assert.equal(where.host, '127.0.0.1')
  const peer = trackClient(t, connect({ host: '127.0.0.1', port: where.port }))
  await once(peer, 'connect')
  const { socket, remoteHost } = await established
  trackClient(t, socket)
  assert.equal(remoteHost.port, peer.localPort)
  peer.write('bound!')
  const [data] = (await once(socket, 'data')) as [Buffer]
  assert.equal(data.toString(), 'bound!')
})

test('npm socks: UDP ASSOCIATE', async (t) => {
  const echo = await startUdpEcho(t)
  const { port } = await startSocks(t)
  const udp = createSocket('udp4')
  udp.bind(0, '127.0.0.1')
  await once(udp, 'listening')
  t.after(() => udp.close())
  const client = new SocksClient({ proxy: { host: '127.0.0.1', port, type: 5 }, command: 'associate', destination: { host: '0.0.0.0', port: 0 } })
  client.on('error', () => {})
  const established = new Promise<{ socket: import('node:net').Socket; remoteHost: { host: string; port: number } }>((resolve) =>
    client.once('established', (info) => resolve(info as never)),
  )
  client.connect()
  const { socket, remoteHost } = await established
  trackClient(t, socket)
  const frame = SocksClient.createUDPFrame({ remoteHost: { host: '127.0.0.1', port: echo.port }, data: Buffer.from('npm udp') })
  udp.send(frame, remoteHost.port, remoteHost.host)
  const [msg] = (await once(udp, 'message')) as [Buffer]
  const parsed = SocksClient.parseUDPFrame(msg)
  assert.equal(parsed.data.toString(), 'npm udp')
  assert.equal(parsed.remoteHost.port, echo.port)
})

test('headless Chromium loads a page through the proxy (names resolved by the proxy)', needs(chromium), async (t) => {
  const web = await startHttp(t)
  // Only the test name resolves: Chromium's own background requests get REP 04 and go nowhere.
  const resolver = mapResolver({ 'web.test': ['127.0.0.1'] })
  const { port } = await startSocks(t, { resolver })
  const profile = mkdtempSync(join(tmpdir(), 'socksmith-chromium-'))
  t.after(() => rmSync(profile, { recursive: true, force: true }))
  const r = await run(chromium.path, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`,
    `--proxy-server=socks5://127.0.0.1:${port}`, '--dump-dom', `http://web.test:${web.port}/chromium`,
  ], { timeout: 60_000 })
  assert.match(r.stdout, /hello \/chromium/, r.stderr.slice(-2000))
  assert.ok(resolver.calls.includes('web.test'))
})
