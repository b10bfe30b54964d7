import { SocksError, isSocksError, type SocksErrorCode } from '../core/errors.js'
import { isLogLevel } from '../ops/logger.js'
import { DEFAULT_TIMEOUTS, type Timeouts } from '../core/server.js'
import type { EffectiveConfig, EffectiveListen, EffectiveMetrics, LoadedPlugin } from './types.js'
import { failuresOf } from '../core/plugin.js'
import { checkClientPrefix, DEFAULT_CLIENT_PREFIX, type ClientPrefix } from '../core/client-group.js'
import { checkKeys, describe, didYouMean, isPlainObject } from '../plugin-kit/index.js'
import { checkProxyProtocol } from '../core/proxy-trust.js'
import { checkListenTls, LISTEN_TLS_KEYS, readTlsMaterial } from '../core/tls-listener.js'
import { checkListenHttp, LISTEN_HTTP_KEYS } from '../commands/http-forward.js'
import { checkPerUser } from '../ops/metrics.js'
import { checkStoreOptions } from '../store/open.js'

/** One problem in a config: where (`timeouts.idle`) and what. */
export interface ConfigIssue {
  readonly code: SocksErrorCode
  /** Field path from the config's root; '' for the file itself. */
  readonly path: string
  readonly message: string
}

/**
 * Collects problems so one run reports all of them, each as `<file>: <path>: <message>`. The first
 * one's code becomes the error's code.
 */
export class IssueList {
  readonly issues: ConfigIssue[] = []
  constructor(readonly file: string) {}

  add(path: string, message: string, code: SocksErrorCode = 'ERR_CONFIG_INVALID'): void {
    this.issues.push({ code, path, message })
  }

  /** `add` as a function of its own, for plugin-kit's `checkKeys(object, known, issues.report)`. */
  readonly report = (path: string, message: string): void => this.add(path, message)

  /**
   * Adds an error thrown by something else (a plugin's parseOptions or setup) under `path`, keeping
   * a SocksError's code; `prefix`, already in the message, is cut so the path is not named twice.
   */
  addError(path: string, err: unknown, prefix = ''): void {
    const code: SocksErrorCode = isSocksError(err) ? err.code : 'ERR_PLUGIN_OPTIONS'
    // An options error may stand for several failures (at.collect): one issue each.
    for (const message of failuresOf(err)) {
      this.issues.push({ code, path, message: prefix !== '' && message.startsWith(prefix) ? message.slice(prefix.length) : message })
    }
  }

  get empty(): boolean {
    return this.issues.length === 0
  }

  format(issue: ConfigIssue): string {
    return `${this.file}: ${issue.path === '' ? '' : `${issue.path}: `}${issue.message}`
  }

  /** Throws one SocksError listing every issue (one per line), if there is any. */
  throwIfAny(): void {
    const first = this.issues[0]
    if (first === undefined) return
    const lines = this.issues.map((issue) => this.format(issue))
    const err = new SocksError(first.code, lines.join('\n'))
    Object.defineProperty(err, 'issues', { value: this.issues.map((issue, i) => ({ ...issue, text: lines[i] })), enumerable: false })
    throw err
  }
}

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Milliseconds from a number or a string such as `"30s"`, `"5m"`, `"250ms"`, `"1h"`; null if neither. */
export function parseDuration(value: unknown): number | null {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : null
  if (typeof value !== 'string') return null
  const match = DURATION.exec(value.trim())
  if (match === null) return null
  const ms = Number(match[1]) * (UNIT_MS[match[2] ?? 'ms'] as number)
  return Number.isFinite(ms) ? Math.round(ms) : null
}

const TOP_KEYS = ['listen', 'limits', 'timeouts', 'log', 'metrics', 'allowOpenProxy', 'udp', 'store', 'plugins'] as const
const LISTEN_KEYS = ['host', 'port', 'ipv6Only', 'backlog', 'proxyProtocol', 'protocols', 'http', 'tls'] as const
const LISTENER_PROTOCOLS = ['socks5', 'socks4', 'http', 'mixed'] as const
const PROXY_PROTOCOL_KEYS = ['trusted'] as const
const LIMIT_KEYS = ['maxConnections', 'perClient', 'clientPrefix'] as const
const LOG_KEYS = ['level', 'access'] as const
const METRICS_KEYS = ['host', 'port', 'perUser'] as const
const PER_USER_KEYS = ['maxUsers'] as const
const UDP_KEYS = ['acceptFromAnyPeer', 'maxSendQueue', 'maxAssociationsPerClient'] as const
const TIMEOUT_KEYS = Object.keys(DEFAULT_TIMEOUTS) as (keyof Timeouts)[]

