import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import type { Counter, Registry } from 'prom-client'
import type { ConnectionContext } from '../core/context.js'
import { SocksError, isSocksError } from '../core/errors.js'
import { onlyForwarded } from './access-log.js'
import { describe, isPlainObject } from '../plugin-kit/option-values.js'
import { Command, Reply } from '../protocol/constants.js'
import type { PluginMetric, PluginMetricSample, RegisteredMetric } from '../core/plugin.js'
import type { SocksServer } from '../core/server.js'

/** What the metrics of a server count, for `startMetrics()` and `collectMetrics()`. */
export interface MetricsOptions {
  /**
   * Per-user counters (`socksmith_user_*`, labelled by user name). The first `maxUsers` distinct
   * users (default 100; `true` means that default) get series of their own, every user after them
   * is counted under `user="other"`, so the registry stays bounded however many names `verify`
   * accepts. Default false.
   */
  perUser?: boolean | { maxUsers?: number }
}

/** Users with series of their own under `perUser: true`. */
export const DEFAULT_MAX_USERS = 100

/** The `user` label of everyone past `maxUsers` (a user really named so is counted there too). */
const OTHER_USERS = 'other'

/**
 * Checks a `perUser` option and returns its full form: null when off (`false`, undefined), else
 * `{ maxUsers }`. A problem goes to `fail` with its path below the option (`''` or `maxUsers`).
 */
export function checkPerUser(raw: unknown, fail: (path: string, message: string) => void): { maxUsers: number } | null {
  if (raw === undefined || raw === false) return null
  if (raw === true) return { maxUsers: DEFAULT_MAX_USERS }
  if (!isPlainObject(raw)) {
    fail('', `expected true, false or { maxUsers }, found ${describe(raw)}`)
    return null
  }
  const maxUsers = raw.maxUsers ?? DEFAULT_MAX_USERS
  if (typeof maxUsers !== 'number' || !Number.isInteger(maxUsers) || maxUsers < 1) {
    fail('maxUsers', `expected an integer from 1 up, found ${describe(maxUsers)}`)
    return null
  }
  return { maxUsers }
}

/** Options of `startMetrics()`: what is counted, and where the HTTP listener listens. */
export interface StartMetricsOptions extends MetricsOptions {
  /** Default 127.0.0.1: the metrics (user names with `perUser`) are not for everyone. */
  host?: string
  /** 0 picks a free port. */
  port: number
}

/** The metrics of one server, in a registry of their own. */
export interface ServerMetrics {
  /** A prom-client registry holding only this server's metrics: `await registry.metrics()`. */
  readonly registry: Registry
  /** Stops counting (removes the server listeners and channel subscriptions). */
  detach(): void
}

/** The HTTP listener `startMetrics()` opened. */
export interface MetricsServer {
  readonly registry: Registry
  /** Its bound address (null once closed). */
  address(): AddressInfo | null
  /** Stops counting and closes the listener. */
  close(): Promise<void>
}

/** Seconds; handshakes and connects on a LAN take milliseconds, across the world up to seconds. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** Channel name of the upstream failures (see diagnostics.ts); subscribed by name, as anyone can. */
const UPSTREAM_FAILURE = 'socksmith:upstream:failure'

/**
 * Collects Prometheus metrics of `server` into a registry of its own (never prom-client's global
 * one, so several servers and tests do not clash). Everything is counted when a connection or UDP
 * association ends, or read when the registry is scraped: nothing per byte or per datagram.
 * prom-client is loaded on first use.
 *
 * Metrics: `socksmith_connections_active`, `socksmith_connections_total{outcome,reply,protocol}`,
 * `socksmith_bytes_total{direction}`, `socksmith_handshake_duration_seconds`,
 * `socksmith_connect_duration_seconds{result}`, `socksmith_udp_associations_active`,
 * `socksmith_udp_associations_total`, `socksmith_udp_datagrams_total{direction}`,
 * `socksmith_udp_datagrams_dropped_total`, `socksmith_upstream_failures_total{upstream}`, with
 * `perUser`: `socksmith_user_connections_total{user}`, `socksmith_user_bytes_total{user,direction}`
 * (for the first `maxUsers` users; the rest as `user="other"`), and those the plugins register
 * (`host.registerMetrics`; the dns-cache plugin's `socksmith_dns_cache_hits_total` and
 * `socksmith_dns_cache_misses_total`).
 *
 * @example
 * const { registry } = await collectMetrics(server)
 * app.get('/metrics', async (_req, res) => res.type(registry.contentType).send(await registry.metrics()))
 */
