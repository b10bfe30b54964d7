// TLS upstreams (https://, socks5s://, socks5hs://) against real TLS servers on loopback, with
// certificates made by openssl at test time: an HTTPS proxy (the test HTTP proxy behind
// tls.createServer) and a socksmith behind a TLS terminator (socksmith's server takes no external
// sockets). Each check runs through both kinds.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { TlsOptions } from 'node:tls'
import { loadConfig, SocksError, type Logger } from 'socksmith'
import { createServerFromConfig, reloadFromConfig } from 'socksmith/config'
import { socksAssociate, socksBind, socksConnect, type Address } from 'socksmith/client'
import { silentLogger, startMetrics } from 'socksmith/ops'
import upstream, { parseProxyUrl } from 'socksmith/plugins/upstream'
import { mapResolver, startEcho, startSocks, startTcpServer, startUdpEcho, trackClient, waitFor } from '../helpers/net.js'
import { startHttpProxy } from '../helpers/http-proxy.js'
import { makeTestPki, type TestPki } from '../helpers/pki.js'
import { needs, peer } from '../helpers/peers.js'
import { project, write } from '../config/helpers.js'
import { printableConfig } from '../../src/config/print.js'
import { startTlsTerminator } from '../helpers/tls-terminator.js'

const openssl = peer('openssl')

/** Starts a TLS upstream of `kind` with `tls` as its server options; returns its URL and the client names it saw. */
type Kind = 'https' | 'socks5s'
async function startTlsUpstream(t: TestContext, kind: Kind, tls: TlsOptions): Promise<{ url: string; clientNames: (string | null)[] }> {
  if (kind === 'https') {
    const proxy = await startHttpProxy(t, { tls })
    return { url: `https://127.0.0.1:${proxy.port}`, clientNames: proxy.clientNames }
  }
  const inner = await startSocks(t)
  const terminator = await startTlsTerminator(t, inner.port, tls)
  return { url: `socks5s://127.0.0.1:${terminator.port}`, clientNames: terminator.clientNames }
}

/** The front: socksmith with the upstream plugin; `warnings` collects what it logs at warn. */
async function startFront(t: TestContext, options: unknown, timeouts?: { connect?: number }) {
  const warnings: string[] = []
  const logger: Logger = { ...silentLogger, warn: (message: string) => void warnings.push(message) }
  const front = await startSocks(t, { logger, ...(timeouts === undefined ? {} : { timeouts }) }, (server) => server.register(upstream, options))
  return { ...front, warnings }
}

/** CONNECTs through the front to an echo server: 64 KiB of random bytes out, half-close, all of them back, then the end. */
async function echoThrough(t: TestContext, frontPort: number): Promise<void> {
  const echo = await startEcho(t)
  const { socket } = await socksConnect({ host: '127.0.0.1', port: frontPort }, { host: '127.0.0.1', port: echo.port })
  trackClient(t, socket)
  const payload = randomBytes(64 * 1024)
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  socket.end(payload)
  await once(socket, 'end')
  assert.ok(Buffer.concat(chunks).equals(payload), 'every byte came back intact, after the half-close')
}

/** Expects the CONNECT through the front to be refused with REP 01; returns the upstream failures published meanwhile. */
async function expectGeneralFailure(t: TestContext, frontPort: number): Promise<{ upstream: string; message: string }[]> {
  const failures: { upstream: string; message: string }[] = []
  const onFailure = (message: unknown): void => {
    const { upstream: label, error } = message as { upstream: string; error: Error }
    failures.push({ upstream: label, message: error.message })
  }
  subscribe('socksmith:upstream:failure', onFailure)
  t.after(() => unsubscribe('socksmith:upstream:failure', onFailure))
  await assert.rejects(socksConnect({ host: '127.0.0.1', port: frontPort }, { host: '127.0.0.1', port: 9 }), (err: SocksError) => err.code === 'ERR_SOCKS_REPLY' && err.reply === 0x01)
  return failures
}

