import type { ConnectContext, OptionPath } from 'socksmith'
import { checkKeys, describe, isPlainObject } from 'socksmith/plugin-kit'
import { compileMatcher, MATCH_FIELDS, type Matcher, type MatchOptions } from 'socksmith/plugins/rules'
import { isTlsProtocol, parseProxyUrl, ProxyUrlError, type ProxyEndpoint } from './url.js'
import { parseTlsOptions, type TlsSpec, type UpstreamTlsOptions } from './tls-options.js'
import type { PoolStrategy } from './pool.js'

/** A route's condition in a JS/TS config or program: any function of the connect context. */
export type RouteFunction = (ctx: ConnectContext) => boolean | Promise<boolean>

/** The conditions of a route: the rules plugin's matchers (every one present must hold). */
export type RouteMatch = MatchOptions

/**
 * One upstream: its URL, or an object with the URL and, for `https://`, `socks5s://` and
 * `socks5hs://`, how to verify it (`tls`).
 *
 * @example
 * { url: 'socks5s://proxy.example:1080', tls: { ca: './ca.pem', pin: 'sha256/…' } }
 */
export type UpstreamEntry = string | { url: string; tls?: UpstreamTlsOptions }

/**
 * One member of a pool: an upstream, or a chain of them (a list: the first is reached directly,
 * each next one through the previous). A member is tried, fails and cools down as a whole.
 *
 * @example
 * pool: ['socks5://10.0.0.2:1080', ['socks5://10.0.0.3:1080', 'socks5h://10.9.0.1:1080']]
 */
export type UpstreamPoolMember = UpstreamEntry | UpstreamEntry[]

/** Where traffic goes: exactly one of these (or `direct: true` in a route). */
export interface UpstreamTargetOptions {
  /** One upstream proxy. */
  proxy?: UpstreamEntry
  /** Proxies in a row: the first is reached directly, each next one through the previous. */
  chain?: UpstreamEntry[]
  /** Interchangeable upstreams, each one proxy or a chain of them (a list); see `strategy`. */
  pool?: UpstreamPoolMember[]
  /** For `pool`: `failover` (default) tries them in order, `round-robin` starts one further each connection. */
  strategy?: PoolStrategy
}

export interface UpstreamRouteOptions extends UpstreamTargetOptions {
  match: RouteMatch | RouteFunction
  /** Connect directly, not through any upstream. */
  direct?: true
}

/** Options of the upstream plugin. */
export interface UpstreamOptions extends UpstreamTargetOptions {
  /** Checked in order; the first whose `match` holds decides. Unmatched traffic uses the top-level target, or goes direct without one. */
  routes?: UpstreamRouteOptions[]
  /** Seconds a pool member that failed is skipped. Default 30. */
  cooldown?: number
  /**
   * Seconds each step of reaching an upstream may take (TCP connect, a hop's tunnel to the next,
   * the SOCKS5 greeting and login). An upstream that accepts but does not answer in time has
   * failed: a pool fails over and skips it for `cooldown`. Default 5, and at most half of
   * `timeouts.connect`, so that a pool always has time left to fail over.
   */
  handshakeTimeout?: number
}

/** A validated upstream entry: its parsed URL, and its TLS options for a TLS scheme (files not read yet). */
export interface HopSpec {
  readonly endpoint: ProxyEndpoint
  /** null: a plain scheme, or a TLS one without options (default verification). */
  readonly tls: TlsSpec | null
}

/** A validated target: hops of a chain, or members of a pool (each the hops of a chain). `null` means direct. */
export type TargetSpec = { readonly kind: 'chain'; readonly hops: readonly HopSpec[] } | { readonly kind: 'pool'; readonly members: readonly (readonly HopSpec[])[]; readonly strategy: PoolStrategy }

export interface RouteSpec {
  readonly match: Matcher | RouteFunction
  readonly target: TargetSpec | null
  /** `routes[2]`, for logs. */
  readonly source: string
}

/** What parseOptions returns and setup receives. */
export interface UpstreamConfig {
  readonly target: TargetSpec | null
  readonly routes: readonly RouteSpec[]
  /** Milliseconds. */
  readonly cooldown: number
  /** Milliseconds; null when not given (the default applies). */
  readonly handshakeTimeout: number | null
}

