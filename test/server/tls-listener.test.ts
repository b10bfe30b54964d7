// TLS listeners (ListenOptions.tls): SOCKS over TLS (our own upstream plugin's socks5s:// as the
// client), an HTTPS proxy (curl --proxy https://), handshake failures and silent clients closed and
// never leaked, certificates swapped by reload() while an old tunnel keeps moving bytes, and the
// client certificate on ctx.tls. Certificates come from openssl at test time (helpers/pki.ts).
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { createServer, isSocksError, loadConfig, type ConnectionContext, type ListenTlsOptions, type ServerOptions, type SocksServer, type TlsInfo } from 'socksmith'
import { socksConnect } from 'socksmith/client'
import { createServerFromConfig, reloadFromConfig } from 'socksmith/config'
import { silentLogger } from 'socksmith/ops'
import auth from 'socksmith/plugins/auth'
import upstream from 'socksmith/plugins/upstream'
import rules from 'socksmith/plugins/rules'
import { closeAfter, RawClient, startEcho, startSocks, trackClient, waitFor } from '../helpers/net.js'
import { makeTestPki, type TestPki } from '../helpers/pki.js'
import { needs, peer } from '../helpers/peers.js'
import { run, startHttp } from '../helpers/processes.js'
import { tempDir } from '../helpers/spawn.js'
import { parseAltNames } from '../../src/core/tls-listener.js'
import { certificateUserOf } from '../../plugins/auth/certificate-user.js'

const openssl = peer('openssl')
const curl = peer('curl')

const serverTls = (pki: TestPki, extra: Partial<ListenTlsOptions> = {}): ListenTlsOptions => ({ cert: pki.server.certFile, key: pki.server.keyFile, ...extra })

async function startTls(t: TestContext, tls: ListenTlsOptions, protocols: ('socks5' | 'mixed')[] = ['socks5'], options: ServerOptions = {}, configure?: (server: SocksServer) => void) {
  const server = createServer({ logger: silentLogger, ...options })
  configure?.(server)
  const ended: ConnectionContext[] = []
  server.on('disconnect', (ctx) => ended.push(ctx))
  const { port } = await server.listen({ host: '127.0.0.1', port: 0, protocols, tls })
  closeAfter(t, server)
  return { server, port, ended }
}

/** A TLS client to the listener, its handshake done. */
async function tlsClient(t: TestContext, port: number, ca: string, extra: { cert?: string; key?: string; servername?: string } = {}): Promise<TLSSocket> {
  const socket = tlsConnect({ host: '127.0.0.1', port, ca, ...extra })
  trackClient(t, socket)
  await once(socket, 'secureConnect')
  return socket
}

/** SOCKS5 NO AUTH + CONNECT 127.0.0.1:port over `socket`; resolves with the REP byte. */
async function socksOver(socket: TLSSocket, port: number): Promise<number> {
  const reply: Buffer[] = []
  socket.write(Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 255]))
  let got = Buffer.alloc(0)
  while (got.length < 12) {
    const [chunk] = (await once(socket, 'data')) as [Buffer]
    reply.push(chunk)
    got = Buffer.concat(reply)
  }
  assert.deepEqual([...got.subarray(0, 2)], [5, 0], 'NO AUTH selected')
  return got[3]!
}