function serverTls(pki: TestPki, extra: TlsOptions = {}): TlsOptions {
  return { key: pki.server.key, cert: pki.server.cert, ...extra }
}

test('TLS upstreams: verified by CA, servername and pin; insecure only when written; client certificates', needs(openssl), async (t) => {
  const [pki, other] = await Promise.all([makeTestPki(t), makeTestPki(t, { name: 'some other CA' })])
  // A CA given as a path relative to the config folder (at.dir), as a config file would write it.
  writeFileSync(join(pki.dir, 'trusted-ca.pem'), pki.ca.cert)

  for (const kind of ['https', 'socks5s'] as const) {
    await t.test(`${kind}: a CONNECT through it reaches the echo server, bytes intact (ca as a file path)`, async (t) => {
      const up = await startTlsUpstream(t, kind, serverTls(pki))
      const front = await startFront(t, { proxy: { url: up.url, tls: { ca: join(pki.dir, 'trusted-ca.pem') } } })
      await echoThrough(t, front.port)
    })

    await t.test(`${kind}: a certificate from another CA is REP 01, and the failure names the upstream and UNABLE_TO_VERIFY_LEAF_SIGNATURE`, async (t) => {
      const up = await startTlsUpstream(t, kind, serverTls(pki))
      const front = await startFront(t, { proxy: { url: up.url, tls: { ca: other.ca.cert } } })
      const failures = await expectGeneralFailure(t, front.port)
      assert.equal(failures.length, 1, 'counted as an upstream failure')
      assert.equal(failures[0]!.upstream, up.url)
      assert.match(failures[0]!.message, new RegExp(`^TLS with upstream ${up.url.replace(/[/.]/g, '\\$&')} failed: UNABLE_TO_VERIFY_LEAF_SIGNATURE: `))
    })

    await t.test(`${kind}: without ca the default trust store applies, and a test CA is not in it (REP 01)`, async (t) => {
      const up = await startTlsUpstream(t, kind, serverTls(pki))
      const front = await startFront(t, { proxy: up.url })
      const failures = await expectGeneralFailure(t, front.port)
      assert.match(failures[0]!.message, /UNABLE_TO_VERIFY_LEAF_SIGNATURE/)
    })

    await t.test(`${kind}: a servername the certificate does not carry is REP 01; one it carries works`, async (t) => {
      const up = await startTlsUpstream(t, kind, serverTls(pki))
      const wrong = await startFront(t, { proxy: { url: up.url, tls: { ca: pki.ca.cert, servername: 'elsewhere.test' } } })
      const failures = await expectGeneralFailure(t, wrong.port)
      assert.match(failures[0]!.message, /ERR_TLS_CERT_ALTNAME_INVALID/)
      const right = await startFront(t, { proxy: { url: up.url, tls: { ca: pki.ca.cert, servername: 'localhost' } } })
      await echoThrough(t, right.port)
    })

    await t.test(`${kind}: a wrong pin is REP 01 even though the chain verifies; the right pin works`, async (t) => {
      const up = await startTlsUpstream(t, kind, serverTls(pki))
      const wrong = await startFront(t, { proxy: { url: up.url, tls: { ca: pki.ca.cert, pin: other.server.pin } } })
      const failures = await expectGeneralFailure(t, wrong.port)
      assert.match(failures[0]!.message, new RegExp(`ERR_TLS_PIN_MISMATCH: the certificate's public key is ${pki.server.pin.replace(/[/+]/g, '\\$&')}`))
      const right = await startFront(t, { proxy: { url: up.url, tls: { ca: pki.ca.cert, pin: [other.server.pin, pki.server.pin] } } })
      await echoThrough(t, right.port)
    })

    await t.test(`${kind}: insecure: true works with an unknown CA and logs a warning; a pin is still checked`, async (t) => {
      const up = await startTlsUpstream(t, kind, serverTls(pki))
      const front = await startFront(t, { proxy: { url: up.url, tls: { insecure: true } } })
      assert.deepEqual(front.warnings, [`upstream: proxy.tls: insecure: true: the certificate of ${up.url} is not verified; anyone on the path can pose as the proxy`])
      await echoThrough(t, front.port)
      const pinned = await startFront(t, { proxy: { url: up.url, tls: { insecure: true, pin: other.server.pin } } })
      const failures = await expectGeneralFailure(t, pinned.port)
      assert.match(failures[0]!.message, /ERR_TLS_PIN_MISMATCH/)
    })

    await t.test(`${kind}: a server that requires a client certificate refuses us without one (REP 01) and takes alice's`, async (t) => {
      const up = await startTlsUpstream(t, kind, serverTls(pki, { requestCert: true, rejectUnauthorized: true, ca: pki.ca.cert }))
      const without = await startFront(t, { proxy: { url: up.url, tls: { ca: pki.ca.cert } } })
      const failures = await expectGeneralFailure(t, without.port)
      // TLS 1.3 finishes the client's handshake before the server checks the client: the refusal
      // arrives as the server's alert on the first read, still a failure of the upstream.
      assert.match(failures[0]!.message, /CERTIFICATE_REQUIRED|certificate required/i)
      const withCert = await startFront(t, { proxy: { url: up.url, tls: { ca: pki.ca.cert, cert: pki.client.certFile, key: pki.client.keyFile } } })
      await echoThrough(t, withCert.port)
      assert.deepEqual(up.clientNames, ['alice'], 'only the connection with the certificate got through')
    })
  }

  await t.test('a pool fails over from a member whose certificate does not verify, and counts it once', async (t) => {
    const bad = await startTlsUpstream(t, 'socks5s', serverTls(other))
    const good = await startTlsUpstream(t, 'https', serverTls(pki))
    const tls = { ca: pki.ca.cert }
    const failures: string[] = []
    const onFailure = (message: unknown): void => void failures.push((message as { upstream: string }).upstream)
    subscribe('socksmith:upstream:failure', onFailure)
    t.after(() => unsubscribe('socksmith:upstream:failure', onFailure))
    const front = await startFront(t, { pool: [{ url: bad.url, tls }, { url: good.url, tls }] })
    await echoThrough(t, front.port)
    assert.deepEqual(failures, [bad.url])
  })

  await t.test('a chain of an HTTPS proxy and socks5hs:// inside it (TLS in TLS): the name goes to the last hop', async (t) => {
    const echo = await startEcho(t)
    const inner = await startSocks(t, { resolver: mapResolver({ 'echo.test': ['127.0.0.1'] }) })
    const terminator = await startTlsTerminator(t, inner.port, serverTls(pki))
    const https = await startHttpProxy(t, { tls: serverTls(pki), hosts: { localhost: '127.0.0.1' } })
    const tls = { ca: pki.ca.cert }
    const front = await startFront(t, { chain: [{ url: `https://127.0.0.1:${https.port}`, tls }, { url: `socks5hs://localhost:${terminator.port}`, tls }] })
    const { socket } = await socksConnect({ host: '127.0.0.1', port: front.port }, { host: 'echo.test', port: echo.port })
    trackClient(t, socket)
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.end('through two TLS hops')
    await once(socket, 'end')
    assert.equal(Buffer.concat(chunks).toString(), 'through two TLS hops')
    assert.deepEqual(https.requests, [`localhost:${terminator.port}`], 'the HTTPS proxy was asked for the second hop by name')
  })

  await t.test('socks5s://: UDP ASSOCIATE (control connection over TLS, datagrams in the clear) and BIND', async (t) => {
    const udpEcho = await startUdpEcho(t)
    const inner = await startSocks(t)
    const terminator = await startTlsTerminator(t, inner.port, serverTls(pki))
    const front = await startFront(t, { proxy: { url: `socks5s://127.0.0.1:${terminator.port}`, tls: { ca: pki.ca.cert } } })
    const association = await socksAssociate({ host: '127.0.0.1', port: front.port })
    t.after(() => association.close())
    association.send(Buffer.from('over udp'), { host: '127.0.0.1', port: udpEcho.port })
    const [data, from] = (await once(association, 'message')) as [Buffer, Address]
    assert.equal(data.toString(), 'over udp')
    assert.equal(from.port, udpEcho.port)
    assert.equal(inner.server.udpAssociations, 1, 'the association is the upstream socksmith\'s')
    association.close()

    const { socket, bound, accepted } = await socksBind({ host: '127.0.0.1', port: front.port }, { host: '127.0.0.1', port: 0 })
    trackClient(t, socket)
    const peerSocket: Socket = connect({ host: bound.host, port: bound.port })
    trackClient(t, peerSocket)
    await once(peerSocket, 'connect')
    assert.equal((await accepted).peer.port, peerSocket.localPort)
    peerSocket.end('from peer')
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    await once(socket, 'end')
    assert.equal(Buffer.concat(chunks).toString(), 'from peer')
    socket.end()
    await waitFor(() => front.server.connections === 0 && inner.server.connections === 0)
  })

  await t.test('a proxy that takes the TCP connection but never answers the TLS handshake fails at handshakeTimeout (REP 01)', async (t) => {
    const silent = await startTcpServer(t, (socket) => socket.resume())
    const front = await startFront(t, { proxy: { url: `socks5s://127.0.0.1:${silent.port}`, tls: { ca: pki.ca.cert } }, handshakeTimeout: 0.2 }, { connect: 5000 })
    const started = performance.now()
    const failures = await expectGeneralFailure(t, front.port)
    const took = performance.now() - started
    assert.ok(took >= 180 && took < 2000, `failed after ${Math.round(took)} ms, at handshakeTimeout`)
    assert.match(failures[0]!.message, /TLS with upstream socks5s:\/\/127\.0\.0\.1:\d+ failed: no answer within 200 ms \(handshakeTimeout\)/)
  })

  await t.test('a client key is never in an error message; a key that does not match its certificate fails at start', async (t) => {
    await assert.rejects(startFront(t, { proxy: { url: 'https://127.0.0.1:1', tls: { cert: pki.client.cert, key: other.client.key } } }), (err: SocksError) => {
      assert.equal(err.code, 'ERR_PLUGIN_OPTIONS')
      assert.match(err.message, /proxy\.tls: unusable TLS material/)
      assert.ok(!err.message.includes('PRIVATE KEY') && !err.message.includes(other.client.key.split('\n')[1]!), 'no key material in the message')
      return true
    })
    await assert.rejects(startFront(t, { proxy: { url: 'https://127.0.0.1:1', tls: { ca: join(pki.dir, 'missing.pem') } } }), /proxy\.tls\.ca: cannot read .*missing\.pem: ENOENT/)
  })
})