export const DEFAULT_LISTEN: Readonly<EffectiveListen> = Object.freeze({ host: '127.0.0.1', port: 1080 })

/**
 * Checks everything but the plugin list and fills in defaults. Problems are added to `issues`;
 * the result is only meaningful when none were found. `dir` is the config file's folder: relative
 * file paths (a listener's `tls`) are resolved against it.
 */
export function validateBase(raw: unknown, issues: IssueList, dir = process.cwd()): { config: Omit<EffectiveConfig, 'plugins'>; plugins: unknown[] } {
  const config: Omit<EffectiveConfig, 'plugins'> = {
    listen: [{ ...DEFAULT_LISTEN }],
    limits: { maxConnections: 10_000, perClient: 0, clientPrefix: { ...DEFAULT_CLIENT_PREFIX } },
    timeouts: { ...DEFAULT_TIMEOUTS },
    log: { level: 'info', access: true },
    metrics: null,
    allowOpenProxy: false,
    udp: { acceptFromAnyPeer: false, maxSendQueue: 1024, maxAssociationsPerClient: 64 },
    store: { type: 'memory' },
  }
  if (raw === null || raw === undefined) return { config, plugins: [] }
  if (!isPlainObject(raw)) {
    issues.add('', `the config must be an object of settings, found ${describe(raw)}`)
    return { config, plugins: [] }
  }
  checkKeys(raw, TOP_KEYS, issues.report)

  if (raw.listen !== undefined) {
    const list = Array.isArray(raw.listen) ? raw.listen : [raw.listen]
    if (list.length === 0) issues.add('listen', 'needs at least one listener ({ host, port })')
    config.listen = list.map((entry, i) => validateListen(entry, Array.isArray(raw.listen) ? `listen[${i}]` : 'listen', issues, dir))
  }

  const limits = section(raw, 'limits', LIMIT_KEYS, issues)
  if (limits !== null) {
    config.limits.maxConnections = integer(limits.maxConnections, 'limits.maxConnections', 1, Number.MAX_SAFE_INTEGER, issues) ?? config.limits.maxConnections
    config.limits.perClient = integer(limits.perClient, 'limits.perClient', 0, Number.MAX_SAFE_INTEGER, issues) ?? config.limits.perClient
    if (limits.clientPrefix !== undefined) {
      const problem = checkClientPrefix(limits.clientPrefix)
      if (problem !== null) issues.add(`limits.clientPrefix${problem.at === '' ? '' : `.${problem.at}`}`, problem.message)
      else config.limits.clientPrefix = { ...config.limits.clientPrefix, ...(limits.clientPrefix as Partial<ClientPrefix>) }
    }
  }

  const timeouts = section(raw, 'timeouts', TIMEOUT_KEYS, issues)
  if (timeouts !== null) {
    for (const key of TIMEOUT_KEYS) {
      const value = timeouts[key]
      if (value === undefined) continue
      const ms = parseDuration(value)
      if (ms === null) issues.add(`timeouts.${key}`, `expected milliseconds or a duration such as "30s", "5m", "250ms", found ${describe(value)}`)
      else config.timeouts[key] = ms
    }
  }

  const log = section(raw, 'log', LOG_KEYS, issues)
  if (log !== null && log.level !== undefined) {
    if (isLogLevel(log.level)) config.log.level = log.level
    else issues.add('log.level', `expected one of silent, error, warn, info, debug, found ${describe(log.level)}`)
  }
  if (log !== null && log.access !== undefined) {
    if (typeof log.access === 'boolean') config.log.access = log.access
    else issues.add('log.access', `expected true or false, found ${describe(log.access)}`)
  }

  const metrics = section(raw, 'metrics', METRICS_KEYS, issues)
  if (metrics !== null) {
    const effective: EffectiveMetrics = { host: '127.0.0.1', port: 0, perUser: false }
    if (metrics.port === undefined) issues.add('metrics.port', 'is required: the port of the metrics listener (0 picks a free one)')
    else effective.port = integer(metrics.port, 'metrics.port', 0, 65535, issues) ?? 0
    if (metrics.host !== undefined) {
      if (typeof metrics.host === 'string' && metrics.host.trim() !== '') effective.host = metrics.host.trim()
      else issues.add('metrics.host', `expected an address such as 127.0.0.1 or ::1, found ${describe(metrics.host)}`)
    }
    if (metrics.perUser !== undefined) {
      if (isPlainObject(metrics.perUser)) checkKeys(metrics.perUser, PER_USER_KEYS, issues.report, { path: 'metrics.perUser' })
      // Written out in full (true becomes { maxUsers: 100 }) so --print-config shows the bound.
      effective.perUser = checkPerUser(metrics.perUser, (below, message) => issues.add(below === '' ? 'metrics.perUser' : `metrics.perUser.${below}`, message)) ?? false
    }
    config.metrics = effective
  }

  if (raw.allowOpenProxy !== undefined) {
    if (typeof raw.allowOpenProxy === 'boolean') config.allowOpenProxy = raw.allowOpenProxy
    else issues.add('allowOpenProxy', `expected true or false, found ${describe(raw.allowOpenProxy)}`)
  }

  const udp = section(raw, 'udp', UDP_KEYS, issues)
  if (udp !== null) {
    if (udp.acceptFromAnyPeer !== undefined) {
      if (typeof udp.acceptFromAnyPeer === 'boolean') config.udp.acceptFromAnyPeer = udp.acceptFromAnyPeer
      else issues.add('udp.acceptFromAnyPeer', `expected true or false, found ${describe(udp.acceptFromAnyPeer)}`)
    }
    config.udp.maxSendQueue = integer(udp.maxSendQueue, 'udp.maxSendQueue', 1, Number.MAX_SAFE_INTEGER, issues) ?? config.udp.maxSendQueue
    config.udp.maxAssociationsPerClient = integer(udp.maxAssociationsPerClient, 'udp.maxAssociationsPerClient', 1, Number.MAX_SAFE_INTEGER, issues) ?? config.udp.maxAssociationsPerClient
  }

  if (raw.store !== undefined && raw.store !== null) {
    let store = raw.store
    // A duration in the file ("500ms"); the store's own check wants milliseconds.
    if (isPlainObject(store) && typeof store.timeout === 'string') {
      const ms = parseDuration(store.timeout)
      if (ms === null) issues.add('store.timeout', `expected milliseconds or a duration such as "500ms", "2s", found ${describe(store.timeout)}`)
      store = { ...store, timeout: ms ?? undefined }
    }
    config.store = checkStoreOptions(store, (at, message) => issues.add(at === '' ? 'store' : `store.${at}`, message)) ?? config.store
  }

  let plugins: unknown[] = []
  if (raw.plugins !== undefined && raw.plugins !== null) {
    if (Array.isArray(raw.plugins)) plugins = raw.plugins
    else issues.add('plugins', `expected a list of plugin entries (name or [name, options]), found ${describe(raw.plugins)}`)
  }
  return { config, plugins }
}

