// The HTTP proxy front (listener protocols http / mixed): CONNECT through the same phases as SOCKS
// (Basic credentials through the auth plugin, rules, the relay), refusals as statuses (407 with
// Proxy-Authenticate, 403, 502), node's parser for the request (a request written a byte at a
// time, an oversized head is 431, garbage is 400), nothing left behind; SOCKS5 and SOCKS4 on the
// same port; real clients (curl -p -x, proxychains4 with an http entry).
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { isSocksError, type ServerOptions, type SocksServer } from 'socksmith'
import { silentLogger } from 'socksmith/ops'
import auth from 'socksmith/plugins/auth'
import rules from 'socksmith/plugins/rules'
import { RawClient, startListening, freePort, hex, ipv4Request, startEcho, waitFor } from '../helpers/net.js'
import { run, startHttp } from '../helpers/processes.js'
import { needs, peer } from '../helpers/peers.js'
import { tempDir } from '../helpers/spawn.js'

const curl = peer('curl')
const proxychains = peer('proxychains4')

function startMixed(t: TestContext, options: ServerOptions = {}, configure?: (server: SocksServer) => void) {
  return startListening(t, ['mixed'], options, configure)
}

function withAuth(server: SocksServer): void {
  server.register(auth, { users: { alice: 'wonderland' } })
}

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

/** Sends a CONNECT and reads the response head (and what came with it). */
async function connectRequest(t: TestContext, port: number, target: string, headers: Record<string, string> = {}): Promise<{ client: RawClient; head: string }> {
  const client = await RawClient.connect(t, port)
  client.send(Buffer.from(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`))
  let head = ''
  while (!head.includes('\r\n\r\n')) head += (await client.read(1)).toString('latin1')
  return { client, head }
}

test('CONNECT with Basic credentials opens a tunnel; what follows the head is relayed; the access fields say http', async (t) => {
  const echo = await startEcho(t)
  const { port, ended } = await startMixed(t, {}, withAuth)
  const client = await RawClient.connect(t, port)
  // The head and the first tunnel bytes in one write.
  client.send(Buffer.from(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\nProxy-Authorization: ${basic('alice', 'wonderland')}\r\n\r\nearly bytes`))
  assert.equal((await client.read(39)).toString(), 'HTTP/1.1 200 Connection established\r\n\r\n')
  assert.equal((await client.read(11)).toString(), 'early bytes')
  client.send(Buffer.from('more'))
  assert.equal((await client.read(4)).toString(), 'more')
  client.socket.end()
  await waitFor(() => ended.length === 1)
  assert.equal(ended[0]!.protocol, 'http')
  assert.equal(ended[0]!.user, 'alice')
  assert.equal(ended[0]!.bytesFromClient, 15)
})

test('refusals are statuses: 407 (with Proxy-Authenticate) without or with wrong credentials, 403 for a rule, 502 for a refused port, 400 for a bad target', async (t) => {
  const echo = await startEcho(t)
  const refused = await freePort()
  const { port } = await startMixed(t, {}, (server) => {
    withAuth(server)
    server.register(rules, { rules: [{ action: 'deny', ports: echo.port }] })
  })
  const cases: [string, Record<string, string>, RegExp][] = [
    [`127.0.0.1:${refused}`, {}, /^HTTP\/1\.1 407 [^\r]*\r\n[^]*Proxy-Authenticate: Basic realm="socksmith"\r\n/],
    [`127.0.0.1:${refused}`, { 'Proxy-Authorization': basic('alice', 'wrong') }, /^HTTP\/1\.1 407 /],
    [`127.0.0.1:${echo.port}`, { 'Proxy-Authorization': basic('alice', 'wonderland') }, /^HTTP\/1\.1 403 /],
    [`127.0.0.1:${refused}`, { 'Proxy-Authorization': basic('alice', 'wonderland') }, /^HTTP\/1\.1 502 /],
    ['no-port-here', { 'Proxy-Authorization': basic('alice', 'wonderland') }, /^HTTP\/1\.1 400 /],
  ]
  for (const [target, headers, expected] of cases) {
    const { client, head } = await connectRequest(t, port, target, headers)
    assert.match(head, expected, `${target} ${JSON.stringify(headers)}`)
    assert.match(head, /Connection: close/)
    await client.expectClose()
    client.socket.destroy()
  }
})