test('from a config file: ca relative to its folder, read again on reload; a TLS failure counts in socksmith_upstream_failures_total', needs(openssl), async (t) => {
  const [pki, other] = await Promise.all([makeTestPki(t), makeTestPki(t, { name: 'some other CA' })])
  const inner = await startSocks(t)
  const terminator = await startTlsTerminator(t, inner.port, serverTls(pki))
  const url = `socks5s://127.0.0.1:${terminator.port}`
  // The CA file says "other" first: every connection fails verification until a reload reads the right one.
  const dir = project(t, {
    'certs/ca.pem': other.ca.cert,
    'socksmith.config.yaml': `listen: { port: 0 }\nplugins:\n  - [upstream, { proxy: { url: "${url}", tls: { ca: ./certs/ca.pem, cert: ${JSON.stringify(pki.client.cert)}, key: ${JSON.stringify(pki.client.key)} } } }]\n`,
  })
  const loaded = await loadConfig({ cwd: dir })
  const printed = printableConfig(loaded).plugins as { options: { proxy: { tls: Record<string, string> } } }[]
  assert.equal(printed[0]!.options.proxy.tls.key, '********', '--print-config masks the key')
  const server = createServerFromConfig(loaded, { logger: silentLogger })
  t.after(() => server.close({ drainTimeout: 0 }))
  const { port } = await server.listen(loaded.config.listen[0])
  const metrics = await startMetrics(server, { port: 0 })
  t.after(() => metrics.close())
  await expectGeneralFailure(t, port)
  const text = await (await fetch(`http://127.0.0.1:${metrics.address()!.port}/metrics`)).text()
  assert.match(text, new RegExp(`^socksmith_upstream_failures_total\\{upstream="${url.replace(/[/.]/g, '\\$&')}"\\} 1$`, 'm'))

  write(dir, { 'certs/ca.pem': pki.ca.cert })
  await reloadFromConfig(server, loaded, { logger: silentLogger })
  await echoThrough(t, port)
  await waitFor(() => server.connections === 0)
})

