import { SocksError } from '../core/errors.js'

/** One `add()` of `SharedStore.addMany()`. */
export interface CounterUpdate {
  /** The counter. */
  readonly key: string
  /** A safe integer; 0 or negative allowed. */
  readonly by: number
  /** When a counter this creates expires (ms since the epoch); null: never. */
  readonly expiresAt: number | null
}

/** One lease: its set and its holder (what `SharedStore.renew()` reports lost). */
export interface LeaseRef {
  /** The lease set. */
  readonly key: string
  /** Whose lease: unique per lease over every process sharing the store (node, pid, connection id). */
  readonly holder: string
}

/** One lease of `SharedStore.renew()`: with the cap it was taken under, for a lease that expired meanwhile. */
export interface LeaseRenewal extends LeaseRef {
  /** As for `acquire()`: an expired lease is put back only if fewer than `max` others are live. */
  readonly max: number
}

/**
 * Shared state for plugins: counters with expiry, leases with a time to live, string records, and
 * pub/sub. Plugins reach it as `host.store`; which backend it is comes from the server's `store`
 * option (the config's `store:`). Counters, lease sets and records live in separate namespaces:
 * the same key may name one of each. Every operation rejects with `ERR_SOCKS_STORE` (never hangs) when the backend
 * cannot answer within the store's timeout (default 1 s).
 *
 * @example
 * // At most 5 live connections per user over every process sharing the store.
 * const admitted = await host.store.acquire(`conns:${ctx.user}`, String(ctx.id), 5, 30_000)
 * if (!admitted) throw new SocksError('ERR_SOCKS_NOT_ALLOWED', 'too many connections')
 */
export interface SharedStore {
  /** 'memory' (this process), 'cluster' (the primary of --workers holds it), 'redis'. */
  readonly kind: 'memory' | 'cluster' | 'redis'
  /** True when other processes see the same state (cluster, redis). */
  readonly shared: boolean
  /**
   * Adds `by` (a safe integer, may be 0 or negative) to counter `key`, returns the new value. A
   * counter that does not exist (or expired) starts at 0 and expires at `expiresAt` (ms since the
   * epoch; null: never); adding to an existing counter keeps its expiry.
   */
  add(key: string, by: number, expiresAt: number | null): Promise<number>
  /** Several add()s in one round trip (the quota flush): returns the new values in order. */
  addMany(entries: readonly CounterUpdate[]): Promise<number[]>
  /** The counter's value, 0 if absent or expired. */
  read(key: string): Promise<number>
  /**
   * Takes (or renews) `holder`'s lease in the set `key`, unless `max` other live leases are there:
   * true if held afterwards. A lease lives `ttlMs` after its last acquire()/renew(), or until
   * release(). Atomic across processes.
   */
  acquire(key: string, holder: string, max: number, ttlMs: number): Promise<boolean>
  /**
   * Extends these leases (the heartbeat), in one round trip, atomically and in the order given. A
   * live lease is extended. One that is gone (it expired: its holder could not renew it in time,
   * as a node cut off from the store for longer than the TTL; or it was released) is taken again
   * as `acquire()` would, only under its `max`: its slot may have been given to someone else
   * meanwhile. Resolves with the leases that could not be taken again (in the order given): they
   * are not held any more, and their holder must act as if it had never been admitted (close
   * what the lease stood for). Stop renewing what you release.
   */
  renew(leases: readonly LeaseRenewal[], ttlMs: number): Promise<LeaseRef[]>
  /** Ends `holder`'s lease in `key` (nothing happens when it holds none). */
  release(key: string, holder: string): Promise<void>
  /** Live holders of `key`, in no particular order. */
  holders(key: string): Promise<string[]>
  /**
   * The string stored under `key` by setRecord(), or null. Records do not expire: they are data
   * (the `auth` plugin's users), not state that ages.
   */
  getRecord(key: string): Promise<string | null>
  /** Stores `value` (any string, empty included) under `key`, replacing what was there. */
  setRecord(key: string, value: string): Promise<void>
  /** Removes the record `key`: true if there was one. */
  removeRecord(key: string): Promise<boolean>
  /**
   * The keys of records that start with `prefix` (`''`: all), sorted, at most `limit` of them
   * (default 10 000): for listings such as `socksmith users list`. On Redis a SCAN of the keys of
   * this store's prefix, never a blocking KEYS; with more than `limit` matches, which ones are
   * returned is up to the backend.
   */
  recordKeys(prefix: string, limit?: number): Promise<string[]>
  /** Deletes counters, lease sets and records of these keys (tests, admin). */
  delete(...keys: string[]): Promise<void>
  /**
   * The store's clock, ms since the epoch: the Redis server's `TIME` for 'redis' (the clock lease
   * expiry is measured by, the same for every node), `Date.now()` of the process holding the state
   * otherwise. For windows that every node should agree on (`expiresAt` of a rate counter).
   */
  now(): Promise<number>
  /** Sends `message` to every subscriber of `channel`, in every process sharing the store. */
  publish(channel: string, message: string): Promise<void>
  /**
   * `listener` gets every message published on `channel` by any process sharing the store (this
   * one included). Resolves once subscribed; the function it returns unsubscribes. Messages are
   * not stored: one published while the subscription is not in place is lost for this
   * subscriber, which `options.onGap` then says.
   *
   * @example
   * // State derived from messages is read again when some may have been missed.
   * await host.store.subscribe('bans', (name) => banned.add(name), { onGap: () => void reloadBans() })
   */
  subscribe(channel: string, listener: (message: string) => void, options?: SubscribeOptions): Promise<() => Promise<void>>
  /** Ends connections, timers and subscriptions; operations after it reject. */
  close(): Promise<void>
}