test("node's parser: a CONNECT written a byte at a time works; an oversized head is 431, garbage 400, and nothing is left behind", async (t) => {
  const echo = await startEcho(t)
  const { port } = await startMixed(t)
  const slow = await RawClient.connect(t, port)
  for (const byte of Buffer.from(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\n\r\n`)) {
    slow.send([byte])
    await new Promise((resolve) => setImmediate(resolve))
  }
  assert.match((await slow.read(39)).toString(), /^HTTP\/1\.1 200 /)
  slow.socket.destroy()
  const big = await RawClient.connect(t, port)
  big.send(Buffer.from(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`))
  assert.match((await big.expectClose()).toString(), /^HTTP\/1\.1 431 /)
  big.socket.destroy()
  const garbage = await RawClient.connect(t, port)
  garbage.send(Buffer.from('\x01\x02 not http at all\r\n\r\n'))
  assert.match((await garbage.expectClose()).toString(), /^HTTP\/1\.1 400 /)
  garbage.socket.destroy()
  for (let i = 0; i < 20; i++) {
    const fuzz = await RawClient.connect(t, port)
    const bytes = randomBytes(1 + (i * 37) % 300)
    bytes[0] = 0x41 + (i % 26) // not 04/05: the HTTP front
    fuzz.send(bytes)
    fuzz.socket.end()
    await fuzz.expectClose().catch(() => {})
    fuzz.socket.destroy()
  }
})

test('credentials sent to a server that needs none are no obstacle; an Upgrade request is answered 501 and an unknown Expect 417, not left hanging', async (t) => {
  const echo = await startEcho(t)
  const { port } = await startMixed(t)
  const { client, head } = await connectRequest(t, port, `127.0.0.1:${echo.port}`, { 'Proxy-Authorization': basic('anyone', 'anything') })
  assert.match(head, /^HTTP\/1\.1 200 /)
  client.socket.end()
  const upgrade = await RawClient.connect(t, port)
  upgrade.send(Buffer.from('GET http://127.0.0.1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'))
  assert.match((await upgrade.expectClose(2000)).toString(), /^HTTP\/1\.1 501 /)
  upgrade.socket.destroy()
  const expect = await RawClient.connect(t, port)
  expect.send(Buffer.from('PUT http://127.0.0.1/x HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: something-else\r\nContent-Length: 0\r\n\r\n'))
  assert.match((await expect.expectClose(2000)).toString(), /^HTTP\/1\.1 417 /)
  expect.socket.destroy()
})

test('one port, three protocols: HTTP CONNECT, SOCKS5 and SOCKS4 at the same time, and a plain HTTP request forwarded beside them', async (t) => {
  const echo = await startEcho(t)
  const { port } = await startMixed(t)
  const http = await connectRequest(t, port, `127.0.0.1:${echo.port}`)
  const five = await RawClient.connect(t, port)
  five.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', echo.port)]))
  const four = await RawClient.connect(t, port)
  four.send(Buffer.concat([hex('0401'), Buffer.from([echo.port >> 8, echo.port & 255]), hex('7f00000100')]))
  assert.match(http.head, /^HTTP\/1\.1 200 /)
  assert.deepEqual(await five.read(2), hex('0500'))
  assert.equal((await five.read(10))[1], 0)
  assert.equal((await four.read(8))[1], 90)
  // And a plain request forwarded while the three tunnels are open.
  const web = await startHttp(t)
  const plain = await RawClient.connect(t, port)
  plain.send(Buffer.from(`GET http://127.0.0.1:${web.port}/plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`))
  assert.match((await plain.expectClose()).toString(), /^HTTP\/1\.1 200 [^]*\r\n\r\nhello \/plain$/)
  for (const [client, text] of [[http.client, 'h'], [five, 'five'], [four, 'four']] as const) {
    client.send(Buffer.from(text))
    assert.equal((await client.read(text.length)).toString(), text)
    client.socket.end()
  }
})

