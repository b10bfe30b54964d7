/**
 * The bundled `limits` plugin: concurrent connections, connection rate, bandwidth, byte quotas and
 * client-address limits, each per user, client, listener, connection or for everybody, with the
 * rules plugin's conditions. Caps and quotas live in the server's shared store (`host.store`), so
 * `--workers N` and a fleet on one Redis enforce one limit. Exported as `socksmith/plugins/limits`;
 * written against the public API only.
 *
 * @packageDocumentation
 * @module socksmith/plugins/limits
 */
import { Command, definePlugin, SocksError, type ConnectContext, type DatagramContext, type PluginHost, type RelayContext, type TokenBucket } from 'socksmith'
import { clientGroup } from 'socksmith/net'
import { parseFacts, type ParsedFacts } from 'socksmith/plugins/rules'
import { parseLimitsOptions, type CompiledLimit, type LimitsOptions, type ParsedLimitsOptions } from './options.js'
import type { Socket } from 'node:net'
import { LimitsRuntime, type SharedBucket } from './runtime.js'
import type { QuotaTally } from './quota-ledger.js'
import type { HeldLease, LeaseUser } from './leases.js'

export { parseLimitsOptions } from './options.js'
export type { LimitsOptions, LimitOptions, LimitScope, ByteSizeOption, ByteRateOption, ParsedLimitsOptions, CompiledLimit, CompiledQuota } from './options.js'
export { parseByteRate, parseByteSize } from './units.js'
export type { QuotaWindow } from './windows.js'

/** What the limits plugin holds for one connection (`ctx.state.limits`): the labels of the limits that apply to it. */
export interface ConnectionLimits {
  readonly applied: readonly string[]
}

declare module 'socksmith' {
  interface SocksState {
    /** limits: what this connection holds (leases, buckets, quota tallies); null when no limit applies. */
    limits: ConnectionLimits | null
  }
}

/** What asking for a lease gave: the lease, refused at the cap, or admitted holding nothing (the store failed, failMode open). */
type LeaseResult = HeldLease | 'full' | 'unheld'

/** Why a connection was refused or cut: the `reason` label is `limits:<this>`. */
type RefusalReason = 'maxConnections' | 'connectionRate' | 'quota' | 'maxClientIps' | 'store'

/**
 * Everything one connection holds, released when its client socket closes: leases, bucket uses,
 * quota tallies. Lists are made only when something goes in: most connections hold one or two.
 */
class Holding implements ConnectionLimits, LeaseUser {
  leases: HeldLease[] | null = null
  buckets: SharedBucket[] | null = null
  up: TokenBucket[] | null = null
  down: TokenBucket[] | null = null
  upTallies: QuotaTally[] | null = null
  downTallies: QuotaTally[] | null = null
  #released = false
  #countUp: ((chunk: { length: number }) => void) | null = null
  #countDown: ((chunk: { length: number }) => void) | null = null

  constructor(
    readonly runtime: LimitsRuntime,
    readonly ctx: { close(reason: string, message?: string): void },
    readonly limits: readonly CompiledLimit[],
  ) {}

  get applied(): readonly string[] {
    return this.limits.map((limit) => limit.label)
  }

  addLease(lease: HeldLease): void {
    ;(this.leases ??= []).push(lease)
  }

  addBucket(shared: SharedBucket, direction: 'up' | 'down' | null): void {
    ;(this.buckets ??= []).push(shared)
    if (direction === 'up') (this.up ??= []).push(shared.bucket)
    else if (direction === 'down') (this.down ??= []).push(shared.bucket)
  }

  addTally(tally: QuotaTally): void {
    const direction = tally.quota!.direction
    if (direction !== 'down') (this.upTallies ??= []).push(tally)
    if (direction !== 'up') (this.downTallies ??= []).push(tally)
    tally.holders.add(this)
  }

