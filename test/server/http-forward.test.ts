// Plain HTTP forwarding on http/mixed listeners (issue 16, item 2): each absolute-URI request goes
// through the phases as a connection of its own (auth, rules, DNS, refusal statuses, its own
// access fields), keep-alive routes every request by its own URL, bodies stream both ways,
// hop-by-hop headers are stripped, Via/X-Forwarded-For only when configured, and nothing is left
// behind when a client or an origin leaves half-way. Real clients: curl, node's http client,
// headless Chromium.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer as createHttpServer, request as httpRequest, Agent, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { createServer, isSocksError, TokenBucket, type ConnectionContext, type ServerOptions, type SocksServer } from 'socksmith'
import { accessFields, silentLogger } from 'socksmith/ops'
import auth from 'socksmith/plugins/auth'
import rules from 'socksmith/plugins/rules'
import { closeAfter, freePort, mapResolver, RawClient, waitFor } from '../helpers/net.js'
import { run } from '../helpers/processes.js'
import { needs, peer } from '../helpers/peers.js'

const curl = peer('curl')
const chromium = peer('chromium')

interface Seen {
  method: string
  url: string
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  body: Buffer
}

/** An origin on `host` that records each request and answers `hello from <host> <url>` (or what `handle` does). */
async function startOrigin(t: TestContext, host = '127.0.0.1', handle?: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void) {
  const seen: Seen[] = []
  const sockets = new Set<Socket>()
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body })
      if (handle !== undefined) return handle(req, res, body)
      const text = `hello from ${host} ${req.url}`
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(text), 'X-Origin': host })
      res.end(text)
    })
  })
  let accepted = 0
  server.on('connection', (socket: Socket) => {
    accepted++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.listen(0, host)
  await once(server, 'listening')
  t.after(() => {
    server.closeAllConnections()
    server.close()
  })
  return { port: (server.address() as AddressInfo).port, host, seen, open: () => sockets.size, accepted: () => accepted }
}

/** A server whose listener takes every protocol, with `http` options, recording ended connections. */
async function startProxy(t: TestContext, options: ServerOptions = {}, configure?: (server: SocksServer) => void, http?: { via?: boolean | string; forwardedFor?: boolean }) {
  const server = createServer({ logger: silentLogger, ...options })
  configure?.(server)
  const ended: ConnectionContext[] = []
  server.on('disconnect', (ctx) => ended.push(ctx))
  const { port } = await server.listen({ host: '127.0.0.1', port: 0, protocols: ['mixed'], ...(http === undefined ? {} : { http }) })
  closeAfter(t, server)
  return { server, port, ended }
}

const withAlice = (server: SocksServer): void => void server.register(auth, { users: { alice: 'wonderland' } })
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

/** Reads one response (head and a Content-Length body) off a raw client. */
async function readResponse(client: RawClient): Promise<{ status: number; head: string; body: string }> {
  let head = ''
  while (!head.endsWith('\r\n\r\n')) head += (await client.read(1)).toString('latin1')
  const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0)
  const body = length > 0 ? (await client.read(length)).toString() : ''
  return { status: Number(head.slice(9, 12)), head, body }
}

/** Sends one request through the proxy with node's http client (absolute-form target). */
function viaProxy(port: number, url: string, options: { method?: string; headers?: Record<string, string>; agent?: Agent; body?: Buffer[] } = {}): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: options.method ?? 'GET', path: url, headers: { Host: new URL(url).host, ...options.headers }, agent: options.agent ?? new Agent({ keepAlive: false }) }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), reused: req.reusedSocket }))
      res.on('error', reject)
    })
    req.on('error', reject)
    for (const chunk of options.body ?? []) req.write(chunk)
    req.end()
  })
}

test('curl -x http://alice:pw@ forwards a plain request through the auth plugin; the request has its own access fields', needs(curl), async (t) => {
  const origin = await startOrigin(t)
  const { port, ended } = await startProxy(t, {}, withAlice)
  const r = await run(curl.path, ['-sS', '--max-time', '10', '-x', `http://alice:wonderland@127.0.0.1:${port}`, `http://127.0.0.1:${origin.port}/curl?q=1`])
  assert.equal(r.stdout, `hello from 127.0.0.1 /curl?q=1`, r.stderr)
  assert.equal(origin.seen.length, 1)
  assert.equal(origin.seen[0]!.url, '/curl?q=1', 'the origin gets the origin form')
  assert.equal(origin.seen[0]!.headers['proxy-authorization'], undefined)
  await waitFor(() => ended.some((ctx) => ctx.exchange !== null))
  const forwarded = ended.find((ctx) => ctx.exchange !== null)!
  assert.equal(forwarded.protocol, 'http')
  assert.equal(forwarded.user, 'alice')
  assert.equal(forwarded.commandName, 'connect')
  assert.deepEqual(forwarded.destination, { type: 'ipv4', host: '127.0.0.1', port: origin.port })
  assert.equal(forwarded.bytesToClient, Buffer.byteLength('hello from 127.0.0.1 /curl?q=1'), 'payload bytes: the body, not the head')
  assert.equal(forwarded.bytesFromClient, 0)
  assert.equal(accessFields(forwarded).method, 'GET')
  // The TCP connection that carried it ends too; it made no request of its own (no second access line).
  await waitFor(() => ended.length === 2)
  assert.ok(ended.some((ctx) => ctx.forwardedRequests === 1 && ctx.handshakeMs === null && ctx.exchange === null))
})

