import { createServer as createNetServer, isIP, type AddressInfo, type BlockList, type Server as NetServer, type Socket } from 'node:net'
import { EventEmitter, once } from 'node:events'
import { getSystemErrorMap } from 'node:util'
import { Connection, NO_HTTP_HEADERS, PROTOCOL_HTTP, PROTOCOL_SOCKS4, PROTOCOL_SOCKS5 } from './connection.js'
import { checkListenHttp, type HttpExchange, type HttpForwardSettings, type ListenHttpOptions } from '../commands/http-forward.js'
import type { Middleware } from './compose.js'
import type { BaseContext, ConnectionContext, Dialer, Endpoint, PipelineSettings, Timeouts } from './context.js'
import { SocksError } from './errors.js'
import { assertPlugin, isPhase, parsePluginOptions, PHASES, type Phase, type PhaseContexts, type Plugin, type PluginReload, type RegisteredMetric } from './plugin.js'
import { Pipeline, type MiddlewareLists, type RegisteredPlugin } from './pipeline.js'
import { clientGroup, toClientPrefix, type ClientPrefix } from './client-group.js'
import { compileProxyProtocol, type ProxyProtocolOptions } from './proxy-trust.js'
import { checkListenTls, describeTls, TlsFront, type ListenTlsOptions } from './tls-listener.js'
import type { TLSSocket } from 'node:tls'
import { unmapIPv4 } from '../protocol/address.js'
import { directDialer } from '../net/dialer.js'
import { systemResolver, type Resolver } from '../net/resolver.js'
import { createLogger, isLogLevelEnabled, type Logger, type LogLevel } from '../ops/logger.js'
import { fastReadsEnabled } from '../commands/read-buffers.js'
import { logAccess } from '../ops/access-log.js'
import { checkStoreOptions, createStore } from '../store/open.js'
import type { SharedStore, StoreOptions } from '../store/store.js'

export type { Timeouts } from './context.js'

/** The timeouts a server has when its options leave them out (milliseconds). */
export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = Object.freeze({
  handshake: 10_000,
  connect: 10_000,
  idle: 3_600_000,
  bindAccept: 60_000,
  udpIdle: 120_000,
  drain: 10_000,
})

/** Options of `createServer()`; the config file's keys map onto them (docs/configuration.md). */
export interface ServerOptions {
  timeouts?: Partial<Timeouts>
  /** Live connections over all listeners; new ones beyond it are closed at once. Default 10000. */
  maxConnections?: number
  /** Live connections from one client (an address, or a block: see `clientPrefix`). Default: no limit. */
  maxConnectionsPerClient?: number
  /**
   * Leading bits of an address that make one client, for the per-client limits here and the
   * `auth` plugin's throttle. Default `{ ipv4: 32, ipv6: 64 }`: each IPv4 address, each IPv6 /64
   * (what one subscriber usually holds, so rotating through it does not escape a limit).
   */
  clientPrefix?: Partial<ClientPrefix>
  resolver?: Resolver
  dialer?: Dialer
  /** A logger (pino and console-like objects fit), or use `logLevel` for the built-in one. */
  logger?: Logger
  /** Level of the built-in stderr logger. Default 'warn'. */
  logLevel?: LogLevel
  /**
   * One `info` line per connection when it ends (message `access`): client, user, command,
   * destination, dialled address, upstream, reply, bytes each way, duration, error code.
   * Default false (the config file's `log.access` defaults to true).
   */
  accessLog?: boolean
  /** Allow listening on a non-loopback address without authentication. Default false. */
  allowOpenProxy?: boolean
  /**
   * The relay's fast read path: relayed sockets read into buffers the relay manages (Node's
   * `onread`) instead of through their streams. Default true; `SOCKSMITH_FAST_RELAY=0` in the
   * environment turns it off for every server of the process.
   */
  fastRelay?: boolean
  udp?: {
    /** Accept inbound datagrams from peers the client never sent to. Default false. */
    acceptFromAnyPeer?: boolean
    /** Datagrams queued per UDP socket before new ones are dropped. Default 1024. */
    maxSendQueue?: number
    /** Live UDP associations per client (see `clientPrefix`); more are refused with REP 02. Default 64. */
    maxAssociationsPerClient?: number
  }
  /**
   * The shared state plugins use (`host.store`): options of the store the server creates on first
   * use and closes at `close()` (default `{ type: 'memory' }`; in a `--workers` worker the
   * primary's store), or a store you created (`createStore()`), which stays yours to close. A
   * reload keeps the running server's store.
   */
  store?: SharedStore | StoreOptions
}