/** Seconds a pool member that failed is skipped when the options do not say (`cooldown`). */
export const DEFAULT_COOLDOWN_SECONDS = 30

const TARGET_KEYS = ['proxy', 'chain', 'pool', 'strategy'] as const
const TOP_KEYS = [...TARGET_KEYS, 'routes', 'cooldown', 'handshakeTimeout'] as const
const ROUTE_KEYS = ['match', ...TARGET_KEYS, 'direct'] as const
const STRATEGIES: readonly PoolStrategy[] = ['failover', 'round-robin']
const ENTRY_KEYS = ['url', 'tls'] as const

/**
 * Validates the options. Every failure names the field: `chain[1]: unsupported scheme "ftp:"`,
 * `pool[1][0]: ...`, `routes[0].match.users[1]: ...`. Each entry of a list (a hop, a pool member, a
 * route) is checked on its own (`at.collect`), so one run reports every bad one. URLs are parsed
 * here, once.
 */
export function parseUpstreamOptions(raw: unknown, at: OptionPath): UpstreamConfig {
  if (!isPlainObject(raw)) at.fail('', `options must be an object like { proxy: 'socks5://127.0.0.1:1080' }, found ${describe(raw)}`)
  checkKeys(raw, TOP_KEYS, at)
  const target = parseTarget(raw, '', at)
  let routes: RouteSpec[] = []
  if (raw.routes !== undefined) {
    if (!Array.isArray(raw.routes)) at.fail('routes', `must be a list of { match, proxy | chain | pool | direct }, found ${describe(raw.routes)}`)
    // A route that failed is left out; the failures end the parse once every route was checked.
    routes = raw.routes.map((route, i) => attempt(at, () => parseRoute(route, `routes[${i}]`, at))) as RouteSpec[]
  }
  if (target === null && routes.length === 0) at.fail('', 'give an upstream: proxy, chain, pool, or routes')
  let cooldown = DEFAULT_COOLDOWN_SECONDS
  if (raw.cooldown !== undefined) {
    if (typeof raw.cooldown !== 'number' || !Number.isFinite(raw.cooldown) || raw.cooldown < 0) at.fail('cooldown', `must be a non-negative number of seconds, found ${describe(raw.cooldown)}`)
    cooldown = raw.cooldown
  }
  let handshakeTimeout: number | null = null
  if (raw.handshakeTimeout !== undefined) {
    if (typeof raw.handshakeTimeout !== 'number' || !Number.isFinite(raw.handshakeTimeout) || raw.handshakeTimeout <= 0) at.fail('handshakeTimeout', `must be a positive number of seconds, found ${describe(raw.handshakeTimeout)}`)
    handshakeTimeout = raw.handshakeTimeout * 1000
  }
  return { target, routes, cooldown: cooldown * 1000, handshakeTimeout }
}

function parseRoute(raw: unknown, field: string, at: OptionPath): RouteSpec {
  if (!isPlainObject(raw)) at.fail(field, `must be an object { match, proxy | chain | pool | direct }, found ${describe(raw)}`)
  checkKeys(raw, ROUTE_KEYS, at, { path: field })
  if (raw.match === undefined) at.fail(`${field}.match`, `is required: conditions (${MATCH_FIELDS.join(', ')}) or a function (ctx) => boolean`)
  const match = typeof raw.match === 'function' ? (raw.match as RouteFunction) : compileMatcher(raw.match, at, `${field}.match`)
  const target = parseTarget(raw, field, at)
  if (raw.direct !== undefined) {
    if (raw.direct !== true) at.fail(`${field}.direct`, `must be true (or left out), found ${describe(raw.direct)}`)
    if (target !== null) at.fail(field, 'give either direct: true or an upstream (proxy, chain, pool), not both')
  } else if (target === null) {
    at.fail(field, 'needs a target: proxy, chain, pool, or direct: true')
  }
  return { match, target, source: field }
}