test('keep-alive: one client connection alternating between origins on 127.0.0.1 and 127.0.0.2 reaches each (gost#592), pipelined too', async (t) => {
  const a = await startOrigin(t, '127.0.0.1')
  const b = await startOrigin(t, '127.0.0.2')
  const { port, server } = await startProxy(t)
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.after(() => agent.destroy())
  const order = [a, b, a, b, b, a]
  for (const [i, origin] of order.entries()) {
    const r = await viaProxy(port, `http://${origin.host}:${origin.port}/r${i}`, { agent })
    assert.equal(r.body.toString(), `hello from ${origin.host} /r${i}`)
    assert.equal(r.headers['x-origin'], origin.host)
    if (i > 0) assert.ok(r.reused, `request ${i} went over the same client connection`)
  }
  assert.deepEqual(a.seen.map((s) => s.url), ['/r0', '/r2', '/r5'])
  assert.deepEqual(b.seen.map((s) => s.url), ['/r1', '/r3', '/r4'])
  agent.destroy()
  // Pipelined: three requests in one write; answers in order, each from its own origin.
  const client = await RawClient.connect(t, port)
  const request = (o: typeof a, path: string): string => `GET http://${o.host}:${o.port}${path} HTTP/1.1\r\nHost: ${o.host}:${o.port}\r\n\r\n`
  client.socket.write(request(b, '/p1') + request(a, '/p2') + request(b, '/p3'))
  for (const [origin, path] of [[b, '/p1'], [a, '/p2'], [b, '/p3']] as const) {
    const response = await readResponse(client)
    assert.equal(response.body, `hello from ${origin.host} ${path}`)
  }
  assert.deepEqual(a.seen.map((s) => s.url), ['/r0', '/r2', '/r5', '/p2'])
  assert.deepEqual(b.seen.map((s) => s.url), ['/r1', '/r3', '/r4', '/p1', '/p3'])
  // A CONNECT after plain requests on the same connection tunnels.
  client.socket.write(`CONNECT 127.0.0.1:${a.port} HTTP/1.1\r\nHost: 127.0.0.1:${a.port}\r\n\r\n`)
  const established = await readResponse(client)
  assert.equal(established.status, 200)
  client.socket.write(`GET /tunnelled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  assert.equal((await readResponse(client)).body, 'hello from 127.0.0.1 /tunnelled')
  client.socket.end()
  await waitFor(() => server.connections === 0)
})

test('request bodies stream to the origin and back: Content-Length and chunked, 1 MiB each', async (t) => {
  const origin = await startOrigin(t, '127.0.0.1', (req, res, body) => {
    res.writeHead(200, { 'Content-Type': 'application/octet-stream' })
    // Streamed back in pieces without Content-Length: chunked to the proxy, re-framed to the client.
    for (let at = 0; at < body.length; at += 100_000) res.write(body.subarray(at, at + 100_000))
    res.end()
  })
  const { port, ended } = await startProxy(t)
  const body = Buffer.alloc(1 << 20)
  for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff
  const sized = await viaProxy(port, `http://127.0.0.1:${origin.port}/cl`, { method: 'POST', headers: { 'Content-Length': String(body.length) }, body: [body] })
  assert.equal(sized.status, 200)
  assert.ok(sized.body.equals(body), 'Content-Length body round trip')
  assert.equal(origin.seen[0]!.headers['content-length'], String(body.length))
  const chunked = await viaProxy(port, `http://127.0.0.1:${origin.port}/chunked`, { method: 'PUT', body: [body.subarray(0, 300_000), body.subarray(300_000)] })
  assert.ok(chunked.body.equals(body), 'chunked body round trip')
  assert.equal(origin.seen[1]!.headers['transfer-encoding'], 'chunked')
  await waitFor(() => ended.filter((ctx) => ctx.exchange !== null).length === 2)
  for (const ctx of ended.filter((c) => c.exchange !== null)) {
    assert.equal(ctx.bytesFromClient, body.length)
    assert.equal(ctx.bytesToClient, body.length)
  }
})

test('HEAD, 204 and 304 answers carry no body, and the connection stays usable', async (t) => {
  const origin = await startOrigin(t, '127.0.0.1', (req, res) => {
    if (req.url === '/204') res.writeHead(204).end()
    else if (req.url === '/304') res.writeHead(304, { ETag: '"x"' }).end()
    else res.writeHead(200, { 'Content-Length': '5' }).end(req.method === 'HEAD' ? undefined : 'hello')
  })
  const { port } = await startProxy(t)
  const client = await RawClient.connect(t, port)
  for (const [method, path, status] of [['HEAD', '/h', 200], ['GET', '/204', 204], ['GET', '/304', 304], ['GET', '/after', 200]] as const) {
    client.socket.write(`${method} http://127.0.0.1:${origin.port}${path} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`)
    let head = ''
    while (!head.endsWith('\r\n\r\n')) head += (await client.read(1)).toString('latin1')
    assert.equal(Number(head.slice(9, 12)), status, head)
    if (path === '/after') assert.equal((await client.read(5)).toString(), 'hello')
  }
  client.socket.end()
})

test('refusals are statuses on the request they refuse, and the connection lives on: 407, 403 (never dialled), 502 for DNS and refused, 504, 400', async (t) => {
  const origin = await startOrigin(t)
  const refused = await freePort()
  const resolver = mapResolver({ 'web.test': ['127.0.0.1'] })
  const { port, ended } = await startProxy(t, { resolver, timeouts: { connect: 300 } }, (server) => {
    withAlice(server)
    server.register(rules, { rules: [{ action: 'deny', domains: ['blocked.test'] }, { action: 'deny', ports: 9 }] })
    server.use('connect', async function stall(ctx, next) {
      if (ctx.destination.port !== 7) return next()
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve))
    })
  })
  const client = await RawClient.connect(t, port)
  const alice = `Proxy-Authorization: ${basic('alice', 'wonderland')}\r\n`
  const cases: [string, string, number, RegExp?][] = [
    [`http://127.0.0.1:${origin.port}/none`, '', 407, /\r\nProxy-Authenticate: Basic realm="socksmith"\r\n/],
    [`http://127.0.0.1:${origin.port}/wrong`, `Proxy-Authorization: ${basic('alice', 'nope')}\r\n`, 407, /Proxy-Authenticate: Basic/],
    ['http://127.0.0.1:9/port', alice, 403],
    ['http://nowhere.test/dns', alice, 502, /host unreachable/],
    [`http://127.0.0.1:${refused}/refused`, alice, 502, /connection refused/],
    ['http://127.0.0.1:7/slow', alice, 504],
    ['https://127.0.0.1/tls', alice, 400],
    [`http://web.test:${origin.port}/ok`, alice, 200],
  ]
  for (const [url, headers, status, pattern] of cases) {
    client.socket.write(`GET ${url} HTTP/1.1\r\nHost: x\r\n${headers}\r\n`)
    const response = await readResponse(client).catch((err: Error) => { throw new Error(`${url}: ${err.message}`) })
    assert.equal(response.status, status, `${url}: ${response.head}`)
    if (pattern !== undefined) assert.match(response.head + response.body, pattern)
  }
  // The rules see the address dialled: blocked.test is refused before any dial.
  client.socket.write(`GET http://blocked.test:${origin.port}/x HTTP/1.1\r\nHost: blocked.test\r\n${alice}\r\n`)
  assert.equal((await readResponse(client)).status, 403)
  assert.deepEqual(origin.seen.map((s) => s.url), ['/ok'], 'only the allowed request reached the origin')
  client.socket.end()
  await client.expectClose()
  await waitFor(() => ended.length === cases.length + 2)
  const codes = ended.filter((ctx) => ctx.exchange !== null).map((ctx) => (isSocksError(ctx.error) ? ctx.error.code : null))
  assert.deepEqual(codes, ['ERR_SOCKS_NO_ACCEPTABLE_METHOD', 'ERR_SOCKS_AUTH_FAILED', 'ERR_SOCKS_NOT_ALLOWED', 'ERR_SOCKS_HOST_UNREACHABLE', 'ERR_SOCKS_CONNECTION_REFUSED', 'ERR_SOCKS_CONNECT_TIMEOUT', 'ERR_SOCKS_BAD_REQUEST', null, 'ERR_SOCKS_NOT_ALLOWED'])
})

