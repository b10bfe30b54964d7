// Prometheus metrics, scraped over HTTP from a server driven with real clients.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { get } from 'node:http'
import { createSocket } from 'node:dgram'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { createServer, definePlugin, isSocksError, loadConfig, type ConnectContext, type PluginMetric, type SocksServer } from 'socksmith'
import { silentLogger } from 'socksmith/ops'
import { startMetrics } from 'socksmith/ops'
import { socksAssociate, socksConnect } from 'socksmith/client'
import auth from 'socksmith/plugins/auth'
import rules from 'socksmith/plugins/rules'
import dnsCache from 'socksmith/plugins/dns-cache'
import upstream from 'socksmith/plugins/upstream'
import { mapResolver, startEcho, startSocks, startUdpEcho, trackClient, waitFor } from '../helpers/net.js'

const LOGIN = { username: 'alice', password: 'metrics-secret' }

/** GET a URL on loopback (a fresh connection each time): status, content type and body. */
async function fetchText(url: string): Promise<{ status: number; type: string; body: string }> {
  const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => get(url, { agent: false }, resolve).on('error', reject))
  let body = ''
  for await (const chunk of res) body += String(chunk)
  return { status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }
}

/**
 * Samples of a Prometheus text exposition, keyed `name{a="x",b="y"}` with labels sorted, so
 * assertions do not depend on the order prom-client prints labels in.
 */
function parseSamples(text: string): Map<string, number> {
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    assert.ok(match !== null, `not a sample line: ${line}`)
    const labels = match[2] === undefined ? [] : [...match[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => `${m[1]}="${m[2]}"`).sort()
    samples.set(labels.length === 0 ? match[1]! : `${match[1]}{${labels.join(',')}}`, Number(match[3]))
  }
  return samples
}

async function scrape(url: string): Promise<Map<string, number>> {
  const res = await fetchText(url)
  assert.equal(res.status, 200)
  assert.match(res.type, /^text\/plain; version=0\.0\.4/)
  return parseSamples(res.body)
}

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = createNetServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** One CONNECT that echoes `payload`, as `login` (null: no authentication), waited for until the server saw it end. */
async function connectOnce(t: TestContext, server: SocksServer, port: number, destination: { host: string; port: number }, payload: string, login: typeof LOGIN | null = LOGIN): Promise<void> {
  const ended = once(server, 'disconnect')
  const { socket } = await socksConnect({ host: '127.0.0.1', port, ...login }, destination)
  trackClient(t, socket)
  socket.end(payload)
  let echoed = ''
  for await (const chunk of socket) echoed += String(chunk)
  assert.equal(echoed, payload)
  await ended
}

