/**
 * The bundled `upstream` plugin: connections through other proxies (SOCKS5, SOCKS4, HTTP CONNECT, and SOCKS5 or HTTP CONNECT over TLS),
 * one, a chain or a pool, routed per connection. Exported as `socksmith/plugins/upstream`, with
 * its dialers and binder for programs; written against the public API only.
 *
 * @packageDocumentation
 * @module socksmith/plugins/upstream
 */
import { Command, definePlugin, type ConnectContext, type Logger } from 'socksmith'
import { isLogLevelEnabled } from 'socksmith/ops'
import { parseFacts, parseIp } from 'socksmith/plugins/rules'
import { canBind, UpstreamBinder } from './bind.js'
import { DEFAULT_HANDSHAKE_TIMEOUT_SECONDS, ProxyChain } from './dialer.js'
import { parseUpstreamOptions, type HopSpec, type RouteSpec, type TargetSpec, type UpstreamConfig, type UpstreamOptions } from './options.js'
import { loadTls } from './tls-options.js'
import { withTls, type ProxyEndpoint } from './url.js'
import { assertCarries, carries, ProxyPool, type Upstream } from './pool.js'
import { associateThrough, canAssociate, upstreamDatagram } from './udp.js'

export { parseProxyUrl, ProxyUrlError, isSocks5, isTlsProtocol } from './url.js'
export type { ProxyEndpoint, ProxyProtocol } from './url.js'
export { UpstreamTls, isPin } from './tls.js'
export type { UpstreamTlsSettings } from './tls.js'
export type { UpstreamTlsOptions } from './tls-options.js'
export { ProxyChain, destinationFor, DEFAULT_HANDSHAKE_TIMEOUT_SECONDS } from './dialer.js'
export type { ProxyChainOptions } from './dialer.js'
export { ProxyPool } from './pool.js'
export type { PoolStrategy, Upstream } from './pool.js'
export { parseUpstreamOptions, DEFAULT_COOLDOWN_SECONDS } from './options.js'
export type { UpstreamOptions, UpstreamRouteOptions, UpstreamTargetOptions, UpstreamEntry, UpstreamPoolMember, RouteMatch, RouteFunction, UpstreamConfig } from './options.js'
export { UpstreamUdpRelay } from './udp.js'
export { UpstreamBinder } from './bind.js'

/**
 * Chains connections through other proxies: SOCKS5 (`socks5://`, or `socks5h://` to let the
 * upstream resolve names), SOCKS4/4a and HTTP CONNECT, the SOCKS5 and HTTP ones also over TLS to the
 * proxy (`socks5s://`, `socks5hs://`, `https://`; verified by default), one proxy, a chain of several, or a pool with
 * failover or round-robin (whose members may be chains too); chosen per connection by routes. BIND
 * is relayed through a SOCKS5 last hop, UDP ASSOCIATE through a chain of SOCKS5 hops.
 *
 * Its place among the plugins does not let anything skip their checks: it only chooses the way in
 * the connect phase, and does the work where the core's own would run, after every later connect
 * middleware (a CONNECT through `ctx.dialer`, a BIND through `ctx.binder`, a UDP association after
 * `next()`), and takes a datagram only after the later datagram middleware let it through. So
 * `rules` checks CONNECT, BIND and UDP whether it is registered before this plugin or after, and
 * its vetted addresses are what the upstream is sent.
 *
 * @example
 * server.register(upstream, {
 *   pool: ['socks5://10.0.0.2:1080', ['socks5://10.0.0.3:1080', 'socks5h://10.9.0.1:1080']],
 *   routes: [
 *     { match: { domains: '*.internal.example' }, direct: true },
 *     { match: { users: 'bob' }, chain: ['socks5://10.0.0.2:1080', 'http://user:pass@10.0.9.9:3128'] },
 *   ],
 * })
 */
const upstream = definePlugin<UpstreamConfig, UpstreamOptions>({
  name: 'upstream',
  parseOptions: parseUpstreamOptions,
  async setup(host, config) {
    host.declareState('upstreamUdp', null)
    const timeouts = host.timeouts
    const chainOptions = { handshakeTimeout: handshakeTimeoutFor(config.handshakeTimeout, timeouts.connect, host.log) }
    // TLS files are read here, once per start or reload, never per connection.
    const endpoints = await loadEndpoints(config, host.log)
    const build = (spec: TargetSpec | null): Upstream | null => {
      if (spec === null) return null
      if (spec.kind === 'chain') return new ProxyChain(spec.hops.map((hop) => endpoints.get(hop)!), chainOptions)
      return new ProxyPool(spec.members.map((hops) => new ProxyChain(hops.map((hop) => endpoints.get(hop)!), chainOptions)), spec.strategy, config.cooldown)
    }
    const fallback = build(config.target)
    const routes = config.routes.map((route) => ({ route, upstream: build(route.target) }))
    const all = [fallback, ...routes.map((r) => r.upstream)].filter((u): u is Upstream => u !== null)
    const binders = new Map(all.map((u) => [u, new UpstreamBinder(u)]))

    // Without routes every CONNECT goes the same way: the server's dialer is the upstream.
    if (routes.length === 0 && fallback !== null) host.setDialer(fallback)
    const choose = routes.length === 0 ? () => fallback : (ctx: ConnectContext) => chooseRoute(routes, ctx, fallback)

    host.use('connect', async function upstreamConnect(ctx, next) {
      const chosen = await choose(ctx)
      if (chosen === null) return next()
      if (isLogLevelEnabled(ctx.log, 'debug')) ctx.log.debug('via upstream', { id: ctx.id, upstream: chosen.label })
      if (ctx.command === Command.CONNECT) {
        ctx.dialer = chosen
        return next()
      }
      // BIND and UDP: refused at once (REP 07) when the upstream cannot carry them, never sent direct;
      // otherwise done after the rest of the chain approved.
      if (ctx.command === Command.BIND) {
        assertCarries(chosen, canBind, 'BIND')
        ctx.binder = binders.get(chosen)!
        return next()
      }
      assertCarries(chosen, canAssociate, 'UDP ASSOCIATE')
      return associateThrough(chosen, ctx, next)
    })

    // Only an upstream that can carry UDP makes a per-datagram middleware worth its cost.
    if (all.some(hasUdp)) host.use('datagram', upstreamDatagram)
  },
})
export default upstream