test('hop-by-hop headers are stripped both ways, Host is the URL authority; no Via or X-Forwarded-For unless configured', async (t) => {
  const origin = await startOrigin(t, '127.0.0.1', (req, res) => {
    res.writeHead(200, { 'Content-Length': '2', Connection: 'close, X-Hop', 'X-Hop': 'origin', 'Keep-Alive': 'timeout=5', 'Proxy-Authenticate': 'Basic', 'X-Kept': 'yes' })
    res.end('ok')
  })
  const plain = await startProxy(t, {}, withAlice)
  const client = await RawClient.connect(t, plain.port)
  client.socket.write([
    `GET http://127.0.0.1:${origin.port}/h HTTP/1.1`, 'Host: elsewhere.example', `Proxy-Authorization: ${basic('alice', 'wonderland')}`,
    'Proxy-Connection: keep-alive', 'Connection: keep-alive, X-Drop-Me', 'X-Drop-Me: 1', 'Keep-Alive: 300', 'TE: trailers', 'X-Forwarded-For: 10.0.0.1', 'X-End-To-End: kept', '', '',
  ].join('\r\n'))
  const response = await readResponse(client)
  assert.equal(response.body, 'ok')
  assert.match(response.head, /\r\nX-Kept: yes\r\n/)
  for (const gone of [/X-Hop/i, /Keep-Alive:/i, /Proxy-Authenticate/i, /\r\nVia:/i]) assert.doesNotMatch(response.head, gone)
  const seen = origin.seen[0]!
  assert.equal(seen.headers.host, `127.0.0.1:${origin.port}`)
  assert.equal(seen.headers['x-end-to-end'], 'kept')
  assert.equal(seen.headers['x-forwarded-for'], '10.0.0.1', 'left as it came')
  for (const name of ['proxy-authorization', 'proxy-connection', 'x-drop-me', 'keep-alive', 'te', 'via']) assert.equal(seen.headers[name], undefined, name)
  client.socket.end()

  const tagged = await startProxy(t, {}, undefined, { via: 'edge-1', forwardedFor: true })
  const r = await viaProxy(tagged.port, `http://127.0.0.1:${origin.port}/tagged`, { headers: { 'X-Forwarded-For': '10.0.0.1' } })
  assert.equal(r.headers.via, '1.1 edge-1')
  assert.equal(origin.seen[1]!.headers.via, '1.1 edge-1')
  assert.equal(origin.seen[1]!.headers['x-forwarded-for'], '10.0.0.1, 127.0.0.1')
})

