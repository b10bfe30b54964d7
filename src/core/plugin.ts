import type { Middleware } from './compose.js'
import type { AuthContext, BaseContext, ConnectContext, DatagramContext, Dialer, NegotiateContext, RelayContext, RequestContext, ServerHandle, SocksState, Timeouts } from './context.js'
import type { Resolver } from '../net/resolver.js'
import type { ClientPrefix } from './client-group.js'
import type { Logger } from '../ops/logger.js'
import type { SharedStore } from '../store/store.js'
import { isSocksError, SocksError } from './errors.js'

/** The context each phase's middleware receives. */
export interface PhaseContexts {
  negotiate: NegotiateContext
  auth: AuthContext
  request: RequestContext
  connect: ConnectContext
  relay: RelayContext
  datagram: DatagramContext
}

/** The six phases, in the order a connection walks through them (`datagram` runs per UDP packet). */
export type Phase = keyof PhaseContexts
/** The six phases, in the order a connection walks through them. */
export const PHASES: readonly Phase[] = ['negotiate', 'auth', 'request', 'connect', 'relay', 'datagram']

export function isPhase(value: unknown): value is Phase {
  return typeof value === 'string' && (PHASES as readonly string[]).includes(value)
}

/** Where a plugin's options live, for error messages that name the plugin and the field. */
export interface OptionPath {
  /** Plugin name. */
  readonly plugin: string
  /**
   * Folder that relative paths in the options (a users file, say) are resolved against: the config
   * file's folder when the plugin comes from a config file, else `process.cwd()`.
   */
  readonly dir?: string
  /** Throws ERR_PLUGIN_OPTIONS naming the plugin and `field` (e.g. `rules[2].to`). */
  fail(field: string, message: string): never
  /**
   * Runs `check` (one rule, one key); a failure in it (`fail`) is recorded instead of ending
   * parseOptions, and collect returns undefined. Once parseOptions returns or fails, every
   * recorded failure is reported, one line each, so a user fixes them all in one go. Always there
   * on the OptionPath socksmith passes; optional so a hand-made one (a test's) need not have it.
   *
   * @example
   * const rules = raw.rules.map((rule, i) => at.collect?.(() => parseRule(rule, `rules[${i}]`, at)))
   */
  collect?<T>(check: () => T): T | undefined
}