test('TLS options are validated with field paths', () => {
  const fails = (options: unknown, pattern: RegExp): void => {
    assert.throws(() => upstream.parseOptions!(options, { plugin: 'upstream', dir: '/etc/socksmith', fail: (field, message) => { throw new SocksError('ERR_PLUGIN_OPTIONS', `${field}: ${message}`) } }), pattern)
  }
  fails({ proxy: { url: 'socks5://127.0.0.1:1', tls: {} } }, /proxy\.tls: applies to https:\/\/, socks5s:\/\/ and socks5hs:\/\/ upstreams only, not socks5:\/\//)
  fails({ proxy: { tls: {} } }, /proxy\.url: is required/)
  fails({ pool: ['socks5://127.0.0.1:1', { url: 'https://127.0.0.1:1', tls: { pin: 'sha1/abc' } }] }, /pool\[1\]\.tls\.pin: must be sha256\/<base64/)
  fails({ chain: [{ url: 'https://127.0.0.1:1', tls: { cert: './c.pem' } }] }, /chain\[0\]\.tls\.key: is needed too/)
  fails({ proxy: { url: 'https://127.0.0.1:1', tls: { insecure: 'yes' } } }, /proxy\.tls\.insecure: must be true or false, found "yes"/)
  fails({ proxy: { url: 'https://127.0.0.1:1', tls: { insecure: true, ca: './ca.pem' } } }, /proxy\.tls\.ca: has nothing to do with insecure: true/)
  fails({ proxy: { url: 'https://127.0.0.1:1', tls: { servername: '10.0.0.1' } } }, /proxy\.tls\.servername: must be a host name, not an IP address/)
  fails({ proxy: { url: 'https://127.0.0.1:1', tls: { key: 12345, cert: './c.pem' } } }, /proxy\.tls\.key: must be a file path or PEM text, found a number/)
  fails({ proxy: { url: 'https://127.0.0.1:1', tls: { cafile: './ca.pem' } } }, /cafile: unknown key/)
  const config = upstream.parseOptions!({ proxy: { url: 'socks5hs://proxy.test', tls: { ca: 'ca.pem', pin: 'sha256/' + 'A'.repeat(43) + '=' } } }, { plugin: 'upstream', dir: '/etc/socksmith', fail: (field, message) => { throw new Error(`${field}: ${message}`) } })
  assert.ok(config.target !== null && config.target.kind === 'chain')
  const hop = config.target.hops[0]!
  assert.deepEqual(hop.tls?.ca, [{ file: '/etc/socksmith/ca.pem', field: 'proxy.tls.ca' }], 'a relative path is resolved against the config folder')
  assert.equal(hop.endpoint.port, 1080)
  assert.equal(parseProxyUrl('https://proxy.test').port, 443)
  assert.ok(parseProxyUrl('socks5s://proxy.test').tls !== null && parseProxyUrl('socks5://proxy.test').tls === null)
})