/** Where `server.listen()` listens, and how. */
export interface ListenOptions {
  /** Default 127.0.0.1. */
  host?: string
  /** Default 1080; 0 picks a free port. */
  port?: number
  backlog?: number
  /** For an IPv6 host such as `::`: accept IPv6 only. */
  ipv6Only?: boolean
  /**
   * Expect a PROXY protocol header (v1 or v2) before the greeting, as sent by haproxy and other
   * load balancers; the client address in it drives limits, rules and logs. Connections without
   * one are closed. Only the balancers may connect: `{ trusted: ['10.0.0.5', '10.1.0.0/24'] }`
   * lists them, `true` means loopback only (127.0.0.0/8, ::1); a connection from anywhere else is
   * closed at accept, unread. Default false.
   */
  proxyProtocol?: boolean | ProxyProtocolOptions
  /**
   * The protocols clients may speak on this listener: `socks5` (the default), `socks4` (SOCKS4
   * and SOCKS4a: CONNECT and BIND; no password, so refused when the pipeline requires
   * authentication unless the auth plugin's `socks4UserId` says otherwise), `http` (an HTTP
   * proxy: CONNECT, and plain requests such as `GET http://host/path` forwarded one by one, each
   * through the phases as a connection of its own; `Proxy-Authorization: Basic` for both), or
   * `mixed` (all three). With more than one, the first byte tells them apart. Default `['socks5']`.
   */
  protocols?: readonly ListenerProtocol[]
  /**
   * What the HTTP proxy of an `http` or `mixed` listener adds to the requests it forwards: a
   * `Via` line, the client's address in `X-Forwarded-For`. Default: neither.
   *
   * @example
   * await server.listen({ port: 8080, protocols: ['http'], http: { via: 'edge-1', forwardedFor: true } })
   */
  http?: ListenHttpOptions
  /**
   * Speak TLS: an HTTPS proxy on an `http` or `mixed` listener, SOCKS over TLS on `socks5`. The
   * certificate files are read now (a missing or bad one fails this listen(), naming the field)
   * and again at every `reload()`, which gives new connections the new certificate. The TLS
   * handshake is bounded by `timeouts.handshake` of the pipeline at listen(); limits count a
   * connection from its TCP accept. Not with `proxyProtocol`.
   *
   * @example
   * await server.listen({ port: 8443, protocols: ['mixed'], tls: { cert: 'proxy.pem', key: 'proxy.key' } })
   */
  tls?: ListenTlsOptions
}

/** A protocol a listener can take (`ListenOptions.protocols`). */
export type ListenerProtocol = 'socks5' | 'socks4' | 'http' | 'mixed'

const PROTOCOL_BITS: Readonly<Record<ListenerProtocol, number>> = { socks5: PROTOCOL_SOCKS5, socks4: PROTOCOL_SOCKS4, http: PROTOCOL_HTTP, mixed: PROTOCOL_SOCKS5 | PROTOCOL_SOCKS4 | PROTOCOL_HTTP }

/** The PROTOCOL_* bits of a listener's `protocols`, checked (a bad list fails its listen()). */
function protocolBits(protocols: readonly ListenerProtocol[] | undefined): number {
  if (protocols === undefined) return PROTOCOL_SOCKS5
  if (!Array.isArray(protocols) || protocols.length === 0) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `listen: protocols must be a non-empty list of ${Object.keys(PROTOCOL_BITS).join(', ')}`)
  let bits = 0
  for (const protocol of protocols) {
    const bit = PROTOCOL_BITS[protocol as ListenerProtocol]
    if (bit === undefined) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `listen: protocols: ${JSON.stringify(protocol)} is not one of ${Object.keys(PROTOCOL_BITS).join(', ')}`)
    bits |= bit
  }
  return bits
}

/** Where register() was called from, for option errors: `at` prefixes messages, `dir` resolves relative paths. */
export interface RegisterWhere {
  /** Prefix of the plugin's option and setup error messages, e.g. `plugins[1] (rules): `. Default `plugin <name>: `. */
  at?: string
  /** Folder relative paths in the options are resolved against (the config file's). Default `process.cwd()`. */
  dir?: string
}

/** The events a `SocksServer` emits, with their arguments. */
export interface SocksServerEvents {
  connection: [ctx: ConnectionContext]
  disconnect: [ctx: ConnectionContext]
  error: [err: unknown, ctx: ConnectionContext | null]
  listening: [address: AddressInfo]
  close: []
}

/**
 * A SOCKS5 server. Add middleware with `use()` and plugins with `register()`, then `listen()`;
 * chains are compiled at the first listen and registration is locked from then on.
 *
 * @example
 * const server = createServer()
 * server.use('request', async function logRequest(ctx, next) {
 *   ctx.log.info(`${ctx.commandName} ${ctx.destination.host}:${ctx.destination.port}`)
 *   await next()
 * })
 * await server.listen({ port: 1080 })
 */