/** What a plugin's setup gets: the public ways to change a server. */
export interface PluginHost {
  /** The server this pipeline is built for (during a reload: the one built from the new configuration). */
  readonly server: ServerHandle
  readonly log: Logger
  /** The pipeline's timeouts (from the server options; fixed before any plugin runs). */
  readonly timeouts: Readonly<Timeouts>
  /** What one client is, for per-client counts (`clientGroup(address, host.clientPrefix)`). */
  readonly clientPrefix: Readonly<ClientPrefix>
  /**
   * State shared with every process serving for this server: counters with expiry, leases with a
   * time to live, pub/sub. In memory by default; under `--workers` the primary holds it, so a
   * limit is one limit for all workers; with the config's `store: { type: redis, url }` every node
   * using that Redis shares it. Created when first read; the same store across reloads; closed
   * after the server drained (after `onClose` hooks). Operations reject with `ERR_SOCKS_STORE`
   * when the backend does not answer in time: decide whether your plugin then fails open or closed.
   *
   * @example
   * // At most 1000 requests a day per user, whichever worker or node they reach.
   * host.use('request', async function dailyQuota(ctx, next) {
   *   const day = Math.floor(Date.now() / 86_400_000)
   *   const count = await host.store.add(`requests:${ctx.user}:${day}`, 1, (day + 1) * 86_400_000)
   *   if (count > 1000) throw new SocksError('ERR_SOCKS_NOT_ALLOWED', 'daily request quota used up')
   *   await next()
   * })
   */
  readonly store: SharedStore
  /** Adds middleware to a phase (after the ones already there). */
  use<P extends Phase>(phase: P, ...middleware: Middleware<PhaseContexts[P]>[]): void
  /** Declares a `ctx.state` key and its initial value, so every connection's state has the same shape. */
  declareState<K extends keyof SocksState>(key: K, initial: SocksState[K]): void
  /** Replaces the server's resolver (for CONNECT, BIND and UDP). */
  setResolver(resolver: Resolver): void
  readonly resolver: Resolver
  /** Replaces the default dialer for CONNECT. */
  setDialer(dialer: Dialer): void
  readonly dialer: Dialer
  /** Marks the server as authenticating: NO AUTH is no longer accepted by default, and non-loopback listening is allowed. */
  requireAuth(): void
  /** Runs when the server closes (after draining). */
  onClose(hook: () => void | Promise<void>): void
  /**
   * Runs when `server.reload()` has made this setup's pipeline the live one (never at the first
   * start, never for a reload that failed), with what the replaced pipeline's plugin of the same
   * name passed to `handOver()`. A plugin uses it to carry state over, or to end what the new
   * configuration no longer allows (the `auth` plugin closes the connections of removed users).
   * A hook that throws is logged; the reload stands.
   *
   * @example
   * host.handOver({ users: new Set(names) })
   * host.onReload(({ previous, destroyConnections }) => {
   *   const gone = [...(previous as { users: Set<string> }).users].filter((u) => !names.includes(u))
   *   destroyConnections((ctx) => ctx.user !== null && gone.includes(ctx.user))
   * })
   */
  onReload(hook: (reload: PluginReload) => void | Promise<void>): void
  /** Leaves `value` for this plugin's setup in the next pipeline, which gets it as `host.previous` and `reload.previous`. */
  handOver(value: unknown): void
  /**
   * During a reload: what the live pipeline's plugin of this name passed to `handOver()`, the same
   * value the `onReload` hook gets as `reload.previous`; undefined at the first start (and for a
   * server whose setup ran before it was passed to `reload()`, by `prepare()`). It is there
   * while this setup runs, before the new pipeline goes live, so state the two setups must share
   * (counters, leases) can be shared from this setup's first connection on, with no moment where
   * each has its own. The reload may still fail after setup: take over for good (retire what the
   * old setup did) in `onReload`, and leave what was shared alone in `onClose` until then.
   *
   * @example
   * const counts = (host.previous as { counts?: Map<string, number> } | undefined)?.counts ?? new Map<string, number>()
   * host.handOver({ counts })
   */
  readonly previous: unknown
  /**
   * Adds metrics of this plugin to the server's Prometheus metrics (`startMetrics()`,
   * `collectMetrics()`, the config's `metrics:`, summed over `--workers`). Each is read at scrape
   * time through its `collect()`; nothing is counted for the plugin. The plugin keeps its counts
   * however it likes and needs no metrics library. A bad metric, or a name another plugin of the
   * pipeline registered, fails setup (ERR_PLUGIN_SETUP).
   *
   * @example
   * host.registerMetrics({
   *   name: 'socksmith_dns_cache_hits_total',
   *   help: 'Lookups the dns-cache plugin answered from its cache.',
   *   type: 'counter',
   *   collect: () => cache.hits,
   * })
   */
  registerMetrics(...metrics: PluginMetric[]): void
}

/** A metric a plugin reports (see `PluginHost.registerMetrics`), in terms of no metrics library. */
export interface PluginMetric {
  /** A Prometheus metric name: `socksmith_<plugin>_<what>`, ending in `_total` for a counter. */
  readonly name: string
  /** One line saying what it counts: the `# HELP` line of the scrape. */
  readonly help: string
  /**
   * `counter`: a count that only goes up while this setup lives. A reload sets the plugin up anew,
   * and its counts start from 0 again: the metrics add what the replaced setup had counted, so the
   * series never go back (and keep their totals when the plugin is gone). `gauge`: a value served
   * as the live setup reads it, gone with the plugin.
   */
  readonly type: 'counter' | 'gauge'
  /** The label names of its samples; none by default. */
  readonly labelNames?: readonly string[]
  /**
   * Called at every scrape: the value, or one sample per label set. Keep it cheap (read counters
   * the plugin keeps anyway). A throw or a value that is not one (negative for a counter) is logged
   * once, and the metric keeps the values of its last good read.
   */
  collect(): number | readonly PluginMetricSample[]
}

/** One labelled value of a `PluginMetric`. */
export interface PluginMetricSample {
  /** A value for some or all of the metric's `labelNames`. */
  readonly labels: Readonly<Record<string, string>>
  /** Finite; for a counter not negative. */
  readonly value: number
}