function validateListen(entry: unknown, path: string, issues: IssueList, dir: string): EffectiveListen {
  const listen: EffectiveListen = { ...DEFAULT_LISTEN }
  if (!isPlainObject(entry)) {
    issues.add(path, `expected { host, port }, found ${describe(entry)}`)
    return listen
  }
  checkKeys(entry, LISTEN_KEYS, issues.report, { path })
  if (entry.host !== undefined) {
    if (typeof entry.host === 'string' && entry.host.trim() !== '') listen.host = entry.host.trim()
    else issues.add(`${path}.host`, `expected an address such as 127.0.0.1 or ::1, found ${describe(entry.host)}`)
  }
  listen.port = integer(entry.port, `${path}.port`, 0, 65535, issues) ?? listen.port
  if (entry.ipv6Only !== undefined) {
    if (typeof entry.ipv6Only === 'boolean') listen.ipv6Only = entry.ipv6Only
    else issues.add(`${path}.ipv6Only`, `expected true or false, found ${describe(entry.ipv6Only)}`)
  }
  const backlog = integer(entry.backlog, `${path}.backlog`, 1, 65535, issues)
  if (backlog !== null) listen.backlog = backlog
  if (entry.proxyProtocol !== undefined) {
    const at = `${path}.proxyProtocol`
    if (isPlainObject(entry.proxyProtocol)) checkKeys(entry.proxyProtocol, PROXY_PROTOCOL_KEYS, issues.report, { path: at })
    // Written out in full (true becomes the loopback list) so --print-config shows who is trusted.
    const proxyProtocol = checkProxyProtocol(entry.proxyProtocol, (below, message) => issues.add(below === '' ? at : `${at}.${below}`, message))
    listen.proxyProtocol = proxyProtocol === null ? false : { trusted: [...proxyProtocol.trusted] }
  }
  if (entry.protocols !== undefined) {
    const at = `${path}.protocols`
    const list: unknown[] = Array.isArray(entry.protocols) ? entry.protocols : [entry.protocols]
    if (list.length === 0) issues.add(at, `expected a list of ${LISTENER_PROTOCOLS.join(', ')}, found an empty list`)
    const protocols: (typeof LISTENER_PROTOCOLS)[number][] = []
    list.forEach((protocol, i) => {
      const where = Array.isArray(entry.protocols) ? `${at}[${i}]` : at
      if ((LISTENER_PROTOCOLS as readonly unknown[]).includes(protocol)) protocols.push(protocol as (typeof LISTENER_PROTOCOLS)[number])
      else issues.add(where, `expected one of ${LISTENER_PROTOCOLS.join(', ')}, found ${describe(protocol)}${typeof protocol === 'string' && didYouMean(protocol, LISTENER_PROTOCOLS) !== null ? `; did you mean "${didYouMean(protocol, LISTENER_PROTOCOLS)}"?` : ''}`)
    })
    if (protocols.length > 0) listen.protocols = [...new Set(protocols)]
  }
  if (entry.http !== undefined) {
    const at = `${path}.http`
    if (isPlainObject(entry.http)) checkKeys(entry.http, LISTEN_HTTP_KEYS, issues.report, { path: at })
    const http = checkListenHttp(entry.http, (below, message) => issues.add(below === '' ? at : `${at}.${below}`, message))
    // Written out resolved, so --print-config shows the name Via carries.
    if (http !== null) listen.http = { via: http.via ?? false, forwardedFor: http.forwardedFor }
  }
  if (entry.tls !== undefined) {
    const at = `${path}.tls`
    const field = (below: string): string => (below === '' ? at : `${at}.${below}`)
    if (isPlainObject(entry.tls)) checkKeys(entry.tls, LISTEN_TLS_KEYS, issues.report, { path: at })
    const tls = checkListenTls(entry.tls, dir, (below, message) => issues.add(field(below), message))
    if (tls !== null) {
      if (listen.proxyProtocol !== undefined && listen.proxyProtocol !== false) issues.add(at, 'cannot be combined with proxyProtocol (the PROXY header would come before the ClientHello)')
      // Read now, so a missing or bad file fails the start (and a reload) naming its field.
      const problem = tlsProblem(tls)
      if (problem === null) listen.tls = tls
      else issues.add(field(problem.field), problem.message)
    }
  }
  return listen
}