export async function collectMetrics(server: SocksServer, options: MetricsOptions = {}): Promise<ServerMetrics> {
  const perUser = checkPerUser(options.perUser, (path, message) => {
    throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `metrics ${path === '' ? 'perUser' : `perUser.${path}`}: ${message}`)
  })
  const prom = await import('prom-client')
  // Plugins' metrics join the registry as the live pipeline has them, looked at again before every
  // read of the registry (ours, a worker's answer to the primary, or the caller's own): a reload
  // may bring or drop some.
  let syncPluginMetrics = (): void => {}
  const registry = new (class ServerRegistry extends prom.Registry {
    override getMetricsAsArray(): ReturnType<Registry['getMetricsAsArray']> {
      syncPluginMetrics()
      return super.getMetricsAsArray()
    }
  })()
  const registers = [registry]

  new prom.Gauge({
    name: 'socksmith_connections_active',
    help: 'Live connections (handshaking, relaying or holding a UDP association).',
    registers,
    collect() {
      this.set(server.connections)
    },
  })
  const connections = new prom.Counter({
    name: 'socksmith_connections_total',
    help: 'Connections that ended, by outcome (success, failed: a failure reply was sent, auth_failed, closed: ended before any reply), reply code (none when no reply was sent) and protocol (socks5, socks4).',
    labelNames: ['outcome', 'reply', 'protocol'] as const,
    registers,
  })
  const reasons = new prom.Counter({
    name: 'socksmith_connection_reasons_total',
    help: 'Connections that ended for a reason a middleware gave: ctx.close(reason), or the reason of the SocksError that refused it (such as limits:quota).',
    labelNames: ['reason'] as const,
    registers,
  })
  const bytes = new prom.Counter({
    name: 'socksmith_bytes_total',
    help: 'Payload bytes relayed over TCP, from_client and to_client, counted when a connection ends.',
    labelNames: ['direction'] as const,
    registers,
  })
  const handshake = new prom.Histogram({
    name: 'socksmith_handshake_duration_seconds',
    help: 'Accept to request received (PROXY header, method negotiation, authentication, request).',
    buckets: LATENCY_BUCKETS,
    registers,
  })
  const connect = new prom.Histogram({
    name: 'socksmith_connect_duration_seconds',
    help: 'The connect phase of CONNECT requests (resolve, rules, dial), by result.',
    labelNames: ['result'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  })
  new prom.Gauge({
    name: 'socksmith_udp_associations_active',
    help: 'Live UDP associations.',
    registers,
    collect() {
      this.set(server.udpAssociations)
    },
  })
  const associations = new prom.Counter({
    name: 'socksmith_udp_associations_total',
    help: 'UDP associations, counted when they end.',
    registers,
  })
  const datagrams = new prom.Counter({
    name: 'socksmith_udp_datagrams_total',
    help: 'Datagrams forwarded, out (client to peer) and in (peer to client), counted when the association ends.',
    labelNames: ['direction'] as const,
    registers,
  })
  const dropped = new prom.Counter({
    name: 'socksmith_udp_datagrams_dropped_total',
    help: 'Datagrams dropped (foreign sender, bad header, fragment, middleware, full send queue), counted when the association ends.',
    registers,
  })
  const upstreamFailures = new prom.Counter({
    name: 'socksmith_upstream_failures_total',
    help: 'Times an upstream proxy was unavailable (unreachable, closed, refused our login), by upstream.',
    labelNames: ['upstream'] as const,
    registers,
  })
  const userSeries = perUser === null ? null : perUserSeries(prom, registers, perUser.maxUsers)
  syncPluginMetrics = pluginMetrics(prom, registry, server)

  // Series that always exist start at 0, so rate() sees their first increase.
  for (const direction of ['from_client', 'to_client']) bytes.inc({ direction }, 0)
  for (const direction of ['out', 'in']) datagrams.inc({ direction }, 0)
  for (const result of ['success', 'failure']) connect.zero({ result })
  const fromClient = bytes.labels('from_client')
  const toClient = bytes.labels('to_client')
  const datagramsOut = datagrams.labels('out')
  const datagramsIn = datagrams.labels('in')
  const connectSuccess = connect.labels('success')
  const connectFailure = connect.labels('failure')
  // One child per outcome and reply seen, so a connection's end costs a map lookup, not label hashing.
  const byOutcome = new Map<string, Counter.Internal>()
  const byReason = new Map<string, Counter.Internal>()

  const onDisconnect = (ctx: ConnectionContext): void => {
    // Its forwarded requests were counted as connections of their own.
    if (onlyForwarded(ctx)) return
    const outcome = outcomeOf(ctx)
    const reply = ctx.reply === null ? 'none' : String(ctx.reply)
    const key = `${outcome}|${reply}|${ctx.protocol}`
    let child = byOutcome.get(key)
    if (child === undefined) {
      child = connections.labels(outcome, reply, ctx.protocol)
      byOutcome.set(key, child)
    }
    child.inc()
    const reason = ctx.closeReason
    if (reason !== null) {
      let counter = byReason.get(reason)
      if (counter === undefined) byReason.set(reason, (counter = reasons.labels(reason)))
      counter.inc()
    }
    const up = ctx.replied ? ctx.bytesFromClient : 0
    const down = ctx.replied ? ctx.bytesToClient : 0
    if (up > 0) fromClient.inc(up)
    if (down > 0) toClient.inc(down)
    if (ctx.handshakeMs !== null) handshake.observe(ctx.handshakeMs / 1000)
    if (ctx.connectMs !== null && ctx.command === Command.CONNECT) (ctx.replied ? connectSuccess : connectFailure).observe(ctx.connectMs / 1000)
    const association = ctx.association
    if (association !== null) {
      associations.inc()
      if (association.datagramsOut > 0) datagramsOut.inc(association.datagramsOut)
      if (association.datagramsIn > 0) datagramsIn.inc(association.datagramsIn)
      if (association.datagramsDropped > 0) dropped.inc(association.datagramsDropped)
    }
    if (ctx.user !== null && userSeries !== null) {
      const series = userSeries(ctx.user)
      series.connections.inc()
      if (up > 0) series.fromClient.inc(up)
      if (down > 0) series.toClient.inc(down)
    }
  }
  const onUpstreamFailure = (message: unknown): void => {
    const { ctx, upstream } = message as { ctx?: { server?: unknown }; upstream?: unknown }
    if (ctx?.server !== server || typeof upstream !== 'string') return
    upstreamFailures.inc({ upstream })
  }
  server.on('disconnect', onDisconnect)
  subscribe(UPSTREAM_FAILURE, onUpstreamFailure)
  let attached = true
  return {
    registry,
    detach() {
      if (!attached) return
      attached = false
      server.removeListener('disconnect', onDisconnect)
      unsubscribe(UPSTREAM_FAILURE, onUpstreamFailure)
    },
  }
}

