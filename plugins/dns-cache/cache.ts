import { isIP } from 'node:net'
import { LRUCache } from 'lru-cache'
import { SocksError, type OptionPath, type ResolvedAddress, type ResolveOptions, type Resolver } from 'socksmith'
import { systemResolver } from 'socksmith/net'
import { createDnsTtlProbe, isWorthADnsProbe, type DnsTtlProbe } from './dns-ttl.js'
import { parseDnsCacheOptions, type DnsCacheOptions, type ResolvedDnsCacheOptions } from './options.js'

/** A snapshot of a cache's counters. */
export interface DnsCacheStats {
  /** Lookups answered from the cache (positive or negative). */
  hits: number
  /** Lookups that started a query to the wrapped resolver. */
  misses: number
  /** Lookups that joined a query already in flight for the same name (neither hit nor miss). */
  coalesced: number
  /** Names held, including expired ones not yet touched or evicted. */
  size: number
}

/** What is cached for a name: its addresses, or the error that said it has none. */
type Entry = { readonly addresses: readonly ResolvedAddress[]; readonly error: null } | { readonly addresses: null; readonly error: unknown }

interface Query {
  readonly promise: Promise<Entry>
  readonly controller: AbortController
  /** Callers still waiting; when the last one aborts, so does the query. */
  waiters: number
}

/** Error codes that mean "this name has no address" (dns.lookup and c-ares), as opposed to "DNS failed". */
const NEGATIVE_CODES = new Set(['ENOTFOUND', 'ENODATA', 'EAI_NONAME', 'EAI_NODATA'])

/** Options given to `new DnsCache()` directly rather than through the plugin; `ttlProbe` replaces the DNS TTL lookup. */
export interface DnsCacheConstructorOptions extends DnsCacheOptions {
  ttlProbe?: DnsTtlProbe
}

/**
 * A caching `Resolver` in front of another one: bounded (LRU), answers kept for their TTL clamped
 * to `[minTtl, maxTtl]`, negative answers kept for `negativeTtl`, one query per name however many
 * ask at once, IP literals passed straight through. The dns-cache plugin installs one per server.
 *
 * @example
 * const cache = new DnsCache(systemResolver, { maxTtl: 300 })
 * const server = createServer({ resolver: cache })
 * // later: cache.stats() → { hits, misses, coalesced, size }
 */
export class DnsCache implements Resolver {
  /** The resolver asked on a miss. */
  readonly wrapped: Resolver
  readonly options: ResolvedDnsCacheOptions
  readonly #entries: LRUCache<string, Entry>
  readonly #inFlight = new Map<string, Query>()
  readonly #ttlProbe: DnsTtlProbe | null
  #hits = 0
  #misses = 0
  #coalesced = 0
  /** Bumped by clear(), so a query that started before it does not refill the cache with its answer. */
  #generation = 0