/**
 * Every hop of the options with its TLS settings loaded. A TLS upstream with verification turned
 * off is worth a warning on every start: it is meant for a test bench, not for production.
 */
async function loadEndpoints(config: UpstreamConfig, log: Logger): Promise<Map<HopSpec, ProxyEndpoint>> {
  const hops: HopSpec[] = []
  const collect = (spec: TargetSpec | null): void => {
    if (spec !== null) hops.push(...(spec.kind === 'chain' ? spec.hops : spec.members.flat()))
  }
  collect(config.target)
  for (const route of config.routes) collect(route.target)
  const loaded = await Promise.all(hops.map(async (hop): Promise<[HopSpec, ProxyEndpoint]> => {
    if (hop.tls === null) return [hop, hop.endpoint]
    if (hop.tls.insecure) log.warn(`upstream: ${hop.tls.source}: insecure: true: the certificate of ${hop.endpoint.label} is not verified${hop.tls.pins.length > 0 ? ' (only its pin is checked)' : ''}; anyone on the path can pose as the proxy`)
    return [hop, withTls(hop.endpoint, await loadTls(hop.tls))]
  }))
  return new Map(loaded)
}

/**
 * The handshake step of every hop: the option (or its default), but at most half of the connect
 * timeout. The core answers REP 06 when the connect timeout runs out, and a hop that is still
 * waiting then is never counted as failed (nor skipped by a pool), so its step must end first.
 */
function handshakeTimeoutFor(configured: number | null, connectTimeout: number, log: Logger): number {
  const wanted = configured ?? DEFAULT_HANDSHAKE_TIMEOUT_SECONDS * 1000
  if (connectTimeout <= 0 || wanted <= connectTimeout / 2) return wanted
  if (configured !== null) log.warn(`upstream: handshakeTimeout ${configured / 1000} s is more than half of timeouts.connect (${connectTimeout / 1000} s); using ${connectTimeout / 2000} s so that a hung upstream can still be failed over`)
  return connectTimeout / 2
}

interface CompiledRoute {
  readonly route: RouteSpec
  readonly upstream: Upstream | null
}

/** First route whose match holds; the top-level target (or direct) when none does. */
async function chooseRoute(routes: readonly CompiledRoute[], ctx: ConnectContext, fallback: Upstream | null): Promise<Upstream | null> {
  for (const { route, upstream } of routes) {
    if (await routeMatches(route, ctx)) return upstream
  }
  return fallback
}

/**
 * A route's conditions see the same facts as the rules plugin. A UDP ASSOCIATE request names the
 * client's own endpoint, not a destination, so for it only client, user and command are known.
 * A `to` condition on a name nobody resolved resolves it (`ctx.resolve()`); from then on the vetted
 * address, not the name, goes upstream (design §7: whoever resolved decides).
 */
async function routeMatches(route: RouteSpec, ctx: ConnectContext): Promise<boolean> {
  const match = route.match
  if (!('evaluate' in match)) return (await match(ctx)) === true
  const destination = ctx.destination
  const udp = ctx.command === Command.UDP_ASSOCIATE
  const facts = parseFacts({
    client: ctx.client.address,
    user: ctx.user,
    command: ctx.commandName,
    name: udp || destination.type !== 'domain' ? null : destination.host,
    port: udp ? undefined : destination.port,
    address: udp ? null : destination.type !== 'domain' ? destination.host : undefined,
  })
  const verdict = match.evaluate(facts)
  if (verdict !== undefined) return verdict
  if (udp || facts.address !== undefined) return false
  const addresses = ctx.resolved ?? (await ctx.resolve())
  for (const answer of addresses) {
    facts.address = parseIp(answer.address)
    if (match.evaluate(facts) === true) return true
  }
  return false
}

function hasUdp(upstream: Upstream): boolean {
  return carries(upstream, canAssociate)
}
