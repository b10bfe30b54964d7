import { compileChain, type Middleware } from './compose.js'
import type { Dialer, PipelineSettings, ServerHandle, SocksState } from './context.js'
import type { CompiledChains, ConnectionPipeline } from './connection.js'
import { isSocksError, SocksError } from './errors.js'
import { checkPluginMetric, isPhase, type Phase, type PhaseContexts, type Plugin, type PluginHost, type PluginReload, type RegisteredMetric } from './plugin.js'
import { authTerminal, connectTerminal, datagramTerminal, negotiateTerminal, relayTerminal, requestTerminal } from './terminals.js'
import type { Resolver } from '../net/resolver.js'
import type { Logger } from '../ops/logger.js'
import { LookupBudget } from '../commands/udp.js'
import type { SharedStore } from '../store/store.js'

/** Middleware per phase, in order. */
export type MiddlewareLists = { [P in Phase]: Middleware<PhaseContexts[P]>[] }

/** A plugin as registered: options already parsed, `at` names it in setup errors. */
export interface RegisteredPlugin {
  readonly plugin: Plugin<unknown>
  readonly options: unknown
  readonly at: string
}

export interface ReloadHook {
  readonly plugin: string
  readonly hook: (reload: PluginReload) => void | Promise<void>
}

/** What a pipeline is built from: the server's options and what was registered on it. */
export interface PipelineInput {
  /** The server it is built for, as plugins see it (`host.server`). */
  readonly server: ServerHandle
  readonly log: Logger
  /** Settings from the server options; plugins may change the resolver, the dialer and authRequired. */
  readonly base: PipelineSettings
  /** Middleware registered with `use()`; plugin middleware comes after. */
  readonly middleware: MiddlewareLists
  readonly plugins: readonly RegisteredPlugin[]
  /** The server's shared store, created when a plugin first reads `host.store`. */
  readonly store: () => SharedStore
  /** For a pipeline built by `reload()`: what the live pipeline's plugins handed over (`host.previous`). */
  readonly previous?: ReadonlyMap<string, unknown>
}

/** Datagram name lookups in flight at once over one pipeline's associations (each holds its datagram). */
const MAX_DATAGRAM_LOOKUPS = 256

/**
 * Everything a connection runs on, built once from the registered plugins and never changed: the
 * compiled chains (terminals in core/terminals.ts) and one frozen settings object. A connection
 * holds the pipeline it was accepted with; `server.reload()` builds a new pipeline and swaps it in
 * for new connections, which is all a reload does to connections.
 */
export class Pipeline implements ConnectionPipeline {
  readonly chains: CompiledChains
  readonly settings: PipelineSettings
  readonly plugins: readonly RegisteredPlugin[]
  /** Plugins' `onClose` hooks: run when the server closes. */
  readonly closeHooks: readonly (() => void | Promise<void>)[]
  /** Plugins' `onReload` hooks: run when a server reloads into this pipeline. */
  readonly reloadHooks: readonly ReloadHook[]
  /** What this pipeline's plugins handed over (name → value), for the next pipeline's reload hooks. */
  readonly handovers: ReadonlyMap<string, unknown>
  /** The metrics this pipeline's plugins registered (read by ops/metrics.ts at each scrape). */
  readonly metrics: readonly RegisteredMetric[]
  /** Datagram lookups in flight over this pipeline's associations (bounded: see commands/udp.ts). */
  readonly datagramLookups = new LookupBudget(MAX_DATAGRAM_LOOKUPS)

  private constructor(chains: CompiledChains, settings: PipelineSettings, input: PipelineInput, built: Builder) {
    this.chains = chains
    this.settings = settings
    this.plugins = input.plugins
    this.closeHooks = built.closeHooks
    this.reloadHooks = built.reloadHooks
    this.handovers = built.handovers
    this.metrics = built.metrics
  }

  /** Runs every plugin's setup in order, then compiles the chains. A setup error names the plugin. */
  static async build(input: PipelineInput): Promise<Pipeline> {
    const built = new Builder(input)
    for (const { plugin, options, at } of input.plugins) {
      try {
        await plugin.setup(built.host(plugin.name), options)
      } catch (err) {
        // Which plugin failed is what the user needs first; a SocksError keeps its code.
        const message = err instanceof Error ? err.message : String(err)
        throw new SocksError(isSocksError(err) ? err.code : 'ERR_PLUGIN_SETUP', `${at}setup failed: ${message}`, { cause: err })
      }
    }
    const m = built.middleware
    const template = { ...built.stateTemplate }
    const hasState = Object.keys(template).length > 0
    const chains: CompiledChains = {
      negotiate: compileChain(m.negotiate, negotiateTerminal),
      auth: compileChain(m.auth, authTerminal),
      request: compileChain(m.request, requestTerminal),
      connect: compileChain(m.connect, connectTerminal),
      relay: compileChain(m.relay, relayTerminal),
      // An empty datagram chain is no chain: no per-packet context at all.
      datagram: m.datagram.length === 0 ? null : compileChain(m.datagram, datagramTerminal),
      newState: hasState ? () => ({ ...template }) as unknown as SocksState : () => ({}) as unknown as SocksState,
    }
    const settings: PipelineSettings = Object.freeze({ ...input.base, resolver: built.resolver, dialer: built.dialer, authRequired: built.authRequired })
    return new Pipeline(chains, settings, input, built)
  }
}

/** What plugin setups write into while a pipeline is being built. */
class Builder {
  readonly input: PipelineInput
  readonly middleware: MiddlewareLists
  readonly stateTemplate: Record<string, unknown> = {}
  readonly closeHooks: (() => void | Promise<void>)[] = []
  readonly reloadHooks: ReloadHook[] = []
  readonly handovers = new Map<string, unknown>()
  readonly metrics: RegisteredMetric[] = []
  resolver: Resolver
  dialer: Dialer
  authRequired: boolean

  constructor(input: PipelineInput) {
    this.input = input
    const m = input.middleware
    this.middleware = { negotiate: [...m.negotiate], auth: [...m.auth], request: [...m.request], connect: [...m.connect], relay: [...m.relay], datagram: [...m.datagram] }
    this.resolver = input.base.resolver
    this.dialer = input.base.dialer
    this.authRequired = input.base.authRequired
  }

  host(plugin: string): PluginHost {
    const built = this
    const { server, log, base } = this.input
    return {
      server,
      log,
      timeouts: base.timeouts,
      clientPrefix: base.clientPrefix,
      get store() {
        return built.input.store()
      },
      get previous() {
        return built.input.previous?.get(plugin)
      },
      use(phase, ...middleware) {
        if (!isPhase(phase)) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `unknown phase "${String(phase)}"`)
        ;(built.middleware[phase] as unknown[]).push(...middleware)
      },
      declareState(key, initial) {
        built.stateTemplate[key as string] = initial
      },
      setResolver(resolver) {
        built.resolver = resolver
      },
      get resolver() {
        return built.resolver
      },
      setDialer(dialer) {
        built.dialer = dialer
      },
      get dialer() {
        return built.dialer
      },
      requireAuth() {
        built.authRequired = true
      },
      onClose(hook) {
        built.closeHooks.push(hook)
      },
      onReload(hook) {
        built.reloadHooks.push({ plugin, hook })
      },
      handOver(value) {
        built.handovers.set(plugin, value)
      },
      registerMetrics(...metrics) {
        for (const metric of metrics) built.metrics.push(checkPluginMetric(metric, plugin, built.metrics))
      },
    }
  }
}