/**
 * Serves `server`'s metrics (see `collectMetrics()`) at `GET /metrics` on an HTTP listener of
 * their own. Close it with `close()`; closing the SOCKS server does not.
 *
 * @example
 * const metrics = await startMetrics(server, { port: 9464, perUser: true })
 * // curl http://127.0.0.1:9464/metrics
 * await metrics.close()
 */
export async function startMetrics(server: SocksServer, options: StartMetricsOptions): Promise<MetricsServer> {
  const host = options.host ?? '127.0.0.1'
  const port = options.port
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `metrics port must be an integer from 0 to 65535 (got ${String(port)})`)
  const metrics = await collectMetrics(server, options)
  const { registry } = metrics
  const http = createHttpServer((req, res) => void serve(() => registry.metrics(), registry.contentType, req, res))
  // Scrapers keep connections alive; close() must not wait for them.
  http.keepAliveTimeout = 5000
  try {
    http.listen({ host, port })
    await once(http, 'listening')
  } catch (err) {
    metrics.detach()
    throw err
  }
  let closing: Promise<void> | null = null
  return {
    registry,
    address: () => (http.listening ? (http.address() as AddressInfo) : null),
    close() {
      closing ??= new Promise<void>((resolve) => {
        metrics.detach()
        http.close(() => resolve())
        http.closeAllConnections()
      })
      return closing
    },
  }
}

/**
 * `--workers`: the metrics of every cluster worker, summed, served by the primary. Each worker
 * calls `shareMetricsWithPrimary()`; prom-client's AggregatorRegistry asks them over IPC at each
 * scrape, so no worker answers for the others and the numbers are the whole server's.
 */
export async function startClusterMetrics(options: { host?: string; port: number }): Promise<{ address(): AddressInfo | null; close(): Promise<void> }> {
  const { AggregatorRegistry } = await import('prom-client')
  const aggregator = new AggregatorRegistry()
  const http = createHttpServer((req, res) => void serve(() => aggregator.clusterMetrics(), aggregator.contentType, req, res))
  http.keepAliveTimeout = 5000
  http.listen({ host: options.host ?? '127.0.0.1', port: options.port })
  await once(http, 'listening')
  return {
    address: () => (http.listening ? (http.address() as AddressInfo) : null),
    close: () =>
      new Promise<void>((resolve) => {
        http.close(() => resolve())
        http.closeAllConnections()
      }),
  }
}