/** Options of `SharedStore.subscribe()`. */
export interface SubscribeOptions {
  /**
   * Called when messages of the channel may have been missed: the subscription was in place, was
   * lost, and is in place again. Redis: the subscriber connection dropped (Redis restarted, a
   * network cut, `CLIENT KILL`) and the store subscribed again on the new one; the call comes once
   * Redis confirmed that, so everything published from then on is delivered, and what the store
   * holds is at least as new as any message that was missed. Messages of the gap are not replayed:
   * a subscriber that keeps state derived from them reads it again from the store here.
   *
   * Never called by the memory store (delivery is in-process) nor the `--workers` cluster store:
   * its IPC channel to the primary neither drops nor reorders messages, and when the primary
   * goes, Node's cluster ends the worker too. Not called for a subscribe() that rejected: its
   * caller knows it was not subscribed. A throw is reported as a listener's is (`onListenerError`).
   */
  readonly onGap?: () => void
}

/**
 * What store a server creates (`ServerOptions.store`, the config's `store:`). `memory` is the
 * default; under `--workers` it becomes the primary's store, shared by every worker.
 */
export type StoreOptions = MemoryStoreOptions | RedisStoreOptions

/** The state lives in this process (in a `--workers` worker: in the primary). */
export interface MemoryStoreOptions {
  /** The default store. */
  readonly type: 'memory'
  /** Under `--workers`: how long a worker waits for the primary's answer, in ms. Default 1000. */
  readonly timeout?: number
}

/** The state lives in Redis or Valkey, shared by every node using the same server and prefix. */
export interface RedisStoreOptions {
  /** Redis 5 or later, or Valkey (the scripts read the server's clock with TIME before they write). */
  readonly type: 'redis'
  /** `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS. */
  readonly url: string
  /** Put before every key and channel name. Default `socksmith:`. */
  readonly prefix?: string
  /** How long an operation may take, connecting included, in ms. Default 1000. */
  readonly timeout?: number
}

/** An operation's bound when the options name none (ms). */
export const DEFAULT_STORE_TIMEOUT = 1000

/** The ERR_SOCKS_STORE a failed operation rejects with: `<kind> store: <what> failed: <why>`. */
export function storeError(kind: SharedStore['kind'], what: string, why: string, cause?: unknown): SocksError {
  return new SocksError('ERR_SOCKS_STORE', `${kind} store: ${what} failed: ${why}`, cause === undefined ? {} : { cause })
}

/** Checks what every backend checks the same way, so a bad argument fails alike everywhere. */
export function checkCounterUpdate(update: CounterUpdate): void {
  const { key, by, expiresAt } = update
  checkKey(key)
  if (!Number.isSafeInteger(by)) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `store: add(${JSON.stringify(key)}): by must be a safe integer, found ${String(by)}`)
  if (expiresAt !== null && !Number.isSafeInteger(expiresAt)) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `store: add(${JSON.stringify(key)}): expiresAt must be ms since the epoch (an integer) or null, found ${String(expiresAt)}`)
}

/** What recordKeys() returns at most when its caller names no limit. */
export const DEFAULT_RECORD_KEYS_LIMIT = 10_000

export function checkRecord(key: string, value: unknown): asserts value is string {
  checkKey(key)
  if (typeof value !== 'string') throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `store: setRecord(${JSON.stringify(key)}): the value must be a string, found ${value === null ? 'null' : typeof value}`)
}

/** Checks recordKeys()'s arguments; returns the limit to use. */
export function checkRecordKeys(prefix: unknown, limit: unknown): number {
  if (typeof prefix !== 'string') throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `store: recordKeys(): the prefix must be a string, found ${prefix === null ? 'null' : typeof prefix}`)
  if (limit === undefined) return DEFAULT_RECORD_KEYS_LIMIT
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `store: recordKeys(): limit must be a positive integer, found ${String(limit)}`)
  return limit
}

export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key === '') throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `store: a key must be a non-empty string, found ${JSON.stringify(key)}`)
}

export function checkLease(key: string, holder: string, max: number, ttlMs: number): void {
  checkKey(key)
  checkHolder(holder)
  if (!Number.isSafeInteger(max) || max < 0) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `store: acquire(${JSON.stringify(key)}): max must be a non-negative integer, found ${String(max)}`)
  checkTtl(ttlMs)
}

/** Checks renew()'s leases as acquire() checks one. */
export function checkRenewals(leases: readonly LeaseRenewal[], ttlMs: number): void {
  checkTtl(ttlMs)
  for (const { key, holder, max } of leases) checkLease(key, holder, max, ttlMs)
}

export function checkHolder(holder: unknown): asserts holder is string {
  if (typeof holder !== 'string' || holder === '') throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `store: a lease holder must be a non-empty string, found ${JSON.stringify(holder)}`)
}

export function checkTtl(ttlMs: number): void {
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `store: ttlMs must be a positive integer of milliseconds, found ${String(ttlMs)}`)
}