/** The first file of a `tls` entry that cannot be read or used, or null. */
function tlsProblem(tls: NonNullable<EffectiveListen['tls']>): { field: string; message: string } | null {
  try {
    readTlsMaterial(tls, (field, message) => {
      throw { field, message }
    })
    return null
  } catch (problem) {
    return problem as { field: string; message: string }
  }
}

function section<K extends string>(raw: Record<string, unknown>, key: string, known: readonly K[], issues: IssueList): Partial<Record<K, unknown>> | null {
  const value = raw[key]
  if (value === undefined || value === null) return null
  if (!isPlainObject(value)) {
    issues.add(key, `expected an object with ${known.join(', ')}, found ${describe(value)}`)
    return null
  }
  checkKeys(value, known, issues.report, { path: key })
  return value as Partial<Record<K, unknown>>
}

function integer(value: unknown, path: string, min: number, max: number, issues: IssueList): number | null {
  if (value === undefined) return null
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    issues.add(path, `expected an integer from ${min}${max === Number.MAX_SAFE_INTEGER ? ' up' : ` to ${max}`}, found ${describe(value)}`)
    return null
  }
  return value
}

/** Duplicate plugins and dependencies that are missing or listed after their dependent. */
export function checkPluginOrder(plugins: readonly LoadedPlugin[], issues: IssueList): void {
  const seen = new Map<string, LoadedPlugin>()
  for (const entry of plugins) {
    const name = entry.plugin.name
    const earlier = seen.get(name)
    if (earlier !== undefined) {
      issues.add(entry.label, `plugin "${name}" is already listed at plugins[${earlier.index}]; list each plugin once`, 'ERR_PLUGIN_DUPLICATE')
      continue
    }
    for (const dependency of entry.plugin.dependencies ?? []) {
      if (seen.has(dependency)) continue
      const later = plugins.find((p) => p.index > entry.index && p.plugin.name === dependency)
      issues.add(
        entry.label,
        later === undefined
          ? `needs plugin "${dependency}", which is not listed; add it before this entry`
          : `needs plugin "${dependency}" listed before it, but it comes later (plugins[${later.index}]); move it up`,
        'ERR_PLUGIN_DEPENDENCY',
      )
    }
    seen.set(name, entry)
  }
}