/** In a cluster worker: collects `server`'s metrics and answers the primary's scrapes with them. */
export async function shareMetricsWithPrimary(server: SocksServer, options: MetricsOptions = {}): Promise<ServerMetrics> {
  const metrics = await collectMetrics(server, options)
  const { AggregatorRegistry } = await import('prom-client')
  AggregatorRegistry.setRegistries([metrics.registry])
  // prom-client installs the worker's IPC answer only when an AggregatorRegistry is constructed.
  new AggregatorRegistry()
  return metrics
}

async function serve(collect: () => Promise<string>, contentType: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0]
  if (path !== '/metrics') {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: metrics are at /metrics\n')
    return
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n')
    return
  }
  try {
    const body = await collect()
    res.writeHead(200, { 'content-type': contentType })
    res.end(req.method === 'HEAD' ? undefined : body)
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`collecting metrics failed: ${err instanceof Error ? err.message : String(err)}\n`)
  }
}

function outcomeOf(ctx: ConnectionContext): 'success' | 'failed' | 'auth_failed' | 'closed' {
  if (ctx.replied) return 'success'
  if (ctx.reply !== null && ctx.reply !== Reply.SUCCEEDED) return 'failed'
  const err = ctx.error
  if (isSocksError(err) && (err.code === 'ERR_SOCKS_AUTH_FAILED' || err.code === 'ERR_SOCKS_NO_ACCEPTABLE_METHOD')) return 'auth_failed'
  return 'closed'
}

interface UserSeries {
  readonly connections: Counter.Internal
  readonly fromClient: Counter.Internal
  readonly toClient: Counter.Internal
}

/**
 * The per-user counters and a lookup of a user's series. Each name costs three series for the
 * life of the process, and the names come from clients (a `verify` may accept any): only the
 * first `maxUsers` get their own, the rest share `other`, so memory and scrape size stay bounded.
 */
function perUserSeries(prom: typeof import('prom-client'), registers: Registry[], maxUsers: number): (user: string) => UserSeries {
  const connections = new prom.Counter({ name: 'socksmith_user_connections_total', help: `Connections that ended, by authenticated user (the first ${maxUsers} users; later ones as "${OTHER_USERS}").`, labelNames: ['user'] as const, registers })
  const bytes = new prom.Counter({ name: 'socksmith_user_bytes_total', help: `Payload bytes relayed over TCP, by authenticated user (the first ${maxUsers} users; later ones as "${OTHER_USERS}") and direction.`, labelNames: ['user', 'direction'] as const, registers })
  const seriesFor = (user: string): UserSeries => ({ connections: connections.labels(user), fromClient: bytes.labels(user, 'from_client'), toClient: bytes.labels(user, 'to_client') })
  const known = new Map<string, UserSeries>()
  let other: UserSeries | null = null
  return (user) => {
    const series = known.get(user)
    if (series !== undefined) return series
    if (known.size >= maxUsers || user === OTHER_USERS) return (other ??= seriesFor(OTHER_USERS))
    const created = seriesFor(user)
    known.set(user, created)
    return created
  }
}

/** One plugin metric (by name) in a registry: its prom-client metric and what outlives a setup. */
interface PluginSeries {
  readonly type: PluginMetric['type']
  /** Its label names, joined: a definition with other labels is another metric. */
  readonly labels: string
  /** The live pipeline's definition; null once a reload dropped it (a counter stays, with its totals). */
  live: RegisteredMetric | null
  /** The last good read of `live`. */
  last: readonly PluginMetricSample[]
  /** A counter's totals from the setups before `live`, by label set. */
  readonly carried: Map<string, PluginMetricSample>
}

/**
 * Keeps the metrics plugins registered (`host.registerMetrics`) in `registry` as the server's live
 * pipeline has them, and returns the sync to run before each read of the registry. Each is a
 * prom-client Counter or Gauge filled from its `collect()` at scrape time.
 *
 * A reload sets plugins up anew, and a new setup counts from 0: when a counter's definition is
 * replaced (or dropped), the replaced one is read a last time and its counts are carried, so the
 * series never goes back and keeps its totals after the plugin is gone. A gauge is what the live
 * definition reads, and leaves with it. Only the live pipeline is seen: of several reloads
 * between two scrapes, the pipelines in between add nothing.
 */