test('relay middleware applies to a forwarded request: taps see the bodies, a throttle shapes the download', async (t) => {
  const big = Buffer.alloc(512 * 1024, 0x61)
  const origin = await startOrigin(t, '127.0.0.1', (req, res) => res.writeHead(200, { 'Content-Length': String(big.length) }).end(big))
  let up = 0
  let down = 0
  const { port } = await startProxy(t, {}, (server) =>
    server.use('relay', async function watch(ctx, next) {
      ctx.tap('client', (chunk) => (up += chunk.length))
      ctx.tap('outbound', (chunk) => (down += chunk.length))
      ctx.throttle('outbound', new TokenBucket({ rate: 512 * 1024, burst: 16 * 1024 }))
      await next()
    }),
  )
  const started = performance.now()
  const r = await viaProxy(port, `http://127.0.0.1:${origin.port}/t`, { method: 'POST', body: [Buffer.from('0123456789')], headers: { 'Content-Length': '10' } })
  const ms = performance.now() - started
  assert.ok(r.body.equals(big))
  assert.equal(up, 10)
  assert.equal(down, big.length)
  // 512 KiB at 512 KiB/s after a 16 KiB burst, one read (at most 64 KiB) ahead: at least ~0.84 s.
  assert.ok(ms > 650, `shaped: ${Math.round(ms)} ms`)
})

test('nothing is left behind: a client leaving mid-response, an origin resetting before and during its answer, a keep-alive client sending nothing', async (t) => {
  let streaming: ServerResponse | null = null
  const origin = await startOrigin(t, '127.0.0.1', (req, res) => {
    if (req.url === '/reset') return req.socket.destroy()
    if (req.url === '/small') return res.writeHead(200, { 'Content-Length': '2' }).end('ok')
    res.writeHead(200, { 'Content-Type': 'application/octet-stream' })
    if (req.url === '/cut') {
      res.write(Buffer.alloc(1000))
      setTimeout(() => req.socket.destroy(), 20)
      return
    }
    streaming = res
    const timer = setInterval(() => res.write(Buffer.alloc(16 * 1024)), 5)
    res.on('close', () => clearInterval(timer))
  })
  const { port, server } = await startProxy(t, { timeouts: { handshake: 300 } })
  // A client that reads a little of an endless response and leaves.
  const leaver = await RawClient.connect(t, port)
  leaver.socket.write(`GET http://127.0.0.1:${origin.port}/endless HTTP/1.1\r\nHost: x\r\n\r\n`)
  await leaver.read(20_000)
  leaver.socket.destroy()
  await waitFor(() => server.connections === 0)
  await waitFor(() => origin.open() === 0 && streaming !== null && (streaming as ServerResponse).destroyed)
  // An origin that resets before answering: 502, and the connection serves the next request.
  const client = await RawClient.connect(t, port)
  client.socket.write(`GET http://127.0.0.1:${origin.port}/reset HTTP/1.1\r\nHost: x\r\n\r\n`)
  assert.equal((await readResponse(client)).status, 502)
  client.socket.write(`GET http://127.0.0.1:${origin.port}/small HTTP/1.1\r\nHost: x\r\n\r\n`)
  assert.equal((await readResponse(client)).status, 200)
  client.socket.end()
  await client.expectClose()
  // An origin that resets half-way through its body: the client's connection ends (the body cannot be completed).
  const cut = await RawClient.connect(t, port)
  cut.socket.write(`GET http://127.0.0.1:${origin.port}/cut HTTP/1.1\r\nHost: x\r\n\r\n`)
  await cut.expectClose()
  // A keep-alive client that sends nothing after its request is closed at the handshake timeout.
  const idle = await RawClient.connect(t, port)
  idle.socket.write(`GET http://127.0.0.1:${origin.port}/x HTTP/1.1\r\nHost: x\r\n\r\n`)
  await readResponse(idle)
  const waited = performance.now()
  await idle.expectClose(3000)
  assert.ok(performance.now() - waited >= 250)
  await waitFor(() => server.connections === 0 && origin.open() === 0)
})