  constructor(wrapped: Resolver, options: DnsCacheConstructorOptions = {}) {
    this.wrapped = wrapped
    const { ttlProbe, ...rest } = options
    this.options = parseDnsCacheOptions(rest, constructorPath)
    this.#entries = new LRUCache<string, Entry>({
      max: this.options.max,
      // Checking the clock on every get is cheaper than lru-cache's default 1 ms debounce timer, and exact.
      ttlResolution: 0,
      ...(this.options.clock !== null ? { perf: this.options.clock } : {}),
    })
    // Only the system resolver loses TTLs; any other resolver reports its own through ResolvedAddress.ttl.
    this.#ttlProbe = ttlProbe ?? (this.options.useDnsTtl && wrapped === systemResolver ? createDnsTtlProbe() : null)
  }

  /** Resolves through the cache. IP literals come back as they are; names are case-folded, one trailing dot dropped. */
  async resolve(hostname: string, options?: ResolveOptions): Promise<ResolvedAddress[]> {
    const family = isIP(hostname)
    if (family !== 0) return [{ address: hostname, family: family === 6 ? 6 : 4 }]
    const key = cacheKey(hostname)
    if (key === '') return this.wrapped.resolve(hostname, options)
    const cached = this.#entries.get(key)
    if (cached !== undefined) {
      this.#hits++
      return answer(cached)
    }
    const signal = options?.signal
    signal?.throwIfAborted()
    let query = this.#inFlight.get(key)
    if (query === undefined) {
      this.#misses++
      query = this.#startQuery(key, options)
    } else {
      this.#coalesced++
    }
    return answer(await this.#wait(key, query, signal))
  }

  /** Lookups answered from the cache, positive or negative. */
  get hits(): number {
    return this.#hits
  }

  /** Lookups that started a query of the wrapped resolver. */
  get misses(): number {
    return this.#misses
  }

  /** Lookups that joined a query already in flight for the same name. */
  get coalesced(): number {
    return this.#coalesced
  }

  /** Names held, including expired ones not yet touched or evicted. */
  get size(): number {
    return this.#entries.size
  }

  /** A snapshot of the counters and the size. */
  stats(): DnsCacheStats {
    return { hits: this.#hits, misses: this.#misses, coalesced: this.#coalesced, size: this.#entries.size }
  }

  /** True when `hostname` has an unexpired entry (positive or negative). Does not count as a hit. */
  has(hostname: string): boolean {
    return this.#entries.has(cacheKey(hostname))
  }

  /** Seconds until `hostname`'s entry expires; 0 when there is none. */
  remainingTtl(hostname: string): number {
    const key = cacheKey(hostname)
    return this.#entries.has(key) ? Math.max(0, this.#entries.getRemainingTTL(key)) / 1000 : 0
  }

  /** Drops every entry (queries in flight still answer their callers, but are not stored). Counters stay. */
  clear(): void {
    this.#generation++
    this.#entries.clear()
  }

  /** Sets the hit/miss/coalesced counters back to 0. */
  resetStats(): void {
    this.#hits = 0
    this.#misses = 0
    this.#coalesced = 0
  }

  /** `origin`: the first asker's, passed to the wrapped resolver (which may share its threads by client). */
  #startQuery(key: string, origin: ResolveOptions | undefined): Query {
    const controller = new AbortController()
    const generation = this.#generation
    const probe = this.#ttlProbe !== null && isWorthADnsProbe(key) ? this.#ttlProbe(key) : null
    // The shared promise never rejects: a caller that left must not leave an unhandled rejection behind.
    const promise = new Promise<ResolvedAddress[]>((resolve) => resolve(this.wrapped.resolve(key, { client: origin?.client, kind: origin?.kind, signal: controller.signal }))).then(
      (addresses): Entry => {
        const entry: Entry = { addresses: Object.freeze(addresses.map((a) => Object.freeze({ ...a }))), error: null }
        if (generation === this.#generation) {
          this.#store(key, entry, addresses.length === 0 ? this.options.negativeTtl : this.#positiveTtl(addresses))
          if (probe !== null && addresses.length > 0) void probe.then((ttls) => this.#applyDnsTtl(key, entry, ttls))
        }
        return entry
      },
      (error: unknown): Entry => {
        const entry: Entry = { addresses: null, error }
        if (generation === this.#generation && isNegative(error)) this.#store(key, entry, this.options.negativeTtl)
        return entry
      },
    )
    const query: Query = { promise, controller, waiters: 0 }
    void promise.finally(() => {
      if (this.#inFlight.get(key) === query) this.#inFlight.delete(key)
    })
    this.#inFlight.set(key, query)
    return query
  }

  /** Waits for a shared query; an abort releases only this caller, unless it was the last one waiting. */
  #wait(key: string, query: Query, signal: AbortSignal | undefined): Promise<Entry> {
    query.waiters++
    if (signal === undefined) return query.promise
    return new Promise<Entry>((resolve, reject) => {
      const onAbort = (): void => {
        if (--query.waiters === 0) {
          if (this.#inFlight.get(key) === query) this.#inFlight.delete(key)
          query.controller.abort(signal.reason)
        }
        reject(signal.reason)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      void query.promise.then((entry) => {
        signal.removeEventListener('abort', onAbort)
        resolve(entry)
      })
    })
  }

  /** The smallest TTL in the answer, or the default when it carries none, clamped. */
  #positiveTtl(addresses: readonly ResolvedAddress[]): number {
    let ttl = Infinity
    for (const a of addresses) if (typeof a.ttl === 'number' && Number.isFinite(a.ttl) && a.ttl >= 0) ttl = Math.min(ttl, a.ttl)
    return this.#clamp(ttl === Infinity ? this.options.defaultTtl : ttl)
  }

  #clamp(seconds: number): number {
    return Math.min(this.options.maxTtl, Math.max(this.options.minTtl, seconds))
  }

  #store(key: string, entry: Entry, seconds: number): void {
    const ttl = Math.round(seconds * 1000)
    // lru-cache reads ttl 0 as "never expires": an answer that may not be kept is simply not stored.
    if (ttl <= 0) this.#entries.delete(key)
    else this.#entries.set(key, entry, { ttl })
  }

  /**
   * The system answered (hosts file, nsswitch, search domains all had their say) and DNS answered
   * in parallel. DNS's TTL applies only when DNS knows every address the system gave, i.e. the
   * system's answer came from DNS; a hosts-file override keeps the default TTL.
   */
  #applyDnsTtl(key: string, entry: Entry, ttls: ReadonlyMap<string, number>): void {
    if (entry.addresses === null || this.#entries.peek(key) !== entry) return
    let ttl = Infinity
    for (const a of entry.addresses) {
      const dnsTtl = ttls.get(a.address)
      if (dnsTtl === undefined) return
      ttl = Math.min(ttl, dnsTtl)
    }
    if (ttl !== Infinity) this.#store(key, entry, this.#clamp(ttl))
  }
}

/** The cache key: DNS names are case-insensitive, and `example.com.` is `example.com`. */
export function cacheKey(hostname: string): string {
  const lower = hostname.toLowerCase()
  return lower.endsWith('.') ? lower.slice(0, -1) : lower
}

function answer(entry: Entry): ResolvedAddress[] {
  if (entry.addresses === null) throw entry.error
  // A fresh array per caller: middleware may filter ctx.resolved in place.
  return entry.addresses.slice()
}

function isNegative(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && NEGATIVE_CODES.has(code)
}

const constructorPath: OptionPath = {
  plugin: 'dns-cache',
  fail(field, message): never {
    throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `DnsCache options${field === '' ? '' : `.${field}`}: ${message}`)
  },
}
