import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createSocket } from 'node:dgram'
import type { TestContext } from 'node:test'
import { SocksClient } from 'socks'
import { createServer, isSocksError, type ResolvedAddress, type Resolver } from 'socksmith'
import { systemResolver } from 'socksmith/net'
import dnsCache, { DnsCache, createDnsTtlProbe, getDnsCache, isWorthADnsProbe } from 'socksmith/plugins/dns-cache'
import { RawClient, domainRequest, hex, ipv4Request, mapResolver, startEcho, startSocks, trackClient, waitFor } from '../helpers/net.js'

/** A clock the test moves by hand (ms). lru-cache treats a start time of 0 as "no TTL", so it starts high. */
function manualClock() {
  return {
    ms: 1_000_000,
    now() {
      return this.ms
    },
    advance(seconds: number) {
      this.ms += seconds * 1000
    },
  }
}

type Answer = ResolvedAddress[] | { code: string }

/** A loopback-only resolver whose answers the test sets per name; records each call and its signal. */
function scriptedResolver(answers: Record<string, Answer>): Resolver & { calls: string[]; signals: (AbortSignal | undefined)[] } {
  const calls: string[] = []
  const signals: (AbortSignal | undefined)[] = []
  return {
    calls,
    signals,
    async resolve(hostname, options) {
      calls.push(hostname)
      signals.push(options?.signal)
      const answer = answers[hostname]
      if (answer === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' })
      if (!Array.isArray(answer)) throw Object.assign(new Error(`query ${answer.code} ${hostname}`), { code: answer.code })
      return answer
    },
  }
}

/** A resolver that holds every answer until `release()`, so lookups really overlap. */
function gatedResolver(inner: Resolver & { calls: string[] }) {
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  const resolver: Resolver & { calls: string[] } = {
    calls: inner.calls,
    async resolve(hostname, options) {
      const answer = inner.resolve(hostname, options)
      await gate
      return answer
    },
  }
  return { resolver, release }
}

/** CONNECT to `name:port` through the proxy; returns the REP byte, and on success checks the relay both ways. */
async function connectThrough(t: TestContext, proxyPort: number, name: string, port: number): Promise<number> {
  const c = await RawClient.connect(t, proxyPort)
  c.send(Buffer.concat([hex('050100'), domainRequest(1, name, port)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  const reply = await c.read(10)
  if (reply[1] === 0) {
    c.send(Buffer.from(`via ${name}`))
    assert.equal((await c.read(4 + name.length)).toString(), `via ${name}`)
    c.socket.end()
    await c.readToEnd()
  } else {
    await c.expectClose()
  }
  return reply[1]!
}

function cacheOf(server: Parameters<typeof getDnsCache>[0]): DnsCache {
  const cache = getDnsCache(server)
  assert.ok(cache !== undefined, 'the plugin registered its cache for the server')
  return cache
}

test('50 concurrent CONNECTs to one name make exactly one resolver call, and all 50 relay', async (t) => {
  const echo = await startEcho(t)
  const { resolver, release } = gatedResolver(mapResolver({ 'echo.test': ['127.0.0.1'] }))
  const { server, port } = await startSocks(t, { resolver }, (s) => s.register(dnsCache))
  const cache = cacheOf(server)
  const connections = Array.from({ length: 50 }, () =>
    SocksClient.createConnection({ proxy: { host: '127.0.0.1', port, type: 5 }, command: 'connect', destination: { host: 'echo.test', port: echo.port } }),
  )
  // Hold the one query until every other lookup has joined it, so this proves merging, not caching.
  await waitFor(() => cache.coalesced === 49, 5000)
  release()
  const sockets = (await Promise.all(connections)).map(({ socket }) => trackClient(t, socket))
  await Promise.all(
    sockets.map(async (socket, i) => {
      socket.write(`message ${i}`)
      const [data] = (await once(socket, 'data')) as [Buffer]
      assert.equal(data.toString(), `message ${i}`)
      socket.end()
    }),
  )
  assert.equal(resolver.calls.length, 1)
  assert.deepEqual(cache.stats(), { hits: 0, misses: 1, coalesced: 49, size: 1 })
  assert.equal(echo.accepted(), 50)
})

test('an answer is kept for its TTL (clamped) and asked again after it expires', async (t) => {
  const echo = await startEcho(t)
  const clock = manualClock()
  const resolver = scriptedResolver({ 'ttl.test': [{ address: '127.0.0.1', family: 4, ttl: 30 }] })
  const { server, port } = await startSocks(t, { resolver }, (s) => s.register(dnsCache, { minTtl: 1, clock }))
  const cache = cacheOf(server)
  assert.equal(await connectThrough(t, port, 'ttl.test', echo.port), 0)
  assert.equal(cache.remainingTtl('ttl.test'), 30)
  clock.advance(29.9)
  assert.equal(await connectThrough(t, port, 'ttl.test', echo.port), 0)
  assert.equal(resolver.calls.length, 1, 'within the TTL the cache answers')
  clock.advance(0.2)
  assert.equal(await connectThrough(t, port, 'ttl.test', echo.port), 0)
  assert.equal(resolver.calls.length, 2, 'after the TTL the resolver is asked again')
  assert.deepEqual(cache.stats(), { hits: 1, misses: 2, coalesced: 0, size: 1 })
})

test('TTL expiry on the real clock (a 0.2 s answer with minTtl 0)', async (t) => {
  const echo = await startEcho(t)
  const resolver = scriptedResolver({ 'short.test': [{ address: '127.0.0.1', family: 4, ttl: 0.2 }] })
  const { server, port } = await startSocks(t, { resolver }, (s) => s.register(dnsCache, { minTtl: 0 }))
  const cache = cacheOf(server)
  assert.equal(await connectThrough(t, port, 'short.test', echo.port), 0)
  assert.equal(cache.has('short.test'), true)
  await waitFor(() => !cache.has('short.test'), 1500)
  assert.equal(await connectThrough(t, port, 'short.test', echo.port), 0)
  assert.equal(resolver.calls.length, 2)
})

test('TTLs are clamped to [minTtl, maxTtl]; answers without a TTL get defaultTtl (also clamped)', async () => {
  const resolver = scriptedResolver({
    'short.test': [{ address: '127.0.0.1', family: 4, ttl: 1 }],
    'long.test': [{ address: '127.0.0.2', family: 4, ttl: 86_400 }],
    'mixed.test': [{ address: '127.0.0.3', family: 4, ttl: 300 }, { address: '::1', family: 6, ttl: 120 }],
    'none.test': [{ address: '127.0.0.4', family: 4 }],
  })
  const clock = manualClock()
  const cache = new DnsCache(resolver, { minTtl: 5, maxTtl: 600, clock })
  for (const name of ['short.test', 'long.test', 'mixed.test', 'none.test']) await cache.resolve(name)
  assert.equal(cache.remainingTtl('short.test'), 5, 'raised to minTtl')
  assert.equal(cache.remainingTtl('long.test'), 600, 'cut to maxTtl')
  assert.equal(cache.remainingTtl('mixed.test'), 120, 'the smallest TTL of the answer')
  assert.equal(cache.remainingTtl('none.test'), 60, 'default TTL')
  const narrow = new DnsCache(resolver, { minTtl: 5, maxTtl: 30, clock })
  await narrow.resolve('none.test')
  assert.equal(narrow.remainingTtl('none.test'), 30, 'the default TTL is clamped too')
  const noDefault = new DnsCache(resolver, { minTtl: 0, defaultTtl: 0, clock })
  await noDefault.resolve('none.test')
  assert.equal(noDefault.has('none.test'), false, 'a TTL of 0 means "do not keep", not "keep forever"')
})

test('a name that does not exist replies REP 04 twice but is looked up once (negative caching)', async (t) => {
  const resolver = mapResolver({})
  const { server, port } = await startSocks(t, { resolver }, (s) => s.register(dnsCache))
  assert.equal(await connectThrough(t, port, 'nowhere.test', 80), 4)
  assert.equal(await connectThrough(t, port, 'nowhere.test', 80), 4)
  assert.deepEqual(resolver.calls, ['nowhere.test'])
  assert.deepEqual(cacheOf(server).stats(), { hits: 1, misses: 1, coalesced: 0, size: 1 })
})

test('negative answers are re-thrown with their code, kept for negativeTtl, and transient failures are not kept', async () => {
  const clock = manualClock()
  const resolver = scriptedResolver({ 'nodata.test': { code: 'ENODATA' }, 'empty.test': [], 'servfail.test': { code: 'ESERVFAIL' } })
  const cache = new DnsCache(resolver, { negativeTtl: 5, clock })
  for (let i = 0; i < 2; i++) {
    await assert.rejects(cache.resolve('missing.test'), { code: 'ENOTFOUND' })
    await assert.rejects(cache.resolve('nodata.test'), { code: 'ENODATA' })
    assert.deepEqual(await cache.resolve('empty.test'), [])
  }
  assert.deepEqual(resolver.calls, ['missing.test', 'nodata.test', 'empty.test'])
  assert.equal(cache.remainingTtl('missing.test'), 5)
  clock.advance(5.1)
  await assert.rejects(cache.resolve('missing.test'), { code: 'ENOTFOUND' })
  assert.equal(resolver.calls.length, 4, 'asked again after negativeTtl')

  await assert.rejects(cache.resolve('servfail.test'), { code: 'ESERVFAIL' })
  await assert.rejects(cache.resolve('servfail.test'), { code: 'ESERVFAIL' })
  assert.equal(resolver.calls.filter((n) => n === 'servfail.test').length, 2, 'a failing DNS server is not an answer')

  const off = new DnsCache(resolver, { negativeTtl: 0, clock })
  await assert.rejects(off.resolve('missing.test'), { code: 'ENOTFOUND' })
  assert.equal(off.has('missing.test'), false, 'negativeTtl 0 turns negative caching off')
})

test('max bounds the cache: the least recently used name is evicted', async (t) => {
  const echo = await startEcho(t)
  const resolver = mapResolver({ 'a.test': ['127.0.0.1'], 'b.test': ['127.0.0.1'], 'c.test': ['127.0.0.1'] })
  const { server, port } = await startSocks(t, { resolver }, (s) => s.register(dnsCache, { max: 2 }))
  const cache = cacheOf(server)
  for (const name of ['a.test', 'b.test', 'a.test', 'c.test']) assert.equal(await connectThrough(t, port, name, echo.port), 0)
  assert.equal(cache.size, 2)
  assert.equal(cache.has('a.test'), true, 'a.test was used after b.test, so b.test went first')
  assert.equal(cache.has('b.test'), false)
  assert.equal(await connectThrough(t, port, 'b.test', echo.port), 0)
  assert.deepEqual(resolver.calls, ['a.test', 'b.test', 'c.test', 'b.test'])
})

test('IP literal destinations never reach the cache or the resolver', async (t) => {
  const echo = await startEcho(t)
  const resolver = mapResolver({})
  const { server, port } = await startSocks(t, { resolver }, (s) => s.register(dnsCache))
  // An IP written as a domain name (ATYP 03) does reach the server's resolver: the cache answers it itself.
  assert.equal(await connectThrough(t, port, '127.0.0.1', echo.port), 0)
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', echo.port)]))
  assert.deepEqual((await c.read(12)).subarray(0, 4), hex('0500 0500'))
  c.socket.end()
  await c.readToEnd()
  const cache = cacheOf(server)
  assert.deepEqual(await cache.resolve('::1'), [{ address: '::1', family: 6 }])
  assert.deepEqual(resolver.calls, [])
  assert.deepEqual(cache.stats(), { hits: 0, misses: 0, coalesced: 0, size: 0 })
})

test('localhost resolves through the real system resolver (hosts file); case and a trailing dot share the entry', async (t) => {
  const echo = await startEcho(t)
  // useDnsTtl: true on purpose: localhost is never sent to DNS, so this stays on the machine.
  const { server, port } = await startSocks(t, {}, (s) => s.register(dnsCache, { useDnsTtl: true }))
  const cache = cacheOf(server)
  assert.equal(cache.wrapped, systemResolver)
  assert.equal(await connectThrough(t, port, 'localhost', echo.port), 0)
  assert.equal(await connectThrough(t, port, 'LocalHost.', echo.port), 0)
  assert.deepEqual(cache.stats(), { hits: 1, misses: 1, coalesced: 0, size: 1 })
  assert.equal(cache.remainingTtl('localhost') > 55, true, 'no TTL from the system: the 60 s default')
})

test('the plugin wraps the resolver current at setup, including one set by an earlier plugin', async (t) => {
  const injected = mapResolver({ 'x.test': ['127.0.0.1'] })
  const { server } = await startSocks(t, {}, (s) => {
    s.register({ name: 'my-resolver', setup: (host) => host.setResolver(injected) })
    s.register(dnsCache)
  })
  const cache = cacheOf(server)
  assert.equal(server.resolver, cache)
  assert.equal(cache.wrapped, injected)
  assert.equal(getDnsCache(createServer()), undefined, 'no cache on a server without the plugin')
})

test('stats: hits, misses, coalesced, size; clear() and resetStats()', async () => {
  const { resolver, release } = gatedResolver(mapResolver({ 'a.test': ['127.0.0.1'], 'b.test': ['::1'] }))
  const cache = new DnsCache(resolver)
  const first = Promise.all([cache.resolve('a.test'), cache.resolve('A.TEST'), cache.resolve('a.test.')])
  release()
  assert.deepEqual(await first, [[{ address: '127.0.0.1', family: 4 }], [{ address: '127.0.0.1', family: 4 }], [{ address: '127.0.0.1', family: 4 }]])
  await cache.resolve('a.test')
  await cache.resolve('b.test')
  assert.deepEqual(cache.stats(), { hits: 1, misses: 2, coalesced: 2, size: 2 })
  assert.deepEqual([cache.hits, cache.misses, cache.coalesced, cache.size], [1, 2, 2, 2])
  const answer = await cache.resolve('a.test')
  answer.pop()
  assert.equal((await cache.resolve('a.test')).length, 1, 'callers get their own array')
  cache.clear()
  assert.equal(cache.size, 0)
  await cache.resolve('a.test')
  assert.deepEqual(resolver.calls, ['a.test', 'b.test', 'a.test'])
  cache.resetStats()
  assert.deepEqual(cache.stats(), { hits: 0, misses: 0, coalesced: 0, size: 1 })

  const late = gatedResolver(mapResolver({ 'c.test': ['127.0.0.1'] }))
  const fresh = new DnsCache(late.resolver)
  const pending = fresh.resolve('c.test')
  fresh.clear()
  late.release()
  assert.deepEqual(await pending, [{ address: '127.0.0.1', family: 4 }], 'the caller still gets its answer')
  assert.equal(fresh.has('c.test'), false, 'an answer to a query from before clear() is not stored')
})

test('an aborted lookup releases only its caller; the shared query goes on for the others', async () => {
  const { resolver, release } = gatedResolver(scriptedResolver({ 'a.test': [{ address: '127.0.0.1', family: 4 }] }))
  const inner = resolver as unknown as { calls: string[] }
  const cache = new DnsCache(resolver)
  const leaving = new AbortController()
  const staying = new AbortController()
  const left = cache.resolve('a.test', { signal: leaving.signal })
  const stayed = cache.resolve('a.test', { signal: staying.signal })
  const noSignal = cache.resolve('a.test')
  leaving.abort()
  await assert.rejects(left, { name: 'AbortError' })
  release()
  assert.deepEqual(await stayed, [{ address: '127.0.0.1', family: 4 }])
  assert.deepEqual(await noSignal, [{ address: '127.0.0.1', family: 4 }])
  assert.equal(inner.calls.length, 1)
  assert.equal(cache.has('a.test'), true)
  await assert.rejects(cache.resolve('b.test', { signal: AbortSignal.abort() }), { name: 'AbortError' })
  assert.equal(inner.calls.length, 1, 'an already aborted lookup asks nobody')
})

test('when every caller has aborted, the query is aborted and the next lookup starts afresh', async () => {
  const resolver = scriptedResolver({ 'a.test': [{ address: '127.0.0.1', family: 4 }] })
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  const slow: Resolver = {
    async resolve(hostname, options) {
      const answer = resolver.resolve(hostname, options)
      await gate
      options?.signal?.throwIfAborted()
      return answer
    },
  }
  const cache = new DnsCache(slow)
  const one = new AbortController()
  const two = new AbortController()
  const a = cache.resolve('a.test', { signal: one.signal })
  const b = cache.resolve('a.test', { signal: two.signal })
  one.abort()
  assert.equal(resolver.signals[0]!.aborted, false, 'one caller left, one is still waiting')
  two.abort()
  assert.equal(resolver.signals[0]!.aborted, true, 'nobody is waiting any more')
  await assert.rejects(a, { name: 'AbortError' })
  await assert.rejects(b, { name: 'AbortError' })
  const fresh = cache.resolve('a.test')
  release()
  assert.deepEqual(await fresh, [{ address: '127.0.0.1', family: 4 }])
  assert.equal(resolver.calls.length, 2)
  assert.equal(cache.has('a.test'), true)
})

test('option validation names the plugin and the field', () => {
  const cases: [unknown, RegExp][] = [
    [{ minTtl: -1 }, /^plugin dns-cache: minTtl: must be a non-negative number of seconds, found number -1$/],
    [{ maxTtl: '60' }, /^plugin dns-cache: maxTtl: must be a non-negative number of seconds, found "60"$/],
    [{ negativeTtl: Number.NaN }, /^plugin dns-cache: negativeTtl: must be a non-negative number of seconds, found number NaN$/],
    [{ max: 0 }, /^plugin dns-cache: max: must be a positive whole number of entries, found number 0$/],
    [{ max: 2.5 }, /^plugin dns-cache: max: /],
    [{ minTtl: 100, maxTtl: 10 }, /^plugin dns-cache: minTtl: must not exceed maxTtl \(100 > 10\)$/],
    [{ useDnsTtl: 'yes' }, /^plugin dns-cache: useDnsTtl: must be true or false, found "yes"$/],
    [{ maxTTL: 60 }, /^plugin dns-cache: maxTTL: unknown key; did you mean "maxTtl"\?$/],
    [{ negativTtl: 5 }, /did you mean "negativeTtl"\?/],
    [{ size: 5 }, /^plugin dns-cache: size: unknown key \(known keys: max, minTtl, maxTtl, negativeTtl, defaultTtl, useDnsTtl, clock\)$/],
    [{ clock: {} }, /^plugin dns-cache: clock: must be an object with a now\(\) method/],
    [[], /^plugin dns-cache: options must be an object/],
    ['fast', /^plugin dns-cache: options must be an object like \{ max: 10000, minTtl: 5 \}, found "fast"$/],
  ]
  for (const [options, message] of cases) {
    assert.throws(
      () => createServer().register(dnsCache, options),
      (err: unknown) => isSocksError(err) && err.code === 'ERR_PLUGIN_OPTIONS' && message.test(err.message),
      `options ${JSON.stringify(options)} should fail with ${message}`,
    )
  }
  assert.deepEqual(dnsCache.parseOptions!(undefined, { plugin: 'dns-cache', fail: () => assert.fail('no failure expected') }), {
    max: 10_000, minTtl: 5, maxTtl: 3600, negativeTtl: 5, defaultTtl: 60, useDnsTtl: false, clock: null,
  })
  assert.throws(() => new DnsCache(systemResolver, { max: -1 }), { code: 'ERR_SOCKS_INVALID_ARGUMENT', message: /^DnsCache options\.max: / })
})

/**
 * A DNS server on loopback that answers A queries for `records` with the given TTL and AAAA with
 * no records (NODATA). Just enough of RFC 1035 §4 for c-ares.
 */
async function startDnsServer(t: TestContext, records: Record<string, { address: string; ttl: number }>) {
  const socket = createSocket('udp4')
  const queries: string[] = []
  socket.on('message', (query, peer) => {
    // Header (12 bytes), then QNAME as length-prefixed labels ending in 0, QTYPE, QCLASS.
    let offset = 12
    const labels: string[] = []
    while (query[offset]! !== 0) {
      labels.push(query.toString('latin1', offset + 1, offset + 1 + query[offset]!))
      offset += 1 + query[offset]!
    }
    const questionEnd = offset + 5
    const qtype = query.readUInt16BE(offset + 1)
    const name = labels.join('.').toLowerCase()
    queries.push(`${name}/${qtype === 1 ? 'A' : qtype === 28 ? 'AAAA' : qtype}`)
    const record = records[name]
    const answers: Buffer[] = []
    if (record !== undefined && qtype === 1) {
      const rr = Buffer.alloc(16)
      rr.writeUInt16BE(0xc00c, 0) // name: pointer to the question's QNAME
      rr.writeUInt16BE(1, 2) // TYPE A
      rr.writeUInt16BE(1, 4) // CLASS IN
      rr.writeUInt32BE(record.ttl, 6)
      rr.writeUInt16BE(4, 10)
      record.address.split('.').forEach((part, i) => (rr[12 + i] = Number(part)))
      answers.push(rr)
    }
    const header = Buffer.alloc(12)
    query.copy(header, 0, 0, 2) // ID
    header.writeUInt16BE(record === undefined ? 0x8183 : 0x8180, 2) // QR, RD, RA; RCODE 3 (NXDOMAIN) for unknown names
    header.writeUInt16BE(1, 4)
    header.writeUInt16BE(answers.length, 6)
    socket.send([header, query.subarray(12, questionEnd), ...answers], peer.port, peer.address)
  })
  socket.bind(0, '127.0.0.1')
  await once(socket, 'listening')
  t.after(() => socket.close())
  return { server: `127.0.0.1:${socket.address().port}`, queries }
}

test('the DNS TTL probe reads A/AAAA TTLs from a DNS server (a loopback one here)', async (t) => {
  const dns = await startDnsServer(t, { 'www.example.test': { address: '127.0.0.9', ttl: 1234 } })
  const probe = createDnsTtlProbe({ servers: [dns.server], timeout: 500, tries: 1 })
  assert.deepEqual([...(await probe('www.example.test'))], [['127.0.0.9', 1234]])
  assert.deepEqual([...(await probe('missing.example.test'))], [], 'NXDOMAIN: no TTL known, no error')
  assert.deepEqual(dns.queries.sort(), ['missing.example.test/A', 'missing.example.test/AAAA', 'www.example.test/A', 'www.example.test/AAAA'])
})

test('with a TTL probe, the DNS TTL applies only when DNS agrees with the resolver (a hosts-file override keeps the default)', async (t) => {
  const dns = await startDnsServer(t, {
    'www.example.test': { address: '127.0.0.9', ttl: 1234 },
    'override.example.test': { address: '127.0.0.9', ttl: 1234 },
    'tiny.example.test': { address: '127.0.0.7', ttl: 0 },
  })
  const resolver = mapResolver({ 'www.example.test': ['127.0.0.9'], 'override.example.test': ['127.0.0.5'], 'tiny.example.test': ['127.0.0.7'], 'intranet': ['127.0.0.6'] })
  const clock = manualClock()
  const cache = new DnsCache(resolver, { clock, ttlProbe: createDnsTtlProbe({ servers: [dns.server], timeout: 500, tries: 1 }) })
  await cache.resolve('www.example.test')
  await cache.resolve('override.example.test')
  await cache.resolve('tiny.example.test')
  await cache.resolve('intranet')
  await waitFor(() => cache.remainingTtl('www.example.test') === 1234 && cache.remainingTtl('tiny.example.test') === 5)
  assert.equal(cache.remainingTtl('override.example.test'), 60)
  assert.equal(cache.remainingTtl('intranet'), 60)
  assert.equal(dns.queries.some((q) => q.startsWith('intranet')), false, 'single-label names are not sent to DNS')
})

test('isWorthADnsProbe: names that must not go to unicast DNS', () => {
  for (const name of ['localhost', 'db.localhost', 'printer.local', 'x.invalid', 'abc.onion', 'intranet']) assert.equal(isWorthADnsProbe(name), false, name)
  for (const name of ['example.com', 'a.b.example.org', 'localhost.example.com']) assert.equal(isWorthADnsProbe(name), true, name)
})