// It is the ConnectionHost its connections are given (checked where it passes itself to them).
export class SocksServer extends EventEmitter<SocksServerEvents> {
  readonly log: Logger
  /** The settings from this server's options: what its pipeline starts from before plugins run. */
  readonly #base: PipelineSettings
  readonly #middleware: MiddlewareLists = { negotiate: [], auth: [], request: [], connect: [], relay: [], datagram: [] }
  readonly #plugins: RegisteredPlugin[] = []
  /** The live pipeline: new connections are accepted with it; reload() swaps it. */
  #pipeline: Pipeline | null = null
  #starting: Promise<Pipeline> | null = null
  /** Close hooks of every pipeline this server has run (old connections may still use old plugins). */
  readonly #closeHooks: (() => void | Promise<void>)[] = []
  readonly #listeners: NetServer[] = []
  /** The TLS side of each TLS listener. */
  readonly #tlsFronts: TlsFront[] = []
  /** Connections of TLS listeners still in their TLS handshake (not yet in #connections). */
  #tlsHandshakes = 0
  #lastTlsFailureLog = 0
  readonly #connections = new Set<Connection>()
  // Counts that outlive a pipeline: they describe live connections, whichever pipeline they run on.
  readonly #perClient = new Map<string, number>()
  readonly #associations = new Map<string, number>()
  #closing: Promise<void> | null = null
  #nextId = 1
  #lastRefusalLog = 0
  #lastAcceptErrorLog = 0
  #onDrained: (() => void) | null = null
  /** Null once the store is created (or when it was given). */
  #storeOptions: StoreOptions | null
  #store: SharedStore | null
  /** False for a store the options gave, and for the live server's store a reload handed over. */
  #ownsStore = false
  /** During a reload: the live server, whose store this server's plugins get. */
  #storeFrom: SocksServer | null = null
  /** During a reload: the live pipeline, whose hand-overs this server's plugins see as `host.previous`. */
  #predecessor: Pipeline | null = null