test('headless Chromium with --proxy-server=http:// loads an http:// page from a loopback origin', needs(chromium), async (t) => {
  const origin = await startOrigin(t, '127.0.0.1', (req, res) => {
    const page = `<html><body><p id="x">forwarded ${req.url}</p></body></html>`
    res.writeHead(200, { 'Content-Type': 'text/html', 'Content-Length': Buffer.byteLength(page) }).end(page)
  })
  const { port, ended } = await startProxy(t)
  const profile = mkdtempSync(join(tmpdir(), 'socksmith-chromium-'))
  t.after(() => rmSync(profile, { recursive: true, force: true }))
  const r = await run(chromium.path, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`,
    `--proxy-server=http://127.0.0.1:${port}`, '--proxy-bypass-list=<-loopback>', '--dump-dom', `http://127.0.0.1:${origin.port}/chromium`,
  ], { timeout: 60_000 })
  assert.match(r.stdout, /forwarded \/chromium/, r.stderr.slice(-2000))
  assert.ok(origin.seen.some((s) => s.url === '/chromium' && s.headers['proxy-connection'] === undefined))
  assert.ok(ended.some((ctx) => ctx.exchange !== null && ctx.replied))
})

test('plugins apply unchanged: a per-user connection cap is held per request (keep-alive frees it each time), and the upstream plugin carries the requests, over one tunnel it reuses', async (t) => {
  const origin = await startOrigin(t)
  const { default: limits } = await import('socksmith/plugins/limits')
  const { default: upstream } = await import('socksmith/plugins/upstream')
  // The upstream: a second socksmith speaking SOCKS5.
  const hop = createServer({ logger: silentLogger })
  const hopEnded: ConnectionContext[] = []
  hop.on('disconnect', (ctx) => hopEnded.push(ctx))
  const { port: hopPort } = await hop.listen({ host: '127.0.0.1', port: 0 })
  closeAfter(t, hop)
  const { port, ended } = await startProxy(t, {}, (server) => {
    withAlice(server)
    server.register(limits, { limits: [{ per: 'user', maxConnections: 1 }] })
    server.register(upstream, { proxy: `socks5://127.0.0.1:${hopPort}` })
  })
  const client = await RawClient.connect(t, port)
  for (let i = 0; i < 4; i++) {
    client.socket.write(`GET http://127.0.0.1:${origin.port}/k${i} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic('alice', 'wonderland')}\r\n\r\n`)
    const response = await readResponse(client)
    assert.equal(response.status, 200, `request ${i} is admitted: the one before gave its lease back (${response.head})`)
    assert.equal(response.body, `hello from 127.0.0.1 /k${i}`)
  }
  client.socket.end()
  // The upstream's dialer says its tunnels may be reused (Dialer.reusable): one tunnel, one origin connection.
  await waitFor(() => hopEnded.length === 1)
  assert.ok(hopEnded[0]!.destination.port === origin.port && hopEnded[0]!.replied, 'the requests went through the upstream')
  assert.equal(origin.accepted(), 1)
  const forwarded = ended.filter((ctx) => ctx.exchange !== null)
  assert.equal(forwarded.length, 4)
  assert.deepEqual(forwarded.map((ctx) => ctx.via), Array(4).fill(`socks5://127.0.0.1:${hopPort}`), "each request's access fields name the upstream, the reused ones too")
})

test('Expect: 100-continue: the 100 comes only once the request is let through; a refused upload is not read, and a closing server does not wait for idle keep-alive clients', async (t) => {
  const origin = await startOrigin(t, '127.0.0.1', (req, res, body) => res.writeHead(200, { 'Content-Length': String(body.length) }).end(body))
  const server = createServer({ logger: silentLogger })
  withAlice(server)
  const { port } = await server.listen({ host: '127.0.0.1', port: 0, protocols: ['http'] })
  const head = (credentials: string): string => `POST http://127.0.0.1:${origin.port}/up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n${credentials}\r\n`
  const refused = await RawClient.connect(t, port)
  refused.socket.write(head(''))
  const answer = (await refused.expectClose()).toString()
  assert.match(answer, /^HTTP\/1\.1 407 /, 'no 100 Continue before the refusal')
  const let_through = await RawClient.connect(t, port)
  let_through.socket.write(head(`Proxy-Authorization: ${basic('alice', 'wonderland')}\r\n`))
  assert.equal((await let_through.read(25)).toString(), 'HTTP/1.1 100 Continue\r\n\r\n')
  let_through.socket.write('hello')
  const response = await readResponse(let_through)
  assert.equal(response.body, 'hello')
  // let_through is now an idle keep-alive client: close() does not wait the 10 s drain for it.
  const started = performance.now()
  await server.close()
  assert.ok(performance.now() - started < 2000, `closed in ${Math.round(performance.now() - started)} ms`)
  await let_through.expectClose()
  assert.equal(server.connections, 0)
})