function pluginMetrics(prom: typeof import('prom-client'), registry: Registry, server: SocksServer): () => void {
  const series = new Map<string, PluginSeries>()
  // Collect failures and name clashes are logged once per definition, not at every scrape.
  const logged = new WeakSet<PluginMetric>()
  const logOnce = (metric: PluginMetric, message: string): void => {
    if (logged.has(metric)) return
    logged.add(metric)
    server.log.error(message)
  }
  const read = ({ plugin, metric }: RegisteredMetric): readonly PluginMetricSample[] | null => {
    try {
      return checkSamples(metric, metric.collect())
    } catch (err) {
      logOnce(metric, `metrics: plugin ${plugin}: collecting ${metric.name} failed: ${err instanceof Error ? err.message : String(err)}`)
      return null
    }
  }
  const create = (registered: RegisteredMetric): PluginSeries => {
    const { name, help, type, labelNames = [] } = registered.metric
    const entry: PluginSeries = { type, labels: labelNames.join(','), live: registered, last: [], carried: new Map() }
    const refresh = (): readonly PluginMetricSample[] => {
      if (entry.live !== null) entry.last = read(entry.live) ?? entry.last
      return type === 'counter' ? sumSamples(entry.carried.values(), entry.last) : entry.last
    }
    const config = { name, help, labelNames: [...labelNames], registers: [registry] }
    if (type === 'counter') {
      new prom.Counter({
        ...config,
        collect() {
          const samples = refresh()
          this.reset()
          for (const { labels, value } of samples) this.inc(labels, value)
        },
      })
    } else {
      new prom.Gauge({
        ...config,
        collect() {
          const samples = refresh()
          this.reset()
          for (const { labels, value } of samples) this.set(labels, value)
        },
      })
    }
    return entry
  }
  return () => {
    const live = new Map(server.pluginMetrics.map((registered) => [registered.metric.name, registered]))
    for (const [name, entry] of series) {
      const next = live.get(name) ?? null
      if (next === entry.live) continue
      if (entry.type === 'counter' && entry.live !== null) {
        const final = sumSamples(entry.carried.values(), read(entry.live) ?? entry.last)
        entry.carried.clear()
        for (const sample of final) entry.carried.set(labelSetKey(sample.labels), sample)
      }
      entry.live = null
      entry.last = []
      const same = next !== null && next.metric.type === entry.type && (next.metric.labelNames ?? []).join(',') === entry.labels
      if (same) entry.live = next
      else if (next !== null || entry.type === 'gauge') {
        registry.removeSingleMetric(name)
        series.delete(name)
      }
    }
    for (const [name, registered] of live) {
      if (series.has(name)) continue
      if (registry.getSingleMetric(name) !== undefined) {
        logOnce(registered.metric, `metrics: plugin ${registered.plugin} registered ${name}, a name socksmith uses; it is not served`)
        continue
      }
      series.set(name, create(registered))
    }
  }
}

/** What a plugin metric's collect() returned, as samples; throws saying what is wrong with it. */
function checkSamples(metric: PluginMetric, value: unknown): readonly PluginMetricSample[] {
  const samples = typeof value === 'number' ? [{ labels: {}, value }] : value
  if (!Array.isArray(samples)) throw new Error(`collect() returned ${describe(value)}, not a number or a list of { labels, value }`)
  const labelNames = metric.labelNames ?? []
  for (const sample of samples as unknown[]) {
    const { labels, value: v } = (isPlainObject(sample) ? sample : {}) as { labels?: unknown; value?: unknown }
    if (typeof v !== 'number' || !Number.isFinite(v) || (metric.type === 'counter' && v < 0)) throw new Error(`a sample's value must be a ${metric.type === 'counter' ? 'non-negative ' : ''}number, found ${describe(v)}`)
    if (!isPlainObject(labels)) throw new Error(`a sample's labels must be an object, found ${describe(labels)}`)
    for (const [label, text] of Object.entries(labels)) {
      if (!labelNames.includes(label) || typeof text !== 'string') throw new Error(`label ${JSON.stringify(label)}=${describe(text)} is not one of its labelNames with a string value`)
    }
  }
  return samples as readonly PluginMetricSample[]
}

/** `a` and `b` added up by label set. */
function sumSamples(a: Iterable<PluginMetricSample>, b: Iterable<PluginMetricSample>): PluginMetricSample[] {
  const sums = new Map<string, PluginMetricSample>()
  for (const samples of [a, b]) {
    for (const sample of samples) {
      const key = labelSetKey(sample.labels)
      const before = sums.get(key)
      sums.set(key, before === undefined ? sample : { labels: sample.labels, value: before.value + sample.value })
    }
  }
  return [...sums.values()]
}

function labelSetKey(labels: Readonly<Record<string, string>>): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