  constructor(options: ServerOptions = {}) {
    super()
    if (isSharedStore(options.store)) {
      this.#store = options.store
      this.#storeOptions = null
    } else {
      this.#store = null
      this.#storeOptions = checkStoreOptions(options.store ?? { type: 'memory' }, (at, message) => {
        throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `store${at === '' ? '' : `.${at}`}: ${message}`)
      })
    }
    const timeouts = Object.freeze({ ...DEFAULT_TIMEOUTS, ...definedOnly(options.timeouts ?? {}) })
    for (const [key, value] of Object.entries(timeouts)) {
      if (!Number.isFinite(value) || value < 0) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `timeouts.${key} must be a non-negative number of milliseconds`)
    }
    this.log = options.logger ?? createLogger(options.logLevel ?? 'warn')
    this.#base = Object.freeze({
      timeouts,
      resolver: options.resolver ?? systemResolver,
      dialer: options.dialer ?? directDialer,
      authRequired: false,
      allowOpenProxy: options.allowOpenProxy ?? false,
      accessLog: options.accessLog === true,
      fastRelay: fastReadsEnabled(options.fastRelay),
      maxConnections: options.maxConnections ?? 10_000,
      maxConnectionsPerClient: options.maxConnectionsPerClient ?? 0,
      clientPrefix: toClientPrefix(options.clientPrefix),
      udp: Object.freeze({
        acceptFromAnyPeer: options.udp?.acceptFromAnyPeer ?? false,
        maxSendQueue: options.udp?.maxSendQueue ?? 1024,
        maxAssociationsPerClient: options.udp?.maxAssociationsPerClient ?? 64,
      }),
    })
    // A listener, not a check per connection: with the access log off nothing runs for it.
    if (this.#base.accessLog) this.on('disconnect', logAccess)
  }

  /** The live pipeline's settings (before the first listen: those of the options). */
  get settings(): PipelineSettings {
    return this.#pipeline?.settings ?? this.#base
  }

  /** @internal The metrics the live pipeline's plugins registered (`host.registerMetrics`); none before the first listen. */
  get pluginMetrics(): readonly RegisteredMetric[] {
    return this.#pipeline?.metrics ?? []
  }

  /** The live pipeline's timeouts, in milliseconds. */
  get timeouts(): Readonly<Timeouts> {
    return this.settings.timeouts
  }

  /** The resolver new connections use (a plugin may have replaced the one of the options). */
  get resolver(): Resolver {
    return this.settings.resolver
  }

  /** The dialer new connections start with. */
  get dialer(): Dialer {
    return this.settings.dialer
  }

  /** Live connections over all listeners; new ones beyond it are closed at once. */
  get maxConnections(): number {
    return this.settings.maxConnections
  }

  /** Live connections from one client; 0 means no limit. */
  get maxConnectionsPerClient(): number {
    return this.settings.maxConnectionsPerClient
  }

  /** What one client is for per-client counts: `clientGroup(address, server.clientPrefix)`. */
  get clientPrefix(): Readonly<ClientPrefix> {
    return this.settings.clientPrefix
  }

  /** True once a plugin called `requireAuth()`. */
  get authRequired(): boolean {
    return this.settings.authRequired
  }

  /**
   * The shared store of this server's plugins (`host.store`), created on first use from the
   * `store` option. After a reload, the store the server had before: a changed `store` option
   * takes a restart.
   */
  get store(): SharedStore {
    if (this.#storeFrom !== null) return this.#storeFrom.store
    if (this.#store === null) {
      this.#store = createStore(this.#storeOptions ?? { type: 'memory' }, {
        onListenerError: (err, channel) => this.log.error(`store: a listener of channel ${channel} threw`, { error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
      })
      this.#ownsStore = true
    }
    return this.#store
  }

  /** Live connections (in the TLS handshake, handshaking, relaying, or holding a UDP association). */
  get connections(): number {
    return this.#connections.size + this.#tlsHandshakes
  }

  /** Live UDP associations over all clients. */
  get udpAssociations(): number {
    let count = 0
    for (const perClient of this.#associations.values()) count += perClient
    return count
  }

  /** True when the server writes an access-log line per connection (`accessLog`). */
  get accessLog(): boolean {
    return this.settings.accessLog
  }

  /** True after listen() (or prepare()) began building the pipeline. */
  get started(): boolean {
    return this.#starting !== null
  }

  /** Adds middleware to a phase. Throws ERR_SOCKS_REGISTER_AFTER_START once listening. */
  use<P extends Phase>(phase: P, ...middleware: Middleware<PhaseContexts[P]>[]): this {
    this.#assertNotStarted()
    if (!isPhase(phase)) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `unknown phase "${String(phase)}"; phases are ${PHASES.join(', ')}`)
    for (const fn of middleware) {
      if (typeof fn !== 'function') throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `middleware for ${phase} must be a function`)
    }
    ;(this.#middleware[phase] as Middleware<PhaseContexts[P]>[]).push(...middleware)
    return this
  }

  /**
   * Registers a plugin. Options are parsed now (errors name the plugin and field); setup runs at listen().
   *
   * @example
   * server.register(auth, { users: { alice: 'secret' } })
   */
  register<O, In>(plugin: Plugin<O, In>, options?: In, where: RegisterWhere = {}): this {
    this.#assertNotStarted()
    assertPlugin(plugin, 'register()')
    if (this.#plugins.some((p) => p.plugin.name === plugin.name)) {
      throw new SocksError('ERR_PLUGIN_DUPLICATE', `plugin "${plugin.name}" is registered twice`)
    }
    for (const dependency of plugin.dependencies ?? []) {
      if (!this.#plugins.some((p) => p.plugin.name === dependency)) {
        throw new SocksError('ERR_PLUGIN_DEPENDENCY', `plugin "${plugin.name}" needs "${dependency}" registered before it`)
      }
    }
    const at = where.at ?? `plugin ${plugin.name}: `
    const parsed = parsePluginOptions(plugin, options, at, where.dir)
    this.#plugins.push({ plugin: plugin as Plugin<unknown>, options: parsed, at })
    return this
  }

  /** Registered plugin names, in order. */
  get plugins(): string[] {
    return this.#plugins.map((p) => p.plugin.name)
  }

  /**
   * Starts a listener (call again for more: IPv4 and IPv6, several ports). The first call runs
   * plugin setup and compiles the chains. Resolves with the bound address.
   */
  async listen(options: ListenOptions | number = {}, host?: string): Promise<AddressInfo> {
    const opts: ListenOptions = typeof options === 'number' ? { port: options, host } : options
    const listenHost = opts.host ?? '127.0.0.1'
    const port = opts.port ?? 1080
    if (this.#closing !== null) throw new SocksError('ERR_SOCKS_SERVER_CLOSING', 'server is closed')
    // Parsed here, once: a bad list fails this listen(), and a connection only looks its peer up.
    const trusted = compileProxyProtocol(opts.proxyProtocol)
    const protocols: ListenerWire = { protocols: protocolBits(opts.protocols), http: checkedHttp(opts.http) }
    const tlsOptions = opts.tls === undefined ? null : checkedTls(opts.tls)
    if (tlsOptions !== null && trusted !== null) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', 'listen: tls and proxyProtocol together are not supported (the PROXY header would come before the ClientHello)')
    const { settings } = await this.#start()
    if (!settings.authRequired && !settings.allowOpenProxy && !isLoopback(listenHost)) {
      throw new SocksError('ERR_SOCKS_OPEN_PROXY', `refusing to listen on ${listenHost} without authentication: register the auth plugin, or set allowOpenProxy: true (CLI: --allow-open-proxy) if an open proxy is really what you want`)
    }
    // Each connection takes the pipeline live when it is accepted, so reload() reaches listeners
    // that are already open. A listener bound to one address knows every connection's local
    // endpoint: no getsockname per connection. Only wildcard listeners ask the socket.
    let local: Endpoint | null = null
    const front = tlsOptions === null ? null : this.#tlsFront(tlsOptions, settings.timeouts.handshake, protocols, () => local)
    const listener = createNetServer({ allowHalfOpen: true, pauseOnConnect: false, noDelay: true }, front === null ? (socket) => this.#accept(socket, local, trusted, protocols) : (socket) => this.#acceptTls(socket, front))
    await new Promise<void>((resolve, reject) => {
      const onListenFailed = (err: unknown): void => reject(listenError(listenHost, port, err))
      listener.once('error', onListenFailed)
      listener.listen({ host: listenHost, port, backlog: opts.backlog ?? 511, ipv6Only: opts.ipv6Only ?? false }, () => {
        listener.removeListener('error', onListenFailed)
        // Only from now on is an error an accept error: a listen() that failed is its caller's.
        listener.on('error', this.#onListenerError)
        resolve()
      })
    })
    this.#listeners.push(listener)
    if (front !== null) this.#tlsFronts.push(front)
    const address = listener.address() as AddressInfo
    const bound = unmapIPv4(address.address)
    if (bound !== '0.0.0.0' && bound !== '::') local = Object.freeze({ address: bound, port: address.port, family: isIP(bound) === 6 ? 6 : 4 })
    this.log.info(`listening on ${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}${front === null ? '' : ' (TLS)'}`)
    this.emit('listening', address)
    return address
  }

  /**
   * Runs plugin setup and compiles the chains without listening (listen() does it on first use).
   * Lets a caller see setup errors and `authRequired` before opening a port.
   */
  async prepare(): Promise<void> {
    await this.#start()
  }

  /**
   * Switches to the pipeline of `next`, a server built the same way that has never listened (for
   * example from a re-read config file): its plugins are set up now, and connections accepted from
   * then on use its chains, resolver, dialer, timeouts and limits; its `accessLog` setting applies at once. Listeners stay open and accepted
   * connections keep the pipeline they started with. On error nothing changes. Then the new
   * plugins' `onReload` hooks run (the `auth` plugin closes connections of users it no longer
   * has); the result counts the connections they closed. Close hooks of the
   * old plugins run when this server closes, since old connections may still use those plugins.
   *
   * @example
   * const next = createServer(options)
   * next.register(auth, { users: newUsers })
   * await server.reload(next)
   */
  async reload(next: SocksServer): Promise<{ closed: number }> {
    if (next === this) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', 'reload() needs a new server, not this one')
    if (next.#listeners.length > 0 || next.#closing !== null) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', 'reload() needs a server that has never listened')
    if (this.#closing !== null) throw new SocksError('ERR_SOCKS_SERVER_CLOSING', 'server is closed')
    // Counters and leases outlive a reload: the new plugins get the store the old ones filled.
    if (next.#storeOptions !== null && next.#store === null) next.#storeFrom = this
    // The new setups see what the live ones hand over while they run (host.previous), not only once
    // they are live (onReload): state they share is shared from the new pipeline's first connection.
    next.#predecessor = this.#pipeline
    const pipeline = await next.#start()
    const settings = pipeline.settings
    // Every TLS listener's files, read before anything changes: a bad one fails the reload.
    const certificateSwaps = this.#tlsFronts.map((front) => front.prepareReload())
    if (!settings.authRequired && !settings.allowOpenProxy) {
      const open = this.#listeners.map((l) => (l.address() as AddressInfo).address).find((address) => !isLoopback(address))
      if (open !== undefined) {
        throw new SocksError('ERR_SOCKS_OPEN_PROXY', `refusing to reload: the new configuration has no authentication and ${open} is not loopback (set allowOpenProxy: true if an open proxy is really what you want)`)
      }
    }
    // The swap: from here on new connections run on the new pipeline; live ones keep theirs.
    const previous = this.#pipeline
    this.#pipeline = pipeline
    for (const swap of certificateSwaps) swap?.()
    const swapped = certificateSwaps.filter((swap) => swap !== null).length
    if (swapped > 0) this.log.info(`reload: new TLS certificates on ${swapped} listener(s)`)
    this.#closeHooks.push(...pipeline.closeHooks)
    if (settings.accessLog !== (previous?.settings.accessLog ?? this.#base.accessLog)) {
      if (settings.accessLog) this.on('disconnect', logAccess)
      else this.removeListener('disconnect', logAccess)
    }
    let closed = 0
    const destroyConnections: PluginReload['destroyConnections'] = (select, reason) => {
      const count = this.destroyConnections(select, reason)
      closed += count
      return count
    }
    for (const { plugin, hook } of pipeline.reloadHooks) {
      try {
        await hook({ server: this, previous: previous?.handovers.get(plugin), destroyConnections })
      } catch (err) {
        this.log.error(`plugin ${plugin}: reload hook failed`, { error: err instanceof Error ? (err.stack ?? err.message) : String(err) })
      }
    }
    return { closed }
  }

  /**
   * Ends the live connections `select` picks (for example those of a user who lost access), as a
   * forced close does. Returns how many were ended.
   */
  destroyConnections(select: (ctx: BaseContext & { readonly user: string | null }) => boolean, reason: unknown = new SocksError('ERR_SOCKS_NOT_ALLOWED', 'connection closed by the server')): number {
    let count = 0
    for (const connection of [...this.#connections]) {
      if (!select(connection.ctx)) continue
      connection.destroy(reason)
      count++
    }
    return count
  }

  /** The first listener's address (null before listen). */
  address(): AddressInfo | null {
    const first = this.#listeners[0]
    return first === undefined ? null : (first.address() as AddressInfo)
  }

  /** Every listener's address. */
  addresses(): AddressInfo[] {
    return this.#listeners.map((l) => l.address() as AddressInfo)
  }

  /**
   * Stops accepting, lets live connections finish for up to `drainTimeout` ms (default
   * `timeouts.drain`), then destroys what is left. Resolves when every socket is closed.
   */
  close(options: { drainTimeout?: number } = {}): Promise<void> {
    this.#closing ??= this.#close(options.drainTimeout ?? this.timeouts.drain)
    return this.#closing
  }

  async #close(drainTimeout: number): Promise<void> {
    // net.Server#close calls back only once every connection is gone, so wait for it after the drain.
    const listenersClosed = Promise.all(this.#listeners.map((l) => new Promise<void>((resolve) => l.close(() => resolve()))))
    // A TLS handshake in progress serves nobody yet: nothing to drain.
    for (const front of this.#tlsFronts) front.destroyHandshakes()
    // Keep-alive HTTP clients between requests have nothing to finish (as node's closeIdleConnections).
    for (const connection of [...this.#connections]) connection.closeIfIdle()
    if (this.#connections.size > 0) {
      this.log.info(`draining ${this.#connections.size} connection(s) for up to ${drainTimeout} ms`)
      const drained = new Promise<void>((resolve) => {
        this.#onDrained = resolve
      })
      let timer: NodeJS.Timeout | undefined
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, drainTimeout)
      })
      await Promise.race([drained, deadline])
      clearTimeout(timer)
      if (this.#connections.size > 0) {
        this.log.warn(`drain deadline passed: closing ${this.#connections.size} connection(s)`)
        // Their end, not their sockets' close: a connection whose relay middleware is still at
        // work after next() ends once that work settles, and its socket may be long closed.
        const closing = [...this.#connections].map((c) => c.ended)
        for (const connection of this.#connections) connection.destroy(new SocksError('ERR_SOCKS_SERVER_CLOSING'))
        await Promise.all(closing)
      }
    }
    await listenersClosed
    for (const hook of this.#closeHooks) {
      try {
        await hook()
      } catch (err) {
        this.log.error('close hook failed', { error: String(err) })
      }
    }
    // After the close hooks: a plugin may write its last counts there.
    if (this.#ownsStore && this.#store !== null) {
      try {
        await this.#store.close()
      } catch (err) {
        this.log.error('closing the store failed', { error: String(err) })
      }
    }
    this.emit('close')
  }

  /** @internal a non-SocksError escaped a middleware: a bug, logged and reported, never fatal. */
  reportBug(err: unknown, ctx: ConnectionContext | null): void {
    this.log.error('unexpected error', { id: ctx?.id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) })
    if (this.listenerCount('error') > 0) this.emit('error', err, ctx)
  }

  #assertNotStarted(): void {
    if (this.#starting !== null) throw new SocksError('ERR_SOCKS_REGISTER_AFTER_START')
  }

  #start(): Promise<Pipeline> {
    this.#starting ??= this.#build()
    return this.#starting
  }

  async #build(): Promise<Pipeline> {
    const pipeline = await Pipeline.build({ server: this, log: this.log, base: this.#base, middleware: this.#middleware, plugins: this.#plugins, store: () => this.store, ...(this.#predecessor === null ? {} : { previous: this.#predecessor.handovers }) })
    this.#pipeline ??= pipeline
    this.#closeHooks.push(...pipeline.closeHooks)
    return pipeline
  }

  /**
   * @internal Counts a live connection against the per-client limit. Returns the key it was
   * counted under (its client group, to release on close), null when there is no limit (nothing
   * counted), or false when the client is at its limit.
   */
  claimClient(address: string, settings: PipelineSettings): string | null | false {
    if (settings.maxConnectionsPerClient <= 0) return null
    const key = clientGroup(address, settings.clientPrefix)
    const count = this.#perClient.get(key) ?? 0
    if (count >= settings.maxConnectionsPerClient) return false
    this.#perClient.set(key, count + 1)
    return key
  }

  /** `trusted`: on a PROXY-protocol listener, the sources that may send the header; else null. */
  #accept(socket: Socket, fixedLocal: Endpoint | null, trusted: BlockList | null, protocols: ListenerWire): void {
    const pipeline = this.#pipeline
    const counted = this.#admit(socket, pipeline, trusted)
    if (counted === false || pipeline === null) return
    this.#open(socket, pipeline, counted, fixedLocal, trusted !== null, protocols)
  }

  /**
   * Checks a new TCP connection against the listener's trust and the limits. Returns what
   * claimClient counted it under (null: nothing), or false when it was refused (and closed).
   */
  #admit(socket: Socket, pipeline: Pipeline | null, trusted: BlockList | null): string | null | false {
    const remote = socket.remoteAddress
    if (remote === undefined || this.#closing !== null || pipeline === null) {
      socket.destroy()
      return false
    }
    const clientAddress = unmapIPv4(remote)
    const family = isIP(clientAddress) === 6 ? 6 : 4
    const proxyProtocol = trusted !== null
    // The header names the client that limits, rules and the auth throttle believe, so only a
    // balancer may send one; anyone else is closed before a byte is read (haproxy's accept-proxy).
    if (proxyProtocol && !trusted.check(clientAddress, family === 6 ? 'ipv6' : 'ipv4')) {
      this.#refuse(socket, `${clientAddress} is not a trusted PROXY protocol source (listener port ${socket.localPort}; see proxyProtocol.trusted)`)
      return false
    }
    const settings = pipeline.settings
    if (this.#connections.size + this.#tlsHandshakes >= settings.maxConnections) {
      this.#refuse(socket, `connection limit ${settings.maxConnections} reached`)
      return false
    }
    // Behind a PROXY-protocol listener the socket's peer is the load balancer: the per-client
    // limit waits for the real address in the header.
    const counted = proxyProtocol ? null : this.claimClient(clientAddress, settings)
    if (counted === false) this.#refuse(socket, `per-client limit ${settings.maxConnectionsPerClient} reached for ${clientGroup(clientAddress, settings.clientPrefix)}`)
    return counted
  }

  /** Starts driving an admitted connection (for a TLS listener: the decrypted socket). */
  #open(socket: Socket, pipeline: Pipeline, counted: string | null, fixedLocal: Endpoint | null, proxyProtocol: boolean, protocols: ListenerWire, tls: TLSSocket | null = null): void {
    const clientAddress = unmapIPv4(socket.remoteAddress ?? '')
    const client: Endpoint = { address: clientAddress, port: socket.remotePort ?? 0, family: isIP(clientAddress) === 6 ? 6 : 4 }
    const local = fixedLocal ?? localEndpointOf(socket)
    const connection = new Connection(this, pipeline, socket, this.#nextId++, client, local, this.#onConnectionClosed)
    connection.countedClient = counted
    if (tls !== null) connection.ctx.tls = describeTls(tls)
    this.#connections.add(connection)
    connection.start(pipeline.settings.timeouts.handshake, proxyProtocol, protocols.protocols, protocols.http)
    if (this.listenerCount('connection') > 0) this.emit('connection', connection.ctx)
  }

  /** @internal One request an HTTP client's connection forwards: a connection of its own, on the parent's pipeline. */
  openForwarded(parent: Connection, exchange: HttpExchange): Connection {
    const connection = new Connection(this, parent.pipeline, exchange.client as unknown as Socket, this.#nextId++, parent.ctx.client, parent.ctx.local, this.#onConnectionClosed)
    connection.ctx.tls = parent.ctx.tls
    connection.ctx.exchange = exchange
    this.#connections.add(connection)
    connection.startForwarded(parent.pipeline.settings.timeouts.handshake)
    if (this.listenerCount('connection') > 0) this.emit('connection', connection.ctx)
    return connection
  }

  /** A TLS listener's TCP connection: admitted as any other, then its TLS handshake. */
  #acceptTls(socket: Socket, front: TlsFront): void {
    const counted = this.#admit(socket, this.#pipeline, null)
    if (counted === false) return
    ;(socket as AdmittedSocket)[kCounted] = counted
    this.#tlsHandshakes++
    front.handshake(socket)
  }

  /** The TLS side of a listener: a finished handshake opens the connection on the pipeline live then. */
  #tlsFront(options: ListenTlsOptions, handshakeTimeout: number, protocols: ListenerWire, local: () => Endpoint | null): TlsFront {
    return new TlsFront(options, handshakeTimeout, {
      secure: (tls, raw) => {
        this.#tlsHandshakes--
        const counted = (raw as AdmittedSocket)[kCounted] ?? null
        const pipeline = this.#pipeline
        if (this.#closing !== null || pipeline === null) {
          this.#releaseClient(counted)
          tls.destroy()
          return
        }
        this.#open(tls, pipeline, counted, local(), false, protocols, tls)
      },
      failed: (raw, err) => {
        this.#tlsHandshakes--
        this.#releaseClient((raw as AdmittedSocket)[kCounted] ?? null)
        // A scanner or a plain-text client on a TLS port: expected, so debug, and not per connection.
        if (err !== null && isLogLevelEnabled(this.log, 'debug')) {
          const now = Date.now()
          if (now - this.#lastTlsFailureLog >= 1000) {
            this.#lastTlsFailureLog = now
            this.log.debug(`TLS handshake failed: ${(err as NodeJS.ErrnoException).code ?? err.message} from ${raw.remoteAddress ?? '?'} (further failures this second are not logged)`)
          }
        }
        if (this.#connections.size + this.#tlsHandshakes === 0 && this.#onDrained !== null) this.#onDrained()
      },
    })
  }

  #releaseClient(key: string | null): void {
    if (key === null) return
    const count = (this.#perClient.get(key) ?? 1) - 1
    if (count <= 0) this.#perClient.delete(key)
    else this.#perClient.set(key, count)
  }

  readonly #onConnectionClosed = (connection: Connection): void => {
    this.#connections.delete(connection)
    this.#releaseClient(connection.countedClient)
    if (this.listenerCount('disconnect') > 0) this.emit('disconnect', connection.ctx)
    if (this.#connections.size === 0 && this.#onDrained !== null) this.#onDrained()
  }

  /**
   * Errors of an open listener are accept errors (EMFILE, ENFILE, ENOBUFS...): libuv keeps listening
   * and sheds the connection, so they are survivable; they are logged at most once a second.
   */
  readonly #onListenerError = (err: NodeJS.ErrnoException): void => {
    const now = Date.now()
    if (now - this.#lastAcceptErrorLog < 1000) return
    this.#lastAcceptErrorLog = now
    this.log.error(`accept failed: ${err.code ?? err.message} (further errors this second are not logged)`)
  }

  /**
   * @internal Counts a UDP association against its client group's limit; returns the key to
   * release it with, or null when the client is at its limit.
   */
  claimAssociation(client: string, max: number, prefix: Readonly<ClientPrefix>): string | null {
    const key = clientGroup(client, prefix)
    const count = this.#associations.get(key) ?? 0
    if (count >= max) return null
    this.#associations.set(key, count + 1)
    return key
  }

  /** @internal `key` is what claimAssociation returned. */
  releaseAssociation(key: string): void {
    const count = (this.#associations.get(key) ?? 1) - 1
    if (count <= 0) this.#associations.delete(key)
    else this.#associations.set(key, count)
  }

  /** Refusals are cheap (destroy, no reply) and logged at most once a second, not once per connection. */
  #refuse(socket: Socket, why: string): void {
    socket.destroy()
    const now = Date.now()
    if (now - this.#lastRefusalLog >= 1000) {
      this.#lastRefusalLog = now
      this.log.warn(`refusing connections: ${why}`)
    }
  }

}

/** Creates a SocksServer. */
export function createServer(options?: ServerOptions): SocksServer {
  return new SocksServer(options)
}

const kCounted = Symbol('socksmith.countedClient')
/** A TLS listener's TCP socket during its handshake, with what #admit counted it under. */
type AdmittedSocket = Socket & { [kCounted]?: string | null }

/** What a listener takes: its PROTOCOL_* bits, and what its HTTP proxy adds to forwarded messages. */
interface ListenerWire {
  readonly protocols: number
  readonly http: HttpForwardSettings
}

/** ListenOptions.http checked; a bad entry fails listen(). */
function checkedHttp(http: ListenHttpOptions | undefined): HttpForwardSettings {
  const checked = checkListenHttp(http, (field, message) => {
    throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `listen: http${field === '' ? '' : `.${field}`}: ${message}`)
  })
  return checked ?? NO_HTTP_HEADERS
}

/** ListenOptions.tls checked (paths against the working directory); a bad entry fails listen(). */
function checkedTls(tls: ListenTlsOptions): ListenTlsOptions {
  const checked = checkListenTls(tls, process.cwd(), (field, message) => {
    throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `listen: tls${field === '' ? '' : `.${field}`}: ${message}`)
  })
  return checked as ListenTlsOptions
}

function localEndpointOf(socket: Socket): Endpoint {
  const address = unmapIPv4(socket.localAddress ?? '127.0.0.1')
  return { address, port: socket.localPort ?? 0, family: isIP(address) === 6 ? 6 : 4 }
}

function isSharedStore(value: unknown): value is SharedStore {
  return typeof value === 'object' && value !== null && typeof (value as Partial<SharedStore>).acquire === 'function' && typeof (value as Partial<SharedStore>).close === 'function'
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

/**
 * A listen() that failed, as its caller reads it: `cannot listen on 127.0.0.1:1080: address already
 * in use (EADDRINUSE)`, the system error as `cause`. libuv's own description of the errno.
 */
function listenError(host: string, port: number, err: unknown): SocksError {
  const { code, errno } = err as NodeJS.ErrnoException
  const description = errno === undefined ? undefined : getSystemErrorMap().get(errno)?.[1]
  const why = code === undefined ? (err instanceof Error ? err.message : String(err)) : `${description ?? 'failed'} (${code})`
  return new SocksError('ERR_SOCKS_LISTEN', `cannot listen on ${isIP(host) === 6 ? `[${host}]` : host}:${port}: ${why}`, { cause: err })
}

/** True for 127.0.0.0/8, ::1, localhost and IPv4-mapped loopback. */
export function isLoopback(host: string): boolean {
  const h = unmapIPv4(host)
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'))
}