test('backpressure and uploads cut short: a client that does not read holds the origin back; a client leaving mid-upload leaves nothing behind', async (t) => {
  let pushed = 0
  let stalled = false
  const origin = await startOrigin(t, '127.0.0.1', (req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/octet-stream' })
    const chunk = Buffer.alloc(64 * 1024)
    const pump = (): void => {
      while (pushed < 256 * 1024 * 1024) {
        pushed += chunk.length
        if (!res.write(chunk)) {
          stalled = true
          res.once('drain', pump)
          return
        }
      }
      res.end()
    }
    pump()
  })
  let uploads = 0
  const uploadOrigin = createHttpServer((req) => {
    uploads++
    req.resume()
  })
  let uploadSockets = 0
  uploadOrigin.on('connection', (socket: Socket) => {
    uploadSockets++
    socket.on('close', () => uploadSockets--)
  })
  uploadOrigin.listen(0, '127.0.0.1')
  await once(uploadOrigin, 'listening')
  t.after(() => {
    uploadOrigin.closeAllConnections()
    uploadOrigin.close()
  })
  const { port, server } = await startProxy(t)
  const reader = await RawClient.connect(t, port)
  reader.socket.pause()
  reader.socket.write(`GET http://127.0.0.1:${origin.port}/flood HTTP/1.1\r\nHost: x\r\n\r\n`)
  await waitFor(() => stalled)
  await new Promise((resolve) => setTimeout(resolve, 300))
  // Socket buffers on three hops and a stream's worth in the proxy, not the whole response.
  assert.ok(pushed < 32 * 1024 * 1024, `the origin got ${pushed} bytes out while nobody read`)
  reader.socket.destroy()
  const uploader = await RawClient.connect(t, port)
  uploader.socket.write(`POST http://127.0.0.1:${(uploadOrigin.address() as AddressInfo).port}/up HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n`)
  uploader.socket.write(Buffer.alloc(200_000))
  await waitFor(() => uploads === 1)
  uploader.socket.destroy()
  await waitFor(() => server.connections === 0 && origin.open() === 0)
  await waitFor(() => uploadSockets === 0, 3000)
})

test('an origin that answers something other than HTTP gets the client a 502, and the client connection serves on', async (t) => {
  const { startTcpServer } = await import('../helpers/net.js')
  const garbage = await startTcpServer(t, (socket) => {
    socket.on('error', () => {})
    socket.once('data', () => socket.end('SSH-2.0-not-http\r\n\r\n'))
  })
  const origin = await startOrigin(t)
  const { port, ended } = await startProxy(t)
  const client = await RawClient.connect(t, port)
  client.socket.write(`GET http://127.0.0.1:${garbage.port}/ HTTP/1.1\r\nHost: x\r\n\r\n`)
  const refused = await readResponse(client)
  assert.equal(refused.status, 502)
  client.socket.write(`GET http://127.0.0.1:${origin.port}/next HTTP/1.1\r\nHost: x\r\n\r\n`)
  assert.equal((await readResponse(client)).body, 'hello from 127.0.0.1 /next')
  client.socket.end()
  await waitFor(() => ended.filter((ctx) => ctx.exchange !== null).length === 2)
  const failed = ended.find((ctx) => ctx.exchange !== null && ctx.destination.port === garbage.port)!
  assert.equal(failed.reply, 1, 'the access line says it failed (REP 01), not 0')
  assert.ok(isSocksError(failed.error))
})

test('origin connection reuse: a keep-alive client\'s requests to one origin share one origin connection; each is still its own connection with its own access fields', async (t) => {
  const origin = await startOrigin(t)
  const { port, server, ended } = await startProxy(t)
  const client = await RawClient.connect(t, port)
  for (const path of ['/1', '/2', '/3']) {
    client.socket.write(`GET http://127.0.0.1:${origin.port}${path} HTTP/1.1\r\nHost: x\r\n\r\n`)
    assert.equal((await readResponse(client)).body, `hello from 127.0.0.1 ${path}`)
  }
  assert.equal(origin.accepted(), 1, 'one origin connection for three requests')
  await waitFor(() => ended.length === 3)
  for (const [i, ctx] of ended.entries()) {
    assert.ok(ctx.exchange !== null && ctx.replied && ctx.error === null, `request ${i}`)
    assert.equal(ctx.bytesToClient, Buffer.byteLength(`hello from 127.0.0.1 /${i + 1}`))
    assert.deepEqual(ctx.dialed, { type: 'ipv4', host: '127.0.0.1', port: origin.port })
  }
  assert.equal(server.connections, 1, 'the parked origin socket is no connection of its own')
  // The client leaves: the parked socket goes with it.
  client.socket.end()
  await client.expectClose()
  await waitFor(() => origin.open() === 0 && server.connections === 0)
})