/** The proxy / chain / pool of an options object; at most one of them. */
function parseTarget(raw: Record<string, unknown>, field: string, at: OptionPath): TargetSpec | null {
  const path = (key: string): string => (field === '' ? key : `${field}.${key}`)
  const given = (['proxy', 'chain', 'pool'] as const).filter((key) => raw[key] !== undefined)
  if (given.length > 1) at.fail(field === '' ? given[1]! : path(given[1]!), `give only one of proxy, chain and pool (found ${given.join(' and ')})`)
  if (raw.strategy !== undefined) {
    if (raw.pool === undefined) at.fail(path('strategy'), 'applies to a pool only')
    if (typeof raw.strategy !== 'string' || !(STRATEGIES as readonly string[]).includes(raw.strategy)) {
      at.fail(path('strategy'), `must be ${STRATEGIES.map((s) => `"${s}"`).join(' or ')}, found ${describe(raw.strategy)}`)
    }
  }
  if (raw.proxy !== undefined) return { kind: 'chain', hops: [parseEntry(raw.proxy, path('proxy'), at)] }
  if (raw.chain !== undefined) return { kind: 'chain', hops: parseUrlList(raw.chain, path('chain'), at) }
  if (raw.pool !== undefined) return { kind: 'pool', members: parsePool(raw.pool, path('pool'), at), strategy: (raw.strategy as PoolStrategy | undefined) ?? 'failover' }
  return null
}

function parseUrlList(raw: unknown, field: string, at: OptionPath): HopSpec[] {
  if (!Array.isArray(raw) || raw.length === 0) at.fail(field, `must be a non-empty list of proxy URLs, found ${describe(raw)}`)
  // An entry that failed is left out; the failures end the parse once every entry was checked.
  return raw.map((entry, i) => attempt(at, () => parseEntry(entry, `${field}[${i}]`, at))) as HopSpec[]
}

/** Pool members: an entry is a chain of one, a list a chain of its own (`pool[1][0]` names its first hop). */
function parsePool(raw: unknown, field: string, at: OptionPath): HopSpec[][] {
  if (!Array.isArray(raw) || raw.length === 0) at.fail(field, `must be a non-empty list of upstreams (a URL, { url, tls }, or a list of them for a chain), found ${describe(raw)}`)
  return raw.map((member, i) => {
    const memberField = `${field}[${i}]`
    if (!Array.isArray(member)) return attempt(at, () => [parseEntry(member, memberField, at)])
    if (member.length === 0) return attempt(at, () => at.fail(memberField, 'a chain in a pool needs at least one proxy URL, found an empty list'))
    return parseUrlList(member, memberField, at)
  }) as HopSpec[][]
}

/** `at.collect(check)`, or just `check()` with a hand-made OptionPath that cannot collect. */
function attempt<T>(at: OptionPath, check: () => T): T | undefined {
  return at.collect === undefined ? check() : at.collect(check)
}

/** A URL string, or `{ url, tls }`; `tls` only for the TLS schemes. */
function parseEntry(raw: unknown, field: string, at: OptionPath): HopSpec {
  if (!isPlainObject(raw)) return { endpoint: parseUrl(raw, field, at), tls: null }
  checkKeys(raw, ENTRY_KEYS, at, { path: field })
  if (raw.url === undefined) at.fail(`${field}.url`, 'is required: the proxy URL, such as "socks5s://proxy.example:1080"')
  const endpoint = parseUrl(raw.url, `${field}.url`, at, false)
  if (raw.tls === undefined) return { endpoint, tls: null }
  if (!isTlsProtocol(endpoint.protocol)) at.fail(`${field}.tls`, `applies to https://, socks5s:// and socks5hs:// upstreams only, not ${endpoint.protocol}://`)
  return { endpoint, tls: parseTlsOptions(raw.tls, `${field}.tls`, at) }
}

/** `orObject`: the field may also be `{ url, tls }`, and the message says so. */
function parseUrl(raw: unknown, field: string, at: OptionPath, orObject = true): ProxyEndpoint {
  if (Array.isArray(raw) && orObject) at.fail(field, 'must be one proxy URL (or { url, tls }), found a list: a list is a chain, and only a pool member can be one')
  if (typeof raw !== 'string') at.fail(field, `must be a proxy URL such as "socks5://127.0.0.1:1080"${orObject ? ' (or { url, tls })' : ''}, found ${describe(raw)}`)
  try {
    return parseProxyUrl(raw)
  } catch (err) {
    if (err instanceof ProxyUrlError) at.fail(field, err.message)
    throw err
  }
}


