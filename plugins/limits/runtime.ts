import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import { TokenBucket, type Logger, type SharedStore } from 'socksmith'
import type { CompiledLimit, ParsedLimitsOptions } from './options.js'
import { QuotaLedger } from './quota-ledger.js'
import { LeaseKeeper } from './leases.js'

/** A rate no limit reaches: what a bucket whose limit a reload removed is set to. */
const UNLIMITED = Number.MAX_SAFE_INTEGER

/** A bucket with the connections using it, so an unused, refilled one can be forgotten. */
export interface SharedBucket {
  readonly bucket: TokenBucket
  readonly limitId: string
  readonly direction: 'up' | 'down' | 'connections'
  refs: number
}

/** What the runtime reports to the setup that owns it now (counts for its metrics). */
export interface RuntimeOwner {
  storeFailed(err: unknown): void
  /** A live connection was cut for `limit` (null: one a reload removed since). */
  cut(limit: CompiledLimit | null, reason: 'maxConnections' | 'maxClientIps'): void
}

/**
 * The state of the limits plugin that outlives a reload: quota tallies, leases, buckets and the
 * timers that flush and renew them. A reload hands it to the new setup, which gives it its limits
 * (reconfigure): live connections keep their buckets and tallies, which now follow the new values.
 */
export class LimitsRuntime {
  /** Unique per process: leases name their holder with it. */
  readonly nodeId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
  readonly store: SharedStore
  readonly ledger: QuotaLedger
  readonly leases: LeaseKeeper
  /** Per limit id and direction, the buckets by subject (two levels: no key to build per connection). */
  readonly #buckets = new Map<string, Map<string, SharedBucket>>()
  #options: ParsedLimitsOptions
  #owner: RuntimeOwner
  readonly #log: Logger
  #timer: NodeJS.Timeout | null = null
  #closed: Promise<void> | null = null
  #lastWarning = 0
  #lastLossWarning = 0

  constructor(store: SharedStore, options: ParsedLimitsOptions, owner: RuntimeOwner, log: Logger) {
    this.store = store
    this.#options = options
    this.#owner = owner
    this.#log = log
    const failed = (err: unknown): void => this.storeFailed(err)
    this.ledger = new QuotaLedger(store, { storeFailed: failed })
    this.leases = new LeaseKeeper(store, options.leaseTtl, failed)
    this.#restartTimer()
  }

  get options(): ParsedLimitsOptions {
    return this.#options
  }

  get limits(): readonly CompiledLimit[] {
    return this.#options.limits
  }

  /** A reload: new limits (and options) for new connections and, through buckets and tallies, for live ones. */
  reconfigure(options: ParsedLimitsOptions, owner: RuntimeOwner): void {
    const flushChanged = options.flushInterval !== this.#options.flushInterval
    this.#options = options
    this.#owner = owner
    this.ledger.reconfigure(options.limits)
    const byId = new Map(options.limits.map((limit) => [limit.id, limit]))
    for (const subjects of this.#buckets.values()) {
      for (const shared of subjects.values()) {
        const limit = byId.get(shared.limitId)
        const next = limit === undefined ? null : bucketRate(limit, shared.direction)
        if (next === null) shared.bucket.setRate(UNLIMITED, UNLIMITED)
        else shared.bucket.setRate(next.rate, next.burst)
      }
    }
    if (flushChanged) this.#restartTimer()
  }

  /**
   * The bucket of `limit` for `subject` in `direction`, shared by every connection that asks for the
   * same; counted as used until `unuse()`.
   */
  bucket(limit: CompiledLimit, subject: string, direction: SharedBucket['direction']): SharedBucket | null {
    const rate = bucketRate(limit, direction)
    if (rate === null) return null
    const maps = this.#buckets
    const mapKey = direction === 'connections' ? limit.id : direction === 'up' ? limit.upKey : limit.downKey
    let subjects = maps.get(mapKey)
    if (subjects === undefined) maps.set(mapKey, (subjects = new Map()))
    let shared = subjects.get(subject)
    if (shared === undefined) {
      shared = { bucket: new TokenBucket(rate), limitId: limit.id, direction, refs: 0 }
      subjects.set(subject, shared)
    }
    shared.refs++
    return shared
  }

  /** The store failed: counted, and logged at most once a minute. */
  storeFailed(err: unknown): void {
    this.#owner.storeFailed(err)
    const now = Date.now()
    if (now - this.#lastWarning < 60_000) return
    this.#lastWarning = now
    const message = err instanceof Error ? err.message : String(err)
    this.#log.warn(`limits: the ${this.store.kind} store did not answer (${message}); failMode ${this.#options.failMode}: ${this.#options.failMode === 'open' ? 'connections are let through' : 'connections are refused'} until it does (further failures this minute are not logged)`)
  }

  /** A connection's lease was lost (LeaseKeeper): counted, and logged at most once a minute. */
  leaseLost(limit: CompiledLimit | null, reason: 'maxConnections' | 'maxClientIps'): void {
    this.#owner.cut(limit, reason)
    const now = Date.now()
    if (now - this.#lastLossWarning < 60_000) return
    this.#lastLossWarning = now
    this.#log.warn(`limits: the ${this.store.kind} store answered after leases of this node had expired, and their slots had been taken: connections that no longer fit under ${reason} are closed (limits:${reason}); further ones this minute are not logged`)
  }

  /** Writes what is pending and gives the leases back (the server is closing). */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#timer !== null) clearInterval(this.#timer)
      this.#timer = null
      await this.ledger.flush()
      await this.leases.close()
    })()
    return this.#closed
  }

  #restartTimer(): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = setInterval(() => this.#tick(), this.#options.flushInterval)
    this.#timer.unref()
  }

  #tick(): void {
    void this.ledger.flush()
    // Buckets nobody uses that have refilled tell nothing a new one would not: forget them.
    for (const subjects of this.#buckets.values()) {
      for (const [subject, shared] of subjects) {
        if (shared.refs <= 0 && shared.bucket.tokens >= shared.bucket.burst) subjects.delete(subject)
      }
    }
  }
}

/** The bucket options of a limit for a direction, or null if it has none there. */
function bucketRate(limit: CompiledLimit, direction: SharedBucket['direction']): { rate: number; burst: number } | null {
  if (direction === 'connections') return limit.connectionRate
  const bandwidth = limit.bandwidth
  const rate = bandwidth === null ? null : direction === 'up' ? bandwidth.up : bandwidth.down
  if (rate === null || bandwidth === null) return null
  return { rate, burst: bandwidth.burst ?? rate }
}