test('scraped over HTTP: connections by outcome and reply, bytes, latencies, UDP, dns-cache, upstream failures, per user', async (t) => {
  const echo = await startEcho(t)
  const udpEcho = await startUdpEcho(t)
  const deniedPort = echo.port + 1 === 65536 ? echo.port - 1 : echo.port + 1
  const deadUpstream = await closedPort()
  const { server, port } = await startSocks(t, { resolver: mapResolver({ 'echo.test': ['127.0.0.1'] }) }, (s) => {
    s.register(auth, { users: { alice: LOGIN.password } })
    s.register(rules, { rules: [{ action: 'deny', ports: deniedPort }] })
    s.register(dnsCache)
    s.register(upstream, { routes: [{ match: { domains: 'broken.test' }, proxy: `socks5h://127.0.0.1:${deadUpstream}` }] })
  })
  const metrics = await startMetrics(server, { port: 0, perUser: true })
  t.after(() => metrics.close())
  const address = metrics.address()!
  assert.equal(address.address, '127.0.0.1', 'loopback unless told otherwise')
  const url = `http://127.0.0.1:${address.port}/metrics`

  // Three CONNECTs by name (one DNS miss, two hits), 5 bytes each way each.
  for (let i = 0; i < 3; i++) await connectOnce(t, server, port, { host: 'echo.test', port: echo.port }, 'hello')
  // Refused by a rule: REP 02.
  let ended = once(server, 'disconnect')
  await assert.rejects(socksConnect({ host: '127.0.0.1', port, ...LOGIN }, { host: '127.0.0.1', port: deniedPort }))
  await ended
  // Routed to an upstream that is down: REP 01 and one upstream failure.
  ended = once(server, 'disconnect')
  await assert.rejects(socksConnect({ host: '127.0.0.1', port, ...LOGIN }, { host: 'broken.test', port: 80 }))
  await ended

  // A UDP association: two datagrams each way, and one from a stranger that is dropped.
  let control: ConnectContext | null = null
  server.once('connection', (ctx) => {
    control = ctx as unknown as ConnectContext
  })
  const association = await socksAssociate({ host: '127.0.0.1', port, ...LOGIN })
  const received: string[] = []
  association.on('message', (data) => received.push(data.toString()))
  association.send(Buffer.from('one'), { host: '127.0.0.1', port: udpEcho.port })
  association.send(Buffer.from('two'), { host: '127.0.0.1', port: udpEcho.port })
  await waitFor(() => received.length === 2)
  const stranger = createSocket('udp4')
  t.after(() => stranger.close())
  stranger.send(Buffer.from('0000000100000000000078', 'hex'), association.relay.port, association.relay.host)
  await waitFor(() => control?.association?.datagramsDropped === 1)

  const during = await scrape(url)
  assert.equal(during.get('socksmith_connections_active'), 1)
  assert.equal(during.get('socksmith_udp_associations_active'), 1)
  assert.equal(during.get('socksmith_udp_associations_total'), 0, 'counted when it ends')

  ended = once(server, 'disconnect')
  association.close()
  await ended
  // A wrong password: no reply, outcome auth_failed, no user.
  ended = once(server, 'disconnect')
  await assert.rejects(socksConnect({ host: '127.0.0.1', port, username: 'alice', password: 'wrong' }, { host: '127.0.0.1', port: echo.port }))
  await ended

  const m = await scrape(url)
  const expected: Record<string, number> = {
    'socksmith_connections_active': 0,
    'socksmith_connections_total{outcome="success",protocol="socks5",reply="0"}': 4,
    'socksmith_connections_total{outcome="failed",protocol="socks5",reply="2"}': 1,
    'socksmith_connections_total{outcome="failed",protocol="socks5",reply="1"}': 1,
    'socksmith_connections_total{outcome="auth_failed",protocol="socks5",reply="none"}': 1,
    'socksmith_bytes_total{direction="from_client"}': 15,
    'socksmith_bytes_total{direction="to_client"}': 15,
    'socksmith_handshake_duration_seconds_count': 6,
    'socksmith_connect_duration_seconds_count{result="success"}': 3,
    'socksmith_connect_duration_seconds_count{result="failure"}': 2,
    'socksmith_udp_associations_active': 0,
    'socksmith_udp_associations_total': 1,
    'socksmith_udp_datagrams_total{direction="out"}': 2,
    'socksmith_udp_datagrams_total{direction="in"}': 2,
    'socksmith_udp_datagrams_dropped_total': 1,
    'socksmith_dns_cache_hits_total': 2,
    'socksmith_dns_cache_misses_total': 1,
    [`socksmith_upstream_failures_total{upstream="socks5h://127.0.0.1:${deadUpstream}"}`]: 1,
    'socksmith_user_connections_total{user="alice"}': 6,
    'socksmith_user_bytes_total{direction="from_client",user="alice"}': 15,
    'socksmith_user_bytes_total{direction="to_client",user="alice"}': 15,
  }
  for (const [key, value] of Object.entries(expected)) assert.equal(m.get(key), value, key)
  // Exactly these outcomes: nothing else was counted.
  const outcomes = [...m.keys()].filter((k) => k.startsWith('socksmith_connections_total'))
  assert.equal(outcomes.length, 4, outcomes.join(' '))
  // Histograms: every observation is in the +Inf bucket, and the sum is a duration in seconds.
  assert.equal(m.get('socksmith_handshake_duration_seconds_bucket{le="+Inf"}'), 6)
  assert.ok((m.get('socksmith_handshake_duration_seconds_sum') ?? -1) >= 0)

  const names = new Set([...m.keys()].map((k) => k.replace(/\{.*$/, '').replace(/_(bucket|sum|count)$/, '')))
  assert.deepEqual([...names].sort(), [
    'socksmith_bytes_total',
    'socksmith_connect_duration_seconds',
    'socksmith_connections_active',
    'socksmith_connections_total',
    'socksmith_dns_cache_hits_total',
    'socksmith_dns_cache_misses_total',
    'socksmith_handshake_duration_seconds',
    'socksmith_udp_associations_active',
    'socksmith_udp_associations_total',
    'socksmith_udp_datagrams_dropped_total',
    'socksmith_udp_datagrams_total',
    'socksmith_upstream_failures_total',
    'socksmith_user_bytes_total',
    'socksmith_user_connections_total',
  ])
})

test('a registry per server; no per-user metrics unless asked; /metrics only; close() stops the listener', async (t) => {
  const echo = await startEcho(t)
  const a = await startSocks(t)
  const b = await startSocks(t)
  const metricsA = await startMetrics(a.server, { port: 0 })
  const metricsB = await startMetrics(b.server, { host: '127.0.0.1', port: 0 })
  t.after(() => Promise.all([metricsA.close(), metricsB.close()]))
  const urlA = `http://127.0.0.1:${metricsA.address()!.port}`
  const urlB = `http://127.0.0.1:${metricsB.address()!.port}`

  const ended = once(a.server, 'disconnect')
  const { socket } = await socksConnect({ host: '127.0.0.1', port: a.port }, { host: '127.0.0.1', port: echo.port })
  trackClient(t, socket)
  socket.end('abc')
  for await (const _ of socket);
  await ended

  const fromA = await scrape(`${urlA}/metrics`)
  const fromB = await scrape(`${urlB}/metrics`)
  assert.equal(fromA.get('socksmith_connections_total{outcome="success",protocol="socks5",reply="0"}'), 1)
  assert.equal(fromA.get('socksmith_bytes_total{direction="from_client"}'), 3)
  assert.equal(fromB.get('socksmith_connections_total{outcome="success",protocol="socks5",reply="0"}'), undefined, "b saw none of a's connections")
  assert.equal(fromB.get('socksmith_dns_cache_hits_total'), undefined, 'no dns-cache plugin, no dns-cache series: the plugin brings its own')
  assert.ok(![...fromA.keys()].some((k) => k.startsWith('socksmith_user_')))

  assert.equal((await fetchText(`${urlA}/`)).status, 404)
  await metricsA.close()
  assert.equal(metricsA.address(), null)
  await assert.rejects(fetchText(`${urlA}/metrics`), /ECONNREFUSED/)
})

test('a pool failing over: the dead member is counted once, the connection is logged via the member that carried it', async (t) => {
  const echo = await startEcho(t)
  const live = await startSocks(t)
  const dead = await closedPort()
  const lines: Record<string, unknown>[] = []
  const logger = { error() {}, warn() {}, debug() {}, info: (message: string, fields?: Record<string, unknown>) => void (message === 'access' && lines.push(fields ?? {})) }
  const { server, port } = await startSocks(t, { logger, accessLog: true }, (s) => {
    s.register(upstream, { pool: [`socks5://127.0.0.1:${dead}`, `socks5://127.0.0.1:${live.port}`], strategy: 'failover' })
  })
  const metrics = await startMetrics(server, { port: 0 })
  t.after(() => metrics.close())
  const ended = once(server, 'disconnect')
  const { socket } = await socksConnect({ host: '127.0.0.1', port }, { host: '127.0.0.1', port: echo.port })
  trackClient(t, socket)
  socket.end('pool')
  for await (const _ of socket);
  await ended

  const m = await scrape(`http://127.0.0.1:${metrics.address()!.port}/metrics`)
  assert.equal(m.get(`socksmith_upstream_failures_total{upstream="socks5://127.0.0.1:${dead}"}`), 1)
  assert.equal(m.get(`socksmith_upstream_failures_total{upstream="socks5://127.0.0.1:${live.port}"}`), undefined)
  assert.equal(m.get('socksmith_connections_total{outcome="success",protocol="socks5",reply="0"}'), 1)
  assert.equal(lines.length, 1)
  assert.equal(lines[0]!.via, `socks5://127.0.0.1:${live.port}`)
})

test('perUser: { maxUsers: 5 } with 20 distinct users: 5 user series and other, and the totals still add up', async (t) => {
  const echo = await startEcho(t)
  // A verify that accepts any name: the case that grew one series per name, for good.
  const { server, port } = await startSocks(t, {}, (s) => s.register(auth, { verify: () => true }))
  const metrics = await startMetrics(server, { port: 0, perUser: { maxUsers: 5 } })
  t.after(() => metrics.close())
  for (let i = 0; i < 20; i++) {
    const ended = once(server, 'disconnect')
    const { socket } = await socksConnect({ host: '127.0.0.1', port, username: `user-${i}`, password: 'any' }, { host: '127.0.0.1', port: echo.port })
    trackClient(t, socket)
    socket.end('x'.repeat(i + 1))
    for await (const _ of socket);
    await ended
  }

  const m = await scrape(`http://127.0.0.1:${metrics.address()!.port}/metrics`)
  const series = (name: string): [string, number][] => [...m].filter(([key]) => key.startsWith(`${name}{`))
  const users = (name: string): string[] => series(name).map(([key]) => /user="([^"]*)"/.exec(key)![1]!).sort()
  const firstFive = ['user-0', 'user-1', 'user-2', 'user-3', 'user-4']
  assert.deepEqual(users('socksmith_user_connections_total'), [...firstFive, 'other'].sort())
  assert.equal(series('socksmith_user_bytes_total').length, 12, 'six users, two directions')
  assert.equal(m.get('socksmith_user_connections_total{user="other"}'), 15)
  assert.equal(m.get('socksmith_user_connections_total{user="user-3"}'), 1)
  assert.equal(m.get('socksmith_user_bytes_total{direction="from_client",user="user-3"}'), 4)
  // 1 + 2 + ... + 20 bytes each way: users and other together are every byte and every connection.
  const sum = (entries: [string, number][]): number => entries.reduce((total, [, value]) => total + value, 0)
  assert.equal(sum(series('socksmith_user_connections_total')), 20)
  assert.equal(m.get('socksmith_connections_total{outcome="success",protocol="socks5",reply="0"}'), 20)
  for (const direction of ['from_client', 'to_client']) {
    const perUser = series('socksmith_user_bytes_total').filter(([key]) => key.includes(`direction="${direction}"`))
    assert.equal(sum(perUser), 210, direction)
    assert.equal(m.get(`socksmith_bytes_total{direction="${direction}"}`), 210, direction)
  }
  assert.equal(m.get('socksmith_user_bytes_total{direction="from_client",user="other"}'), 210 - 15)
})