test('origin connection reuse asks the rules every time, and never crosses users: a denied request is 403 while a socket is parked; another user dials anew', async (t) => {
  const a = await startOrigin(t)
  const denied = await startOrigin(t)
  const { port } = await startProxy(t, {}, (server) => {
    server.register(auth, { users: { alice: 'wonderland', bob: 'builder' } })
    server.register(rules, { rules: [{ action: 'deny', ports: denied.port }] })
  })
  const client = await RawClient.connect(t, port)
  const get = async (o: { port: number }, path: string, user: string, password: string) => {
    client.socket.write(`GET http://127.0.0.1:${o.port}${path} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic(user, password)}\r\n\r\n`)
    return readResponse(client)
  }
  assert.equal((await get(a, '/alice1', 'alice', 'wonderland')).status, 200)
  assert.equal((await get(denied, '/no', 'alice', 'wonderland')).status, 403, 'the rules still refuse')
  assert.equal(denied.accepted(), 0, 'never dialled')
  assert.equal((await get(a, '/alice2', 'alice', 'wonderland')).status, 200)
  assert.equal(a.accepted(), 1, 'the parked socket waited out the refusal and served alice again')
  assert.equal((await get(a, '/bob1', 'bob', 'builder')).status, 200)
  assert.equal(a.accepted(), 2, "bob does not get alice's origin connection")
  assert.equal((await get(a, '/wrong', 'bob', 'nope')).status, 407, 'a failed login reuses nothing either')
  assert.equal((await get(a, '/bob2', 'bob', 'builder')).status, 200)
  assert.equal(a.accepted(), 2)
  assert.deepEqual(a.seen.map((s) => s.url), ['/alice1', '/alice2', '/bob1', '/bob2'])
  client.socket.end()
  await client.expectClose()
  await waitFor(() => a.open() === 0)
})

test('origin connection reuse stops where the origin says so: Connection: close, a closed idle socket, a body read until close', async (t) => {
  const origin = await startOrigin(t, '127.0.0.1', (req, res) => {
    const text = `hello ${req.url}`
    if (req.url === '/close') res.writeHead(200, { 'Content-Length': Buffer.byteLength(text), Connection: 'close' }).end(text)
    else {
      res.writeHead(200, { 'Content-Length': Buffer.byteLength(text) }).end(text)
      // The origin closes its idle connection after this one.
      if (req.url === '/bye') res.on('finish', () => req.socket.end())
    }
  })
  const { port } = await startProxy(t)
  const client = await RawClient.connect(t, port)
  const get = async (path: string, o: { port: number } = origin) => {
    client.socket.write(`GET http://127.0.0.1:${o.port}${path} HTTP/1.1\r\nHost: x\r\n\r\n`)
    return readResponse(client)
  }
  assert.equal((await get('/close')).body, 'hello /close')
  assert.equal((await get('/after-close')).body, 'hello /after-close')
  assert.equal(origin.accepted(), 2, 'Connection: close from the origin: the next request dialled anew')
  assert.equal((await get('/bye')).body, 'hello /bye')
  // The origin's FIN reaches the parked socket, which closes: only then does the origin's side close.
  await waitFor(() => origin.open() === 0)
  assert.equal((await get('/after-bye')).body, 'hello /after-bye')
  assert.equal(origin.accepted(), 3)
  // A response without length or chunking ends with its connection: nothing to park.
  const { startTcpServer } = await import('../helpers/net.js')
  const unframed = await startTcpServer(t, (socket) => {
    socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close'))
  })
  for (const path of ['/u1', '/u2']) {
    client.socket.write(`GET http://127.0.0.1:${unframed.port}${path} HTTP/1.1\r\nHost: x\r\n\r\n`)
    const response = await readResponse(client)
    assert.equal(response.status, 200)
    assert.match(response.head, /transfer-encoding: chunked/i, 're-framed for the client')
    let body = ''
    while (!body.endsWith('0\r\n\r\n')) body += (await client.read(1)).toString()
    assert.match(body, /until close/)
  }
  assert.equal(unframed.accepted(), 2)
  client.socket.end()
  await client.expectClose()
})