test('TLS listeners', needs(openssl), async (t) => {
  const pki = await makeTestPki(t)

  await t.test('SOCKS over TLS: socks5s:// from a second socksmith reaches an echo server; a client with a wrong CA gets REP 01', async (t) => {
    const echo = await startEcho(t)
    const { server, port } = await startTls(t, serverTls(pki))
    const front = await startSocks(t, {}, (s) => s.register(upstream, { proxy: { url: `socks5s://127.0.0.1:${port}`, tls: { ca: pki.ca.cert } } }))
    const { socket } = await socksConnect({ host: '127.0.0.1', port: front.port }, { host: '127.0.0.1', port: echo.port })
    trackClient(t, socket)
    const payload = Buffer.alloc(256 * 1024, 7)
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.end(payload)
    await once(socket, 'end')
    assert.ok(Buffer.concat(chunks).equals(payload), 'every byte back through the TLS hop, after the half-close (the stream relay path)')

    const other = await makeTestPki(t, { name: 'another CA' })
    const wrong = await startSocks(t, {}, (s) => s.register(upstream, { proxy: { url: `socks5s://127.0.0.1:${port}`, tls: { ca: other.ca.cert } } }))
    const client = await RawClient.connect(t, wrong.port)
    client.send('050100').send('05010001 7f000001' + echo.port.toString(16).padStart(4, '0'))
    assert.deepEqual([...(await client.read(2))], [5, 0])
    assert.equal((await client.read(10))[1], 0x01, 'REP 01: the upstream failed its TLS check')
    await waitFor(() => server.connections === 0 && front.server.connections === 0)
  })

  await t.test('a plain-text client on a TLS port is closed; a client that never sends a ClientHello is closed by the handshake timeout; nothing leaks', async (t) => {
    const { server, port } = await startTls(t, serverTls(pki), ['socks5'], { timeouts: { handshake: 150 } })
    const plain = await RawClient.connect(t, port)
    plain.send('050100')
    const silent = await RawClient.connect(t, port)
    const started = Date.now()
    await plain.expectClose()
    await silent.expectClose()
    assert.ok(Date.now() - started >= 100, 'the silent client was held until the deadline')
    await waitFor(() => server.connections === 0)
    // And the listener still serves a real client.
    const echo = await startEcho(t)
    const socket = await tlsClient(t, port, pki.ca.cert, { servername: 'localhost' })
    assert.equal(await socksOver(socket, echo.port), 0)
    socket.destroy()
    await waitFor(() => server.connections === 0)
  })

  await t.test('HTTPS proxy: curl --proxy https:// with --proxy-user through a mixed listener with auth (tunnelled and forwarded); a wrong CA fails at curl; nothing leaks', needs(curl), async (t) => {
    const web = await startHttp(t)
    const { server, port, ended } = await startTls(t, serverTls(pki), ['mixed'], {}, (s) => s.register(auth, { users: { alice: 'wonderland' } }))
    const ok = await run(curl.path, ['-sS', '--max-time', '5', '--proxy', `https://127.0.0.1:${port}`, '--proxy-cacert', pki.ca.certFile, '--proxy-user', 'alice:wonderland', '-p', `http://127.0.0.1:${web.port}/via-https-proxy`])
    assert.equal(ok.code, 0, ok.stderr)
    assert.equal(ok.stdout, 'hello /via-https-proxy')
    await waitFor(() => ended.length === 1)
    assert.equal(ended[0]!.protocol, 'http')
    assert.equal(ended[0]!.user, 'alice')
    assert.equal(ended[0]!.tls?.protocol, 'TLSv1.3')
    const other = await makeTestPki(t, { name: 'another CA' })
    const bad = await run(curl.path, ['-sS', '--max-time', '5', '--proxy', `https://127.0.0.1:${port}`, '--proxy-cacert', other.ca.certFile, '--proxy-user', 'alice:wonderland', '-p', `http://127.0.0.1:${web.port}/`])
    assert.equal(bad.code, 60, `curl: the proxy's certificate does not verify (${bad.stderr})`)
    // Without -p: plain forwarding over the TLS connection, credentials and all encrypted.
    const forwarded = await run(curl.path, ['-sS', '--max-time', '5', '--proxy', `https://127.0.0.1:${port}`, '--proxy-cacert', pki.ca.certFile, '--proxy-user', 'alice:wonderland', `http://127.0.0.1:${web.port}/forwarded-over-tls`])
    assert.equal(forwarded.stdout, 'hello /forwarded-over-tls', forwarded.stderr)
    await waitFor(() => ended.some((ctx) => ctx.exchange !== null && ctx.user === 'alice' && ctx.tls?.protocol === 'TLSv1.3'))
    await waitFor(() => server.connections === 0)
    assert.equal(web.requests(), 2)
  })

  await t.test('reload(): a changed certificate reaches new clients; an old tunnel keeps moving bytes', async (t) => {
    const other = await makeTestPki(t, { name: 'the next CA' })
    const dir = tempDir(t)
    const cert = join(dir, 'proxy.pem')
    const key = join(dir, 'proxy.key')
    copyFileSync(pki.server.certFile, cert)
    copyFileSync(pki.server.keyFile, key)
    const echo = await startEcho(t)
    const { server, port } = await startTls(t, { cert, key })
    const old = await tlsClient(t, port, pki.ca.cert, { servername: 'localhost' })
    assert.equal(await socksOver(old, echo.port), 0)
    copyFileSync(other.server.certFile, cert)
    copyFileSync(other.server.keyFile, key)
    await server.reload(createServer({ logger: silentLogger }))
    const fresh = await tlsClient(t, port, other.ca.cert, { servername: 'localhost' })
    assert.equal(fresh.getPeerCertificate().fingerprint256, tlsFingerprint(other.server.cert))
    assert.equal(await socksOver(fresh, echo.port), 0)
    old.write('still here')
    const [back] = (await once(old, 'data')) as [Buffer]
    assert.equal(back.toString(), 'still here')
    assert.equal(old.getPeerCertificate().fingerprint256, tlsFingerprint(pki.server.cert))
    // A reload with the files unchanged changes nothing; a broken key fails it and keeps the running certificate.
    await server.reload(createServer({ logger: silentLogger }))
    copyFileSync(pki.server.keyFile, key)
    await assert.rejects(server.reload(createServer({ logger: silentLogger })), /tls\.key: does not match cert/)
    const after = await tlsClient(t, port, other.ca.cert, { servername: 'localhost' })
    after.destroy()
    old.destroy()
    fresh.destroy()
    await waitFor(() => server.connections === 0)
  })

  await t.test('requestCert: a verified client certificate is on ctx.tls (CN, SANs); a client without one fails the TLS handshake', async (t) => {
    const echo = await startEcho(t)
    const seen: (TlsInfo | null)[] = []
    const { server, port } = await startTls(t, serverTls(pki, { ca: pki.ca.certFile, requestCert: true }), ['socks5'], {}, (s) => {
      s.use('negotiate', async function recordTls(ctx, next) {
        seen.push(ctx.tls)
        await next()
      })
    })
    const socket = await tlsClient(t, port, pki.ca.cert, { cert: pki.client.cert, key: pki.client.key, servername: 'localhost' })
    assert.equal(await socksOver(socket, echo.port), 0)
    assert.equal(seen[0]?.authorized, true)
    assert.equal(seen[0]?.commonName, 'alice')
    assert.equal(seen[0]?.servername, 'localhost')
    socket.destroy()
    const bare = tlsConnect({ host: '127.0.0.1', port, ca: pki.ca.cert, servername: 'localhost' })
    trackClient(t, bare)
    const [err] = (await once(bare, 'error')) as [NodeJS.ErrnoException]
    assert.match(err.code ?? '', /CERTIFICATE_REQUIRED|ECONNRESET/)
    await waitFor(() => server.connections === 0)
    assert.equal(seen.length, 1, 'the client without a certificate never reached a phase')
  })

  await t.test('auth certificateUser: a verified certificate with CN=alice gets alice\'s rules without a password (SOCKS5 NO AUTH, HTTP CONNECT without Proxy-Authorization); a password still wins; a CN that is no user is refused', async (t) => {
    const echo = await startEcho(t)
    const tls = serverTls(pki, { ca: pki.ca.certFile, requestCert: true })
    const { server, port, ended } = await startTls(t, tls, ['mixed'], {}, (s) => {
      s.register(auth, { users: { alice: 'wonderland', bob: 'builder' }, certificateUser: 'cn' })
      s.register(rules, { default: 'deny', rules: [{ action: 'allow', users: 'alice', ports: [echo.port] }] })
    })
    const mine = { cert: pki.client.cert, key: pki.client.key, servername: 'localhost' }
    const socks = await tlsClient(t, port, pki.ca.cert, mine)
    assert.equal(await socksOver(socks, echo.port), 0, 'alice, by her certificate, may reach the echo port')
    socks.write('ping')
    const [pong] = (await once(socks, 'data')) as [Buffer]
    assert.equal(pong.toString(), 'ping')
    socks.destroy()

    const http = await tlsClient(t, port, pki.ca.cert, mine)
    http.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\n\r\n`)
    const [head] = (await once(http, 'data')) as [Buffer]
    assert.match(head.toString(), /^HTTP\/1\.1 200 /)
    http.destroy()

    // With a password for bob, the password decides: bob is not allowed there (REP 02).
    const asBob = await tlsClient(t, port, pki.ca.cert, mine)
    asBob.write(Buffer.from([5, 1, 2]))
    await once(asBob, 'data')
    asBob.write(Buffer.concat([Buffer.from([1, 3]), Buffer.from('bob'), Buffer.from([7]), Buffer.from('builder')]))
    await once(asBob, 'data')
    asBob.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, echo.port >> 8, echo.port & 255]))
    const [refused] = (await once(asBob, 'data')) as [Buffer]
    assert.equal(refused[1], 0x02)
    asBob.destroy()
    await waitFor(() => ended.length === 3 && server.connections === 0)
    assert.deepEqual(ended.map((ctx) => ctx.user).sort(), ['alice', 'alice', 'bob'])

    // A server whose users do not include the certificate's CN: NO AUTH alone is refused (05 FF).
    const other = await startTls(t, tls, ['socks5'], {}, (s) => s.register(auth, { users: { bob: 'builder' }, certificateUser: 'cn' }))
    const stranger = await tlsClient(t, other.port, pki.ca.cert, mine)
    stranger.write(Buffer.from([5, 1, 0]))
    const [noMethod] = (await once(stranger, 'data')) as [Buffer]
    assert.deepEqual([...noMethod], [5, 0xff])
    stranger.destroy()
  })

  await t.test('config: listen[].tls with paths relative to the config file; a missing or bad file fails the load naming the field; reloadFromConfig swaps a changed certificate', async (t) => {
    const other = await makeTestPki(t, { name: 'the next CA' })
    const dir = tempDir(t)
    mkdirSync(join(dir, 'certs'))
    copyFileSync(pki.server.certFile, join(dir, 'certs', 'proxy.pem'))
    copyFileSync(pki.server.keyFile, join(dir, 'certs', 'proxy.key'))
    const file = join(dir, 'socksmith.config.yaml')
    writeFileSync(file, 'listen:\n  - { host: 127.0.0.1, port: 0, protocols: [mixed], tls: { cert: certs/proxy.pem, key: certs/proxy.key } }\n')
    const loaded = await loadConfig({ file })
    assert.equal(loaded.config.listen[0]!.tls?.cert, join(dir, 'certs', 'proxy.pem'))
    const server = createServerFromConfig(loaded, { logger: silentLogger })
    closeAfter(t, server)
    const { port } = await server.listen(loaded.config.listen[0]!)
    const first = await tlsClient(t, port, pki.ca.cert, { servername: 'localhost' })
    first.destroy()
    copyFileSync(other.server.certFile, join(dir, 'certs', 'proxy.pem'))
    copyFileSync(other.server.keyFile, join(dir, 'certs', 'proxy.key'))
    const result = await reloadFromConfig(server, loaded, { logger: silentLogger })
    assert.deepEqual(result.needsRestart, [])
    const second = await tlsClient(t, port, other.ca.cert, { servername: 'localhost' })
    assert.equal(second.getPeerCertificate().fingerprint256, tlsFingerprint(other.server.cert))
    second.destroy()

    const broken = async (tls: string): Promise<string> => {
      writeFileSync(file, `listen: [{ port: 0, tls: ${tls} }]\n`)
      const err = await loadConfig({ file }).then(() => null, (e: unknown) => e)
      assert.ok(isSocksError(err), 'rejected')
      return err.message
    }
    assert.match(await broken('{ cert: certs/missing.pem, key: certs/proxy.key }'), /listen\[0\]\.tls\.cert: cannot read .*certs\/missing\.pem \(ENOENT\)/)
    assert.match(await broken(`{ cert: certs/proxy.pem, key: ${pki.client.keyFile} }`), /listen\[0\]\.tls\.key: does not match cert/)
    assert.match(await broken('{ cert: certs/proxy.pem, key: certs/proxy.key, requestCert: true }'), /listen\[0\]\.tls\.requestCert: needs ca/)
    assert.match(await broken('{ cert: certs/proxy.pem, key: certs/proxy.key, sni: { "a.example": { cert: certs/nope.pem, key: certs/proxy.key } } }'), /listen\[0\]\.tls\.sni\["a\.example"\]\.cert: cannot read/)
    assert.match(await broken('{ cert: certs/proxy.pem, key: certs/proxy.key, requestCrt: true }'), /listen\[0\]\.tls\.requestCrt: unknown key.*did you mean "requestCert"/)
  })

  await t.test('sni: a listed name (and a *. wildcard) gets its own certificate, any other name the default', async (t) => {
    const other = await makeTestPki(t, { name: 'the SNI CA' })
    const { port } = await startTls(t, serverTls(pki, { sni: { 'alt.example': { cert: other.server.certFile, key: other.server.keyFile }, '*.wild.example': { cert: other.server.certFile, key: other.server.keyFile } } }))
    const seen = async (servername: string): Promise<string> => {
      const socket = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false })
      trackClient(t, socket)
      await once(socket, 'secureConnect')
      const fingerprint = socket.getPeerCertificate().fingerprint256
      socket.destroy()
      return fingerprint
    }
    assert.equal(await seen('alt.example'), tlsFingerprint(other.server.cert))
    assert.equal(await seen('ALT.example'), tlsFingerprint(other.server.cert))
    assert.equal(await seen('a.wild.example'), tlsFingerprint(other.server.cert))
    assert.equal(await seen('a.b.wild.example'), tlsFingerprint(pki.server.cert), 'a wildcard stands for one label')
    assert.equal(await seen('localhost'), tlsFingerprint(pki.server.cert))
  })

  await t.test('listen() names the field of a missing or bad file, and refuses tls with proxyProtocol', async () => {
    const server = createServer({ logger: silentLogger })
    await assert.rejects(server.listen({ port: 0, tls: { cert: '/nonexistent/cert.pem', key: pki.server.keyFile } }), /listen: tls\.cert: cannot read \/nonexistent\/cert\.pem \(ENOENT\)/)
    await assert.rejects(server.listen({ port: 0, tls: { cert: pki.server.certFile, key: pki.client.keyFile } }), /listen: tls\.key: does not match cert/)
    await assert.rejects(server.listen({ port: 0, tls: { cert: pki.server.certFile, key: pki.server.keyFile, requestCert: true } }), /listen: tls\.requestCert: needs ca/)
    await assert.rejects(server.listen({ port: 0, proxyProtocol: true, tls: serverTls(pki) }), /tls and proxyProtocol together are not supported/)
    await server.close()
  })
})

function tlsFingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256
}

test('subjectAltName parsing and the certificateUser name pick (cn, san), only for verified certificates; the option is checked', () => {
  assert.deepEqual(parseAltNames('DNS:alice.example, email:"a, b@example.com", IP Address:127.0.0.1'), ['DNS:alice.example', 'email:a, b@example.com', 'IP Address:127.0.0.1'])
  assert.deepEqual(parseAltNames(undefined), [])
  const known = new Set(['alice', 'bob@example.com'])
  const info = (authorized: boolean, commonName: string | null, altNames: string[]): TlsInfo => ({ protocol: 'TLSv1.3', servername: null, authorized, commonName, altNames })
  assert.equal(certificateUserOf(info(true, 'alice', []), 'cn', known), 'alice')
  assert.equal(certificateUserOf(info(false, 'alice', []), 'cn', known), null, 'an unverified certificate names nobody')
  assert.equal(certificateUserOf(info(true, 'mallory', []), 'cn', known), null)
  assert.equal(certificateUserOf(info(true, 'alice', ['IP Address:127.0.0.1', 'email:bob@example.com']), 'san', known), 'bob@example.com')
  assert.equal(certificateUserOf(null, 'san', known), null)
  const server = createServer({ logger: silentLogger })
  assert.throws(() => server.register(auth, { users: { alice: 'x' }, certificateUser: 'subject' as 'cn' }), /certificateUser: must be "cn", "san" or false/)
})