  /** The tap that counts payload bytes sent by the client (made on first use). */
  get countUp(): (chunk: { length: number }) => void {
    return (this.#countUp ??= (chunk) => this.#count(this.upTallies!, chunk.length))
  }

  /** The tap that counts payload bytes sent to the client. */
  get countDown(): (chunk: { length: number }) => void {
    return (this.#countDown ??= (chunk) => this.#count(this.downTallies!, chunk.length))
  }

  #count(tallies: QuotaTally[], n: number): void {
    for (let i = 0; i < tallies.length; i++) {
      const tally = tallies[i]!
      tally.pending += n
      if (tally.quota?.action === 'cut' && tally.exhausted) this.cut()
    }
  }

  /**
   * The heartbeat could not take a lease of this connection again: the store answered after the
   * lease's TTL, and its slot was taken meanwhile (by another node, or this one). The cap holds:
   * the connection ends, with the reason its admission would have been refused for.
   */
  leaseLost(lease: HeldLease): void {
    if (this.#released) return
    const ip = lease.key.startsWith('limits:ip:')
    const prefix = ip ? 'limits:ip:' : 'limits:c:'
    const limit = this.limits.find((l) => lease.key.startsWith(`${prefix}${l.id}:`)) ?? null
    const reason = ip ? 'maxClientIps' : 'maxConnections'
    this.runtime.leaseLost(limit, reason)
    this.ctx.close(`limits:${reason}`, `limits: the ${reason} lease of this connection expired while the store did not answer, and its slot was taken meanwhile (${limit?.label ?? lease.key})`)
  }

  /** A `cut` quota is used up: the connection ends with the reason. */
  cut(): void {
    if (this.#released) return
    this.ctx.close('limits:quota', 'limits: quota used up')
  }

  release(): void {
    if (this.#released) return
    this.#released = true
    if (this.leases !== null) for (const lease of this.leases) this.runtime.leases.release(lease, this)
    if (this.buckets !== null) for (const shared of this.buckets) shared.refs--
    if (this.upTallies !== null) for (const tally of this.upTallies) tally.holders.delete(this)
    if (this.downTallies !== null) for (const tally of this.downTallies) tally.holders.delete(this)
  }
}

const kHolding = Symbol('socksmith.limitsHolding')

/** The client socket closed: what its connection held goes back (one listener function for all). */
function releaseOnClose(this: Socket & { [kHolding]?: Holding }): void {
  this[kHolding]?.release()
}

/**
 * Connection caps, rates, bandwidth, quotas and client-address limits. Every limit that matches a
 * connection applies (a user's, a client's and a global one together); a refusal is REP 02 with a
 * `limits:<what>` reason in the access log and `socksmith_limit_refusals_total{limit,reason}`.
 *
 * @example
 * server.register(auth, { users: { alice: 'wonderland' } })
 * server.register(limits, {
 *   limits: [
 *     { per: 'user', maxConnections: 10, bandwidth: { down: '8mbit', up: '2mbit' } },
 *     { per: 'user', quota: { bytes: '10GiB', window: 'day', action: 'cut' } },
 *   ],
 * })
 */
const limits = definePlugin<ParsedLimitsOptions, LimitsOptions>({
  name: 'limits',
  parseOptions: parseLimitsOptions,
  setup(host, options) {
    // During a reload the live setup's runtime is this setup's from the start (host.previous, read
    // before the new pipeline goes live): whichever pipeline admits a connection, one runtime
    // counts it, and none is dropped while connections hold its leases.
    const setup = new LimitsSetup(host, options, handedRuntime(host.previous))
    host.declareState('limits', null)
    host.use('connect', setup.admit)
    host.use('relay', setup.shape)
    if (options.limits.some((limit) => limit.bandwidth !== null || limit.quota !== null)) host.use('datagram', setup.limitDatagram)
    // The getter makes the runtime if this setup has none yet: connections still in their
    // handshake on this pipeline will count in the one the next setup gets.
    host.handOver({ limitsRuntime: () => setup.ensureRuntime() } satisfies RuntimeHandover)
    host.onReload(({ previous }) => {
      // Live now: the new limits reach live connections at once (their buckets and tallies), not
      // at this pipeline's first connection. A setup made without host.previous (a server that
      // ran its setup before reload()) takes the runtime here.
      setup.takeOver(handedRuntime(previous))
    })
    // Until its reload took effect this setup only borrows the runtime: a failed reload leaves it be.
    host.onClose(() => setup.ownedRuntime?.close())
    host.registerMetrics(
      {
        name: 'socksmith_limit_refusals_total',
        help: 'Connections the limits plugin refused (REP 02) or cut, by limit (its name, or limits[i]) and reason (maxConnections, connectionRate, quota, maxClientIps, store).',
        type: 'counter',
        labelNames: ['limit', 'reason'],
        collect: () => [...setup.refusals].map(([key, value]) => {
          const [limit = '', reason = ''] = key.split('\n')
          return { labels: { limit, reason }, value }
        }),
      },
      {
        name: 'socksmith_limits_store_errors_total',
        help: "Operations of the limits plugin that the shared store did not answer (the plugin's failMode decided).",
        type: 'counter',
        collect: () => setup.storeErrors,
      },
      {
        name: 'socksmith_limits_datagrams_dropped_total',
        help: 'UDP datagrams the limits plugin dropped: over a bandwidth limit, or past a quota.',
        type: 'counter',
        collect: () => setup.datagramsDropped,
      },
    )
  },
})
export default limits

/** What a setup hands over to the next (`host.handOver`): its runtime, made if it had none. */
interface RuntimeHandover {
  limitsRuntime(): LimitsRuntime
}

/** The runtime a predecessor's hand-over names, or null (none, or not of this plugin's shape). */
function handedRuntime(handover: unknown): LimitsRuntime | null {
  const getter = (handover as Partial<RuntimeHandover> | undefined)?.limitsRuntime
  if (typeof getter !== 'function') return null
  const runtime: unknown = getter()
  return runtime instanceof LimitsRuntime ? runtime : null
}

/**
 * One setup of the plugin: its middleware, its counts, and the runtime it uses: its own, or the
 * one the live setup handed over when a reload made this one. A handed-over runtime is given this
 * setup's limits when this setup first uses it (its pipeline is live by then: a connection of it
 * was accepted) or when its reload hook runs, whichever comes first.
 */
class LimitsSetup {
  runtime: LimitsRuntime | null = null
  readonly refusals = new Map<string, number>()
  storeErrors = 0
  datagramsDropped = 0
  readonly #host: PluginHost
  readonly #options: ParsedLimitsOptions
  /** The facts some limit's conditions look at: only those are worked out per connection. */
  readonly #needed: ReadonlySet<string>
  /** The predecessor's runtime, until this setup takes it (ensureRuntime, takeOver). */
  #inherited: LimitsRuntime | null
  /** True once the runtime is this setup's to close: made by it, or taken over by a reload that took effect. */
  #owns = false

  constructor(host: PluginHost, options: ParsedLimitsOptions, inherited: LimitsRuntime | null) {
    this.#host = host
    this.#options = options
    this.#needed = new Set(options.limits.flatMap((limit) => limit.match?.fields ?? []))
    this.#inherited = inherited
  }

  /** The runtime to close when the server closes: null while this setup only borrows one (or has none). */
  get ownedRuntime(): LimitsRuntime | null {
    return this.#owns ? this.runtime : null
  }

  /**
   * The runtime this setup counts in: the inherited one, now with this setup's limits, or a new one.
   * Called for a connection of this setup's pipeline, by a later setup's hand-over, or at takeOver.
   */
  ensureRuntime(): LimitsRuntime {
    if (this.runtime !== null) return this.runtime
    const inherited = this.#inherited
    this.#inherited = null
    if (inherited !== null) {
      inherited.reconfigure(this.#options, this)
      this.runtime = inherited
    } else {
      this.runtime = new LimitsRuntime(this.#host.store, this.#options, this, this.#host.log)
      this.#owns = true
    }
    return this.runtime
  }

  /** The reload that made this setup took effect: the runtime (`handed`, the live setup's) is this setup's. */
  takeOver(handed: LimitsRuntime | null): void {
    if (this.runtime === null && this.#inherited === null) this.#inherited = handed
    const runtime = this.ensureRuntime()
    if (handed !== null && handed !== runtime) {
      // Only when this setup ran before reload() (no host.previous) and its pipeline admitted a
      // connection before this hook: two runtimes, each counting its own connections. Neither
      // is dropped (their leases are live): the old one ends when the server closes.
      this.#host.log.warn('limits: this reload ran the plugin before it was given the live counts (a server prepared before reload()); connections admitted meanwhile are counted apart until they close')
    }
    this.#owns = true
  }

  storeFailed(): void {
    this.storeErrors++
  }

  #runtime(): LimitsRuntime {
    return this.runtime ?? this.ensureRuntime()
  }

  /** `connect`: which limits apply, and whether each admits the connection; refusals are REP 02. */
  readonly admit = async (ctx: ConnectContext, next: () => Promise<void>): Promise<void> => {
    const matched = await this.#matching(ctx)
    if (matched === null) return next()
    const runtime = this.#runtime()
    const holding = new Holding(runtime, ctx, matched)
    try {
      for (const limit of matched) {
        // Every step is synchronous unless it has to ask the store: no wait on the usual path.
        const pending = this.#admitOne(runtime, holding, limit, ctx)
        if (pending !== null) await pending
      }
    } catch (err) {
      holding.release()
      throw err
    }
    ctx.state.limits = holding
    // Whatever happens next (a failed dial, the relay's end), the client socket closes last.
    const socket = ctx.socket as Socket & { [kHolding]?: Holding }
    if (socket.destroyed) holding.release()
    else {
      socket[kHolding] = holding
      socket.on('close', releaseOnClose)
    }
    await next()
  }

  /** `relay`: the connection's buckets shape it, and its quotas count it. */
  readonly shape = async (ctx: RelayContext, next: () => Promise<void>): Promise<void> => {
    const holding = ctx.state.limits as Holding | null
    if (holding === null || ctx.command === Command.UDP_ASSOCIATE) return next()
    if (holding.up !== null) for (const bucket of holding.up) ctx.throttle('client', bucket)
    if (holding.down !== null) for (const bucket of holding.down) ctx.throttle('outbound', bucket)
    if (holding.upTallies !== null) ctx.tap('client', holding.countUp)
    if (holding.downTallies !== null) ctx.tap('outbound', holding.countDown)
    await next()
  }

  /** `datagram`: over a bandwidth limit or past a quota a datagram is dropped; the rest counts. */
  readonly limitDatagram = async (ctx: DatagramContext, next: () => Promise<void>): Promise<void> => {
    const holding = ctx.association.state.limits as Holding | null
    if (holding === null) return next()
    const out = ctx.direction === 'out'
    const buckets = out ? holding.up : holding.down
    const length = ctx.data.length
    if (buckets !== null) {
      for (let i = 0; i < buckets.length; i++) {
        if (!buckets[i]!.tryConsume(length)) {
          this.datagramsDropped++
          ctx.drop()
          return
        }
      }
    }
    const tallies = out ? holding.upTallies : holding.downTallies
    if (tallies !== null) {
      for (const tally of tallies) {
        if (tally.exhausted) {
          this.datagramsDropped++
          ctx.drop()
          if (tally.quota?.action === 'cut') holding.cut()
          return
        }
      }
      ;(out ? holding.countUp : holding.countDown)(ctx.data)
    }
    await next()
  }

  /** The limits that apply to the connection, in order; null when none does. */
  async #matching(ctx: ConnectContext): Promise<CompiledLimit[] | null> {
    const all = this.#options.limits
    let facts: ParsedFacts | null = null
    let resolved = false
    let matched: CompiledLimit[] | null = null
    for (const limit of all) {
      if (limit.listener !== null && !listenerMatches(limit.listener, ctx)) continue
      if (limit.match !== null) {
        facts ??= factsOf(ctx, this.#needed)
        let verdict = limit.match.evaluate(facts!)
        if (verdict === undefined && !resolved && ctx.destination.type === 'domain') {
          // A destination condition on a name's addresses: look it up (once; the dialer reuses it).
          resolved = true
          try {
            const answers = await ctx.resolve()
            facts = { ...facts!, address: parseFacts({ address: answers[0]?.address ?? null }).address }
          } catch {
            facts = { ...facts!, address: null }
          }
          verdict = limit.match.evaluate(facts)
        }
        if (verdict !== true) continue
      }
      ;(matched ??= []).push(limit)
    }
    return matched
  }

  /** Admits the connection under one limit (or throws the refusal): null when done, a promise while the store is asked. */
  #admitOne(runtime: LimitsRuntime, holding: Holding, limit: CompiledLimit, ctx: ConnectContext): Promise<unknown> | null {
    const subject = subjectOf(limit, ctx, this.#host, runtime)
    if (limit.connectionRate !== null) {
      const shared = runtime.bucket(limit, subject, 'connections')!
      holding.addBucket(shared, null)
      if (!shared.bucket.tryConsume(1)) this.#refuse(limit, 'connectionRate', `more than ${limit.connectionRate.rate} new connections a second`)
    }
    if (limit.bandwidth !== null) {
      for (const direction of ['up', 'down'] as const) {
        const shared = runtime.bucket(limit, subject, direction)
        if (shared !== null) holding.addBucket(shared, direction)
      }
    }
    if (limit.quota !== null) {
      const found = runtime.ledger.tally(limit, subject)
      if (found instanceof Promise) return found.then((result) => this.#admitQuota(holding, limit, result)).then(() => this.#admitLeases(runtime, holding, limit, subject, ctx))
      this.#admitQuota(holding, limit, found)
    }
    return this.#admitLeases(runtime, holding, limit, subject, ctx)
  }

  #admitQuota(holding: Holding, limit: CompiledLimit, tally: QuotaTally | null): void {
    if (tally === null) return
    if (!tally.stored && this.#options.failMode === 'closed') this.#refuse(limit, 'store', 'the store holding the quota does not answer')
    if (tally.exhausted) this.#refuse(limit, 'quota', `quota of ${limit.quota!.bytes} bytes used up`)
    holding.addTally(tally)
  }

  /** maxClientIps, then maxConnections: leases, taken at once where the store is this process's. */
  #admitLeases(runtime: LimitsRuntime, holding: Holding, limit: CompiledLimit, subject: string, ctx: ConnectContext): Promise<unknown> | null {
    if (limit.maxClientIps !== null) {
      const key = `limits:ip:${limit.id}:${subject}`
      const holder = ctx.client.address
      const lease = this.#lease(runtime, holding, limit, key, holder, limit.maxClientIps)
      const then = (result: LeaseResult): Promise<unknown> | null => {
        this.#leased(holding, limit, result, 'maxClientIps', `already connected from ${limit.maxClientIps} other address(es)`)
        return this.#admitConnections(runtime, holding, limit, subject, ctx)
      }
      return lease instanceof Promise ? lease.then(then) : then(lease)
    }
    return this.#admitConnections(runtime, holding, limit, subject, ctx)
  }

  #admitConnections(runtime: LimitsRuntime, holding: Holding, limit: CompiledLimit, subject: string, ctx: ConnectContext): Promise<unknown> | null {
    if (limit.maxConnections === null) return null
    const key = `limits:c:${limit.id}:${subject}`
    const holder = `${runtime.nodeId}:${ctx.id}`
    const lease = this.#lease(runtime, holding, limit, key, holder, limit.maxConnections)
    const why = `${limit.maxConnections} connection(s) already open`
    if (lease instanceof Promise) return lease.then((result) => this.#leased(holding, limit, result, 'maxConnections', why))
    this.#leased(holding, limit, lease, 'maxConnections', why)
    return null
  }

  #leased(holding: Holding, limit: CompiledLimit, result: LeaseResult, reason: RefusalReason, why: string): void {
    if (result === 'full') this.#refuse(limit, reason, why)
    else if (result !== 'unheld') holding.addLease(result)
  }

  /**
   * A lease (`held`), or `full` at the cap. A store that does not answer is failMode's call: open
   * admits the connection holding nothing (`unheld`), closed refuses it.
   */
  #lease(runtime: LimitsRuntime, holding: Holding, limit: CompiledLimit, key: string, holder: string, max: number): LeaseResult | Promise<LeaseResult> {
    const acquired = runtime.leases.acquire(key, holder, max, holding)
    if (!(acquired instanceof Promise)) return acquired ?? 'full'
    return acquired.then(
      (held) => held ?? 'full',
      (err: unknown) => {
        runtime.storeFailed(err)
        if (this.#options.failMode === 'closed') this.#refuse(limit, 'store', 'the store holding the connection counts does not answer')
        return 'unheld' as const
      },
    )
  }

  /** A live connection was cut for `limit` (null: a limit a reload removed): counted with the refusals. */
  cut(limit: CompiledLimit | null, reason: RefusalReason): void {
    this.#count(limit?.label ?? 'removed', reason)
  }

  #count(label: string, reason: RefusalReason): void {
    const key = `${label}\n${reason}`
    this.refusals.set(key, (this.refusals.get(key) ?? 0) + 1)
  }

  #refuse(limit: CompiledLimit, reason: RefusalReason, why: string): never {
    this.#count(limit.label, reason)
    throw new SocksError('ERR_SOCKS_NOT_ALLOWED', `limits: ${why} (${limit.label}, per ${limit.per})`, { reason: `limits:${reason}` })
  }
}

/** The facts `needed` (MatchField names) about the connection; the others are left unknown, unparsed. */
function factsOf(ctx: ConnectContext, needed: ReadonlySet<string>): ParsedFacts {
  const destination = ctx.destination
  const isName = destination.type === 'domain'
  return parseFacts({
    client: needed.has('from') ? ctx.client.address : undefined,
    user: ctx.user,
    command: ctx.commandName,
    port: destination.port,
    name: needed.has('domains') ? (isName ? destination.host : null) : undefined,
    address: needed.has('to') ? (isName ? (ctx.resolved?.[0]?.address ?? undefined) : destination.host) : undefined,
  })
}

function listenerMatches(listener: NonNullable<CompiledLimit['listener']>, ctx: ConnectContext): boolean {
  return listener.ports.has(ctx.local.port) || listener.endpoints.has(`${ctx.local.address}:${ctx.local.port}`)
}

/** Who the connection counts as for `limit` (see LimitScope). */
function subjectOf(limit: CompiledLimit, ctx: ConnectContext, host: PluginHost, runtime: LimitsRuntime): string {
  switch (limit.per) {
    case 'user':
      return `u=${ctx.user ?? ''}`
    case 'client':
      return `c=${clientGroup(ctx.client.address, host.clientPrefix)}`
    case 'user+client':
      return `u=${ctx.user ?? ''}|c=${clientGroup(ctx.client.address, host.clientPrefix)}`
    case 'listener':
      return `l=${ctx.local.address}:${ctx.local.port}`
    case 'connection':
      return `n=${runtime.nodeId}:${ctx.id}`
    case 'global':
      return 'all'
  }
}