test('curl fetching two URLs of one origin through the proxy in one run reuses the origin connection', needs(curl), async (t) => {
  const origin = await startOrigin(t)
  const { port, ended } = await startProxy(t)
  const r = await run(curl.path, ['-sS', '--max-time', '10', '-x', `http://127.0.0.1:${port}`, `http://127.0.0.1:${origin.port}/a`, `http://127.0.0.1:${origin.port}/b`])
  assert.equal(r.stdout, `hello from 127.0.0.1 /ahello from 127.0.0.1 /b`, r.stderr)
  assert.equal(origin.accepted(), 1)
  await waitFor(() => ended.length === 3)
  assert.equal(ended.filter((ctx) => ctx.exchange !== null).length, 2, 'two requests, each its own connection')
  await waitFor(() => origin.open() === 0)
})

test('a reused origin socket the origin closes as the request goes out: a GET is sent again on a new dial, a POST gets its 502', async (t) => {
  // The origin answers the first request of each connection and drops the connection on the second
  // without a word: what a keep-alive timeout firing just as the request arrives looks like.
  const served = new WeakMap<Socket, number>()
  const origin = await startOrigin(t, '127.0.0.1', (req, res, body) => {
    const count = (served.get(req.socket) ?? 0) + 1
    served.set(req.socket, count)
    if (count === 2) return req.socket.destroy()
    const text = `${req.method} ${req.url} ${body.length}`
    res.writeHead(200, { 'Content-Length': Buffer.byteLength(text) }).end(text)
  })
  const { port, ended } = await startProxy(t)
  const client = await RawClient.connect(t, port)
  const send = async (head: string) => {
    client.socket.write(head)
    return readResponse(client)
  }
  assert.equal((await send(`GET http://127.0.0.1:${origin.port}/1 HTTP/1.1\r\nHost: x\r\n\r\n`)).body, 'GET /1 0')
  assert.equal((await send(`GET http://127.0.0.1:${origin.port}/2 HTTP/1.1\r\nHost: x\r\n\r\n`)).body, 'GET /2 0', 'sent again on a new connection')
  assert.equal(origin.accepted(), 2)
  assert.equal((await send(`POST http://127.0.0.1:${origin.port}/3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc`)).status, 502, 'a POST is not sent twice')
  assert.equal(origin.accepted(), 2)
  assert.equal((await send(`GET http://127.0.0.1:${origin.port}/4 HTTP/1.1\r\nHost: x\r\n\r\n`)).body, 'GET /4 0')
  assert.deepEqual(origin.seen.map((s) => s.url), ['/1', '/2', '/2', '/3', '/4'])
  client.socket.end()
  await client.expectClose()
  await waitFor(() => ended.length === 5)
  assert.deepEqual(ended.filter((ctx) => ctx.exchange !== null).map((ctx) => ctx.error === null), [true, true, false, true])
  await waitFor(() => origin.open() === 0)
})

test('a closing server closes the origin socket a keep-alive client keeps, with the client', async (t) => {
  const origin = await startOrigin(t)
  const server = createServer({ logger: silentLogger })
  const { port } = await server.listen({ host: '127.0.0.1', port: 0, protocols: ['http'] })
  const client = await RawClient.connect(t, port)
  client.socket.write(`GET http://127.0.0.1:${origin.port}/kept HTTP/1.1\r\nHost: x\r\n\r\n`)
  assert.equal((await readResponse(client)).body, 'hello from 127.0.0.1 /kept')
  assert.equal(origin.open(), 1, 'kept between requests')
  await server.close()
  await client.expectClose()
  await waitFor(() => origin.open() === 0)
  assert.equal(server.connections, 0)
})

test('a reused origin socket reset while a relay middleware waits is no crash: the request goes out on a new dial', async (t) => {
  let last: Socket | null = null
  const origin = await startOrigin(t, '127.0.0.1', (req, res) => {
    last = req.socket
    res.writeHead(200, { 'Content-Length': '2' }).end('ok')
  })
  let resetNext = false
  const { port, ended } = await startProxy(t, {}, (server) =>
    server.use('relay', async function resetOrigin(ctx, next) {
      if (resetNext) {
        resetNext = false
        ;(last as Socket | null)?.resetAndDestroy()
        // The proxy's side hears the reset while nobody reads it: only the exchange's listener is on it.
        await waitFor(() => ctx.outbound!.destroyed)
      }
      await next()
    }),
  )
  const client = await RawClient.connect(t, port)
  const post = `POST http://127.0.0.1:${origin.port}/p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi`
  client.socket.write(post)
  assert.equal((await readResponse(client)).body, 'ok')
  resetNext = true
  client.socket.write(post)
  assert.equal((await readResponse(client)).body, 'ok', 'nothing was sent on the reset socket: even a POST goes out again')
  assert.equal(origin.accepted(), 2)
  client.socket.end()
  await client.expectClose()
  await waitFor(() => ended.length === 3)
  assert.deepEqual(ended.filter((ctx) => ctx.exchange !== null).map((ctx) => ctx.error), [null, null])
})