test('perUser: true tracks up to 100 users; a bad maxUsers is refused', async (t) => {
  const { server } = await startSocks(t)
  for (const perUser of [{ maxUsers: 0 }, { maxUsers: 2.5 }, { maxUsers: '5' }, 'yes']) {
    const attempt = startMetrics(server, { port: 0, perUser: perUser as { maxUsers: number } })
    t.after(() => attempt.then((metrics) => metrics.close(), () => {}))
    await assert.rejects(
      attempt,
      (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_INVALID_ARGUMENT' && /^metrics perUser/.test(err.message),
      JSON.stringify(perUser),
    )
  }
  const loaded = await loadConfig({ config: { metrics: { port: 0, perUser: true } } })
  assert.deepEqual(loaded.config.metrics?.perUser, { maxUsers: 100 })
})

/** The lines of a scrape that are about `name` (HELP, TYPE, samples), in order. */
function linesOf(body: string, name: string): string[] {
  return body.split('\n').filter((line) => line === `# HELP ${name}` || line.startsWith(`# HELP ${name} `) || line.startsWith(`# TYPE ${name} `) || line.startsWith(`${name} `) || line.startsWith(`${name}{`))
}

/** A plugin that sells tickets: it counts them itself and registers its metrics with the host. */
function ticketOffice(sold: Map<string, number>, queue: { length: number }, extra: PluginMetric[] = []) {
  return definePlugin({
    name: 'ticket-office',
    setup(host) {
      host.registerMetrics(
        {
          name: 'socksmith_tickets_sold_total',
          help: 'Tickets sold, by kind.',
          type: 'counter',
          labelNames: ['kind'],
          collect: () => [...sold].map(([kind, value]) => ({ labels: { kind }, value })),
        },
        { name: 'socksmith_ticket_queue', help: 'Clients waiting for a ticket.', type: 'gauge', collect: () => queue.length },
        ...extra,
      )
    },
  })
}

test('a plugin registers metrics of its own (host.registerMetrics): read at scrape time, counters carried over a reload so they never go back', async (t) => {
  const sold = new Map([['adult', 2], ['child', 0]])
  const queue = { length: 3 }
  const { server } = await startSocks(t, {}, (s) => s.register(ticketOffice(sold, queue)))
  const metrics = await startMetrics(server, { port: 0 })
  t.after(() => metrics.close())
  const url = `http://127.0.0.1:${metrics.address()!.port}/metrics`

  const first = (await fetchText(url)).body
  assert.deepEqual(linesOf(first, 'socksmith_tickets_sold_total'), [
    '# HELP socksmith_tickets_sold_total Tickets sold, by kind.',
    '# TYPE socksmith_tickets_sold_total counter',
    'socksmith_tickets_sold_total{kind="adult"} 2',
    'socksmith_tickets_sold_total{kind="child"} 0',
  ])
  assert.deepEqual(linesOf(first, 'socksmith_ticket_queue'), ['# HELP socksmith_ticket_queue Clients waiting for a ticket.', '# TYPE socksmith_ticket_queue gauge', 'socksmith_ticket_queue 3'])
  sold.set('adult', 5)
  queue.length = 1
  let m = await scrape(url)
  assert.equal(m.get('socksmith_tickets_sold_total{kind="adult"}'), 5, 'read at scrape time')
  assert.equal(m.get('socksmith_ticket_queue'), 1)

  // A reload sets the plugin up anew: its own counts start from 0, the series go on from 5.
  const soldAfter = new Map([['adult', 1], ['senior', 4]])
  await server.reload(createServer({ logger: silentLogger }).register(ticketOffice(soldAfter, { length: 7 })))
  m = await scrape(url)
  assert.equal(m.get('socksmith_tickets_sold_total{kind="adult"}'), 6, 'the old setup counted 5, the new one 1')
  assert.equal(m.get('socksmith_tickets_sold_total{kind="child"}'), 0)
  assert.equal(m.get('socksmith_tickets_sold_total{kind="senior"}'), 4)
  assert.equal(m.get('socksmith_ticket_queue'), 7, 'a gauge is what the live setup says')

  // Reloaded without the plugin: its counters keep their totals, its gauge is gone.
  await server.reload(createServer({ logger: silentLogger }))
  m = await scrape(url)
  assert.equal(m.get('socksmith_tickets_sold_total{kind="adult"}'), 6)
  assert.equal(m.get('socksmith_tickets_sold_total{kind="senior"}'), 4)
  assert.equal(m.has('socksmith_ticket_queue'), false)
  assert.equal(m.get('socksmith_connections_active'), 0, "the core's metrics are still there")
})

test('the dns-cache counters go on over a reload, which sets up a new cache', async (t) => {
  const echo = await startEcho(t)
  const resolver = mapResolver({ 'echo.test': ['127.0.0.1'] })
  const { server, port } = await startSocks(t, { resolver }, (s) => s.register(dnsCache))
  const metrics = await startMetrics(server, { port: 0 })
  t.after(() => metrics.close())
  const url = `http://127.0.0.1:${metrics.address()!.port}/metrics`
  const connectByName = (): Promise<void> => connectOnce(t, server, port, { host: 'echo.test', port: echo.port }, 'x', null)
  await connectByName()
  await connectByName()
  let m = await scrape(url)
  assert.deepEqual([m.get('socksmith_dns_cache_hits_total'), m.get('socksmith_dns_cache_misses_total')], [1, 1])
  await server.reload(createServer({ logger: silentLogger, resolver }).register(dnsCache))
  await connectByName()
  m = await scrape(url)
  assert.deepEqual([m.get('socksmith_dns_cache_hits_total'), m.get('socksmith_dns_cache_misses_total')], [1, 2], 'the new cache missed once; the old counts stay')
  assert.deepEqual(resolver.calls, ['echo.test', 'echo.test'])
})

test('registerMetrics: a bad or duplicate metric fails setup naming the plugin; a clash with a core name or a failing collect is logged and the scrape goes on', async (t) => {
  const noop = () => 0
  const cases: [PluginMetric, RegExp][] = [
    [{ name: 'tickets sold', help: 'x', type: 'counter', collect: noop }, /plugin ticket-office: setup failed: registerMetrics: "tickets sold" is not a Prometheus metric name/],
    [{ name: 'socksmith_x', help: '', type: 'counter', collect: noop }, /registerMetrics: socksmith_x: help must be a non-empty string/],
    [{ name: 'socksmith_x', help: 'x', type: 'histogram' as 'counter', collect: noop }, /registerMetrics: socksmith_x: type must be "counter" or "gauge"/],
    [{ name: 'socksmith_x', help: 'x', type: 'gauge', labelNames: ['le-bad'], collect: noop }, /registerMetrics: socksmith_x: "le-bad" is not a label name/],
    [{ name: 'socksmith_x', help: 'x', type: 'gauge', collect: 5 as unknown as () => number }, /registerMetrics: socksmith_x: collect must be a function/],
    [{ name: 'socksmith_ticket_queue', help: 'again', type: 'gauge', collect: noop }, /registerMetrics: socksmith_ticket_queue is registered twice \(by ticket-office and ticket-office\)/],
  ]
  for (const [metric, expected] of cases) {
    const server = createServer({ logger: silentLogger }).register(ticketOffice(new Map(), { length: 0 }, [metric]))
    await assert.rejects(server.prepare(), (err: unknown) => isSocksError(err) && err.code === 'ERR_PLUGIN_SETUP' && expected.test(err.message), metric.name)
  }

  const errors: string[] = []
  const logger = { ...silentLogger, error: (message: string) => void errors.push(message) }
  const clash: PluginMetric = { name: 'socksmith_connections_active', help: 'mine', type: 'gauge', collect: () => 99 }
  const broken: PluginMetric = { name: 'socksmith_broken_total', help: 'Throws.', type: 'counter', collect: () => { throw new Error('no counts today') } }
  const { server } = await startSocks(t, { logger }, (s) => s.register(ticketOffice(new Map([['adult', 1]]), { length: 2 }, [clash, broken])))
  const metrics = await startMetrics(server, { port: 0 })
  t.after(() => metrics.close())
  const url = `http://127.0.0.1:${metrics.address()!.port}/metrics`
  for (let i = 0; i < 2; i++) {
    const m = await scrape(url)
    assert.equal(m.get('socksmith_connections_active'), 0, "the core's metric stands")
    assert.equal(m.get('socksmith_tickets_sold_total{kind="adult"}'), 1, "the plugin's other metrics are served")
    assert.equal(m.get('socksmith_broken_total'), 0, 'no good read yet: a counter without labels starts at 0')
  }
  assert.deepEqual(errors, [
    'metrics: plugin ticket-office registered socksmith_connections_active, a name socksmith uses; it is not served',
    'metrics: plugin ticket-office: collecting socksmith_broken_total failed: no counts today',
  ], 'each logged once')
})