/** @internal A metric as a pipeline holds it: with the plugin that registered it. */
export interface RegisteredMetric {
  readonly plugin: string
  readonly metric: PluginMetric
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/

/**
 * @internal Checks what `registerMetrics` was given, against the metrics already registered in
 * the pipeline: ERR_PLUGIN_SETUP (the pipeline prefixes the plugin) saying what is wrong.
 */
export function checkPluginMetric(metric: PluginMetric, plugin: string, registered: readonly RegisteredMetric[]): RegisteredMetric {
  const fail = (message: string): never => {
    throw new SocksError('ERR_PLUGIN_SETUP', `registerMetrics: ${message}`)
  }
  if (typeof metric !== 'object' || metric === null) fail(`expected a metric { name, help, type, collect }, found ${metric === null ? 'null' : typeof metric}`)
  const { name, help, type, labelNames, collect } = metric
  if (typeof name !== 'string' || !METRIC_NAME.test(name)) fail(`${JSON.stringify(name)} is not a Prometheus metric name (letters, digits, _ and :, not starting with a digit)`)
  if (typeof help !== 'string' || help.trim() === '') fail(`${name}: help must be a non-empty string`)
  if (type !== 'counter' && type !== 'gauge') fail(`${name}: type must be "counter" or "gauge", found ${JSON.stringify(type)}`)
  if (labelNames !== undefined) {
    if (!Array.isArray(labelNames)) fail(`${name}: labelNames must be a list of label names`)
    for (const label of labelNames as unknown[]) {
      if (typeof label !== 'string' || !LABEL_NAME.test(label) || label.startsWith('__')) fail(`${name}: ${JSON.stringify(label)} is not a label name`)
    }
  }
  if (typeof collect !== 'function') fail(`${name}: collect must be a function returning the value or its samples`)
  const taken = registered.find((r) => r.metric.name === name)
  if (taken !== undefined) fail(`${name} is registered twice (by ${taken.plugin} and ${plugin})`)
  return { plugin, metric }
}

/** What a plugin's `onReload` hook gets. */
export interface PluginReload {
  /** The live server. (`host.server` of the new setup is the server the new pipeline was built on.) */
  readonly server: ServerHandle
  /** What the previous pipeline's plugin of this name handed over; undefined when it was not there or handed nothing. */
  readonly previous: unknown
  /** Ends live connections as `server.destroyConnections()` does; `reload()` reports how many closed. */
  destroyConnections(select: (ctx: BaseContext & { readonly user: string | null }) => boolean, reason?: unknown): number
}

/**
 * A socksmith plugin: a name, an optional options parser and a setup function. Bundled plugins,
 * npm plugins and local plugin files all have this shape (the module's default export).
 *
 * @example
 * export default definePlugin({
 *   name: 'deny-port-25',
 *   setup(host) {
 *     host.use('request', async function denyPort25(ctx, next) {
 *       if (ctx.destination.port === 25) throw new SocksError('ERR_SOCKS_NOT_ALLOWED', 'no SMTP')
 *       await next()
 *     })
 *   },
 * })
 */
/** Type-only key of a plugin's input option type (never present at run time). */
declare const optionsInput: unique symbol

/**
 * `O` is what `parseOptions` returns and `setup` gets; `In` is what a user writes (in
 * `register(plugin, options)` and `[plugin, options]` config entries), checked by the compiler.
 */
export interface Plugin<O = undefined, In = unknown> {
  /** kebab-case, unique per server, used in error messages. */
  readonly name: string
  /** Plugins that must be registered before this one. */
  readonly dependencies?: readonly string[]
  /** Validates and normalises raw options (from a config file or a program); fail with `at.fail(field, message)`. */
  parseOptions?(raw: unknown, at: OptionPath): O
  /**
   * Adds the plugin's middleware and hooks through `host`, with the options `parseOptions` returned; runs once per pipeline (at the first listen, and at each reload).
   */
  setup(host: PluginHost, options: O): void | Promise<void>
  /**
   * Option paths whose every value is a secret (`users`, `tls.key`; dotted, list items share their
   * list's path): `socksmith --print-config` masks them. Options named like a secret (`password`,
   * `token`, `apiKey`...) and passwords in URLs are masked without being listed.
   */
  readonly secretOptions?: readonly string[]
  /** Type-only: carries `In` so that options are checked where the plugin is used. */
  readonly [optionsInput]?: In
}

/** Identity function that gives a plugin object its types. */
export function definePlugin<O = undefined, In = unknown>(plugin: Plugin<O, In>): Plugin<O, In> {
  return plugin
}

/** Identity function that types a middleware for a phase. */
export function defineMiddleware<P extends Phase>(_phase: P, middleware: Middleware<PhaseContexts[P]>): Middleware<PhaseContexts[P]> {
  return middleware
}

const PLUGIN_NAME = /^[a-z0-9][a-z0-9-]*(\/[a-z0-9][a-z0-9-]*)?$/

/** Checks that a value has the Plugin shape; throws ERR_PLUGIN_INVALID describing what was found. */
export function assertPlugin(value: unknown, where: string): asserts value is Plugin<unknown> {
  const found = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value
  if (typeof value !== 'object' || value === null) {
    throw new SocksError('ERR_PLUGIN_INVALID', `${where}: expected a plugin object ({ name, setup }), found ${found}`)
  }
  const plugin = value as Partial<Plugin<unknown>>
  if (typeof plugin.name !== 'string' || !PLUGIN_NAME.test(plugin.name)) {
    throw new SocksError('ERR_PLUGIN_INVALID', `${where}: plugin "name" must be a kebab-case string, found ${JSON.stringify(plugin.name)}`)
  }
  if (typeof plugin.setup !== 'function') {
    throw new SocksError('ERR_PLUGIN_INVALID', `${where}: plugin "${plugin.name}" has no setup() function`)
  }
  if (plugin.parseOptions !== undefined && typeof plugin.parseOptions !== 'function') {
    throw new SocksError('ERR_PLUGIN_INVALID', `${where}: plugin "${plugin.name}" parseOptions must be a function`)
  }
  if (plugin.dependencies !== undefined && (!Array.isArray(plugin.dependencies) || plugin.dependencies.some((d) => typeof d !== 'string'))) {
    throw new SocksError('ERR_PLUGIN_INVALID', `${where}: plugin "${plugin.name}" dependencies must be an array of names`)
  }
  if (plugin.secretOptions !== undefined && (!Array.isArray(plugin.secretOptions) || plugin.secretOptions.some((p) => typeof p !== 'string'))) {
    throw new SocksError('ERR_PLUGIN_INVALID', `${where}: plugin "${plugin.name}" secretOptions must be an array of option paths`)
  }
}

/**
 * @internal Runs `plugin.parseOptions` on `raw` (no parser: `raw` as it is) with an OptionPath
 * whose failures read `<prefix><field>: <message>`. Every failure it collected (`at.collect`) and
 * the one it ended with become one ERR_PLUGIN_OPTIONS error, one line each, also listed in its
 * non-enumerable `failures` (so a config's issue list shows each under the plugin's entry).
 */
export function parsePluginOptions<O>(plugin: Plugin<O>, raw: unknown, prefix: string = `plugin ${plugin.name}: `, dir: string = process.cwd()): O {
  if (plugin.parseOptions === undefined) return raw as O
  const failures: string[] = []
  const at: OptionPath = {
    plugin: plugin.name,
    dir,
    fail(field, message): never {
      throw new SocksError('ERR_PLUGIN_OPTIONS', `${prefix}${field === '' ? '' : `${field}: `}${message}`)
    },
    collect<T>(check: () => T): T | undefined {
      try {
        return check()
      } catch (err) {
        // Only option failures: anything else is a bug in the parser and ends it.
        if (!isSocksError(err) || err.code !== 'ERR_PLUGIN_OPTIONS') throw err
        failures.push(...failuresOf(err))
        return undefined
      }
    },
  }
  let parsed: O | undefined
  try {
    parsed = plugin.parseOptions(raw, at)
  } catch (err) {
    if (failures.length === 0) throw err
    failures.push(...failuresOf(err))
  }
  if (failures.length > 0) {
    const err = new SocksError('ERR_PLUGIN_OPTIONS', failures.join('\n'))
    Object.defineProperty(err, 'failures', { value: failures, enumerable: false })
    throw err
  }
  return parsed as O
}

/** The failure lines an error stands for: its `failures` list (see parsePluginOptions), else its message. */
export function failuresOf(err: unknown): string[] {
  const failures = (err as { failures?: unknown } | null)?.failures
  if (Array.isArray(failures)) return failures.map(String)
  return [err instanceof Error ? err.message : String(err)]
}