test('curl -p -x http://user:pass@ tunnels, and gets 407 with a wrong password', needs(curl), async (t) => {
  const web = await startHttp(t)
  const { port } = await startMixed(t, {}, withAuth)
  const ok = await run(curl.path, ['-sS', '--max-time', '10', '-p', '-x', `http://alice:wonderland@127.0.0.1:${port}`, `http://127.0.0.1:${web.port}/tunnel`])
  assert.equal(ok.stdout, 'hello /tunnel', ok.stderr)
  const bad = await run(curl.path, ['-sS', '--max-time', '10', '-p', '-x', `http://alice:nope@127.0.0.1:${port}`, `http://127.0.0.1:${web.port}/x`])
  assert.match(bad.stderr, /407/)
})

test('proxychains4 with an http entry tunnels through CONNECT', needs(proxychains, curl), async (t) => {
  const web = await startHttp(t)
  const { port } = await startMixed(t)
  const conf = join(tempDir(t), 'proxychains.conf')
  writeFileSync(conf, `strict_chain\nquiet_mode\ntcp_read_time_out 5000\ntcp_connect_time_out 5000\n[ProxyList]\nhttp 127.0.0.1 ${port}\n`)
  const r = await run(proxychains.path, ['-q', '-f', conf, curl.path, '-sS', '--max-time', '10', `http://127.0.0.1:${web.port}/pc-http`])
  assert.equal(r.stdout, 'hello /pc-http', r.stderr)
})

test("undici's ProxyAgent (fetch through the proxy, Basic credentials in the proxy URL) and https-proxy-agent tunnel through CONNECT", async (t) => {
  const web = await startHttp(t)
  const { port, ended } = await startMixed(t, {}, withAuth)
  const { ProxyAgent, fetch } = await import('undici')
  const dispatcher = new ProxyAgent(`http://alice:wonderland@127.0.0.1:${port}`)
  t.after(() => dispatcher.close())
  const response = await fetch(`http://127.0.0.1:${web.port}/undici`, { dispatcher })
  assert.equal(await response.text(), 'hello /undici')
  const denied = new ProxyAgent(`http://alice:wrong@127.0.0.1:${port}`)
  t.after(() => denied.close())
  // undici reports the refused tunnel as a fetch failure; the server says why it refused.
  await assert.rejects(fetch(`http://127.0.0.1:${web.port}/no`, { dispatcher: denied }))
  await waitFor(() => ended.some((ctx) => isSocksError(ctx.error) && ctx.error.code === 'ERR_SOCKS_AUTH_FAILED'))
  const { HttpsProxyAgent } = await import('https-proxy-agent')
  const { get } = await import('node:http')
  const agent = new HttpsProxyAgent(`http://alice:wonderland@127.0.0.1:${port}`)
  t.after(() => agent.destroy())
  const body = await new Promise<string>((resolve, reject) => {
    get(`http://127.0.0.1:${web.port}/agent`, { agent }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
      res.on('end', () => resolve(text))
    }).on('error', reject)
  })
  assert.equal(body, 'hello /agent')
  await waitFor(() => ended.some((ctx) => ctx.user === 'alice' && ctx.replied))
})

test('a middleware that hijacks an HTTP CONNECT gets the bytes that came after the head', async (t) => {
  const { port } = await startMixed(t, {}, (server) =>
    server.use('connect', async function answerItself(ctx) {
      const socket = ctx.hijack()
      socket.write('HTTP/1.1 200 Connection established\r\n\r\n')
      socket.on('data', (chunk: Buffer) => socket.write(chunk.toString().toUpperCase()))
      socket.on('end', () => socket.end())
      socket.resume()
    }),
  )
  const client = await RawClient.connect(t, port)
  client.send(Buffer.from('CONNECT 127.0.0.1:9 HTTP/1.1\r\n\r\nfirst bytes'))
  assert.equal((await client.read(39)).toString(), 'HTTP/1.1 200 Connection established\r\n\r\n')
  assert.equal((await client.read(11)).toString(), 'FIRST BYTES')
  client.socket.end()
  await client.expectClose()
})
