// The store of a fleet: Redis or Valkey through ioredis, imported on first use so that a server
// without Redis never loads it. Atomic operations are Lua scripts, timed by the server's clock
// (redis.call('TIME')): nodes with skewed clocks agree on when a lease ends. A single server (or a
// primary with replicas); not Redis Cluster, whose scripts cannot span keys of several slots.
import type { Redis, RedisOptions } from 'ioredis'
import { isSocksError } from '../core/errors.js'
import { checkCounterUpdate, checkHolder, checkKey, checkLease, checkRecord, checkRecordKeys, checkRenewals, checkTtl, DEFAULT_STORE_TIMEOUT, storeError, type CounterUpdate, type LeaseRef, type LeaseRenewal, type RedisStoreOptions, type SharedStore, type SubscribeOptions } from './store.js'
import { guardListener, Subscriptions, warnListenerError } from './subscriptions.js'

// The server's clock in ms, at the top of every script that measures time.
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

// A lease set lives as long as its longest lease, so an abandoned one goes by itself.
const KEEP_SET = `if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end`

/** KEYS: counters; ARGV: by, expiresAt ('' for never) per key. Returns the new values. */
const ADD_SCRIPT = `local out = {}
for i, key in ipairs(KEYS) do
  local fresh = redis.call('EXISTS', key) == 0
  out[i] = redis.call('INCRBY', key, ARGV[2 * i - 1])
  local expiresAt = ARGV[2 * i]
  if fresh and expiresAt ~= '' then redis.call('PEXPIREAT', key, expiresAt) end
end
return out`

/** KEYS[1]: the lease set (a sorted set, score = when the lease ends); ARGV: holder, max, ttl. */
const ACQUIRE_SCRIPT = `${NOW}
local key, holder, max, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if not redis.call('ZSCORE', key, holder) and redis.call('ZCARD', key) >= max then return 0 end
redis.call('ZADD', key, now + ttl, holder)
${KEEP_SET}
return 1`

/**
 * KEYS: lease sets; ARGV: ttl, then holder and max of each key. A live lease is extended; a gone
 * one is taken again only under its max, as ACQUIRE would. Returns the (1-based) indices of those
 * that could not be.
 */
const RENEW_SCRIPT = `${NOW}
local ttl = tonumber(ARGV[1])
local lost = {}
for i, key in ipairs(KEYS) do
  local holder, max = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if not redis.call('ZSCORE', key, holder) and redis.call('ZCARD', key) >= max then
    lost[#lost + 1] = i
  else
    redis.call('ZADD', key, now + ttl, holder)
    ${KEEP_SET}
  end
end
return lost`

/** KEYS[1]: the lease set. Returns the holders of live leases. */
const HOLDERS_SCRIPT = `${NOW}
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')`

/** How long to wait before subscribing again when the resubscription after a reconnect failed (ms). */
const RESUBSCRIBE_RETRY = 1000

/** Keys SCAN looks at per round trip (a hint to Redis): big enough that a listing takes few trips. */
const SCAN_COUNT = 1000

/** `text` matched literally by a Redis glob pattern (MATCH): its special characters escaped. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&')
}

interface Scripted {
  socksmithAdd(numberOfKeys: number, ...keysAndArgs: (string | number)[]): Promise<number[]>
  socksmithAcquire(key: string, holder: string, max: number, ttl: number): Promise<number>
  socksmithRenew(numberOfKeys: number, ...keysAndArgs: (string | number)[]): Promise<number[]>
  socksmithHolders(key: string): Promise<string[]>
}

type Client = Redis & Scripted

/**
 * One ioredis connection and whether it can take a command now. ioredis reconnects on its own;
 * its offline queue is off (a command queued while Redis is down would be applied whenever Redis
 * returns, long after its caller was told it failed), so a command waits here for the connection
 * to be ready, bounded by the operation's timeout.
 */
class Connection {
  readonly redis: Client
  lastError: string | null = null
  readonly #waiters = new Set<() => void>()

  constructor(redis: Client) {
    this.redis = redis
    redis.on('error', (err: Error) => {
      this.lastError = err.message
    })
    redis.on('ready', () => {
      this.lastError = null
      for (const wake of this.#waiters) wake()
      this.#waiters.clear()
    })
  }

  /** Disconnects; operations waiting for the connection go on at once, and fail on the closed one. */
  close(): void {
    this.redis.disconnect()
    for (const wake of this.#waiters) wake()
    this.#waiters.clear()
  }

  /** Resolves once the connection is ready; false when it was not within `ms`. */
  ready(ms: number): Promise<boolean> {
    if (this.redis.status === 'ready') return Promise.resolve(true)
    return new Promise<boolean>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer)
        resolve(true)
      }
      // Removed when it gives up: an outage must not pile up waiters.
      const timer = setTimeout(() => {
        this.#waiters.delete(wake)
        resolve(false)
      }, ms)
      this.#waiters.add(wake)
    })
  }
}

/** The store of a fleet of nodes: every node configured with the same Redis and prefix shares it. */
export class RedisStore implements SharedStore {
  readonly kind = 'redis'
  readonly shared = true
  readonly #url: string
  readonly #prefix: string
  readonly #timeout: number
  /** host:port, for messages: never the URL, which may carry a password. */
  readonly #where: string
  readonly #onListenerError: (err: unknown, channel: string) => void
  #client: Promise<Connection> | null = null
  #subscriber: Promise<Connection> | null = null
  readonly #channels = new Subscriptions(
    (channel) => this.#run('subscribe', (redis) => redis.subscribe(channel), this.#openSubscriber()),
    (channel) => this.#run('unsubscribe', (redis) => redis.unsubscribe(channel), this.#openSubscriber()),
  )
  /**
   * Channels whose subscription went with a dropped subscriber connection and is not back yet.
   * The store subscribes again itself (ioredis's autoResubscribe is off): it must know when Redis
   * confirmed it, to report the gap (SubscribeOptions.onGap) only once every later message is
   * delivered; and a resubscription that fails is tried again, where ioredis's would give up.
   */
  readonly #lost = new Set<string>()
  #resubscribeTimer: NodeJS.Timeout | null = null
  #closed = false

  constructor(options: Omit<RedisStoreOptions, 'type'>, hooks: { onListenerError?: (err: unknown, channel: string) => void } = {}) {
    this.#url = options.url
    this.#prefix = options.prefix ?? 'socksmith:'
    this.#timeout = options.timeout ?? DEFAULT_STORE_TIMEOUT
    const url = new URL(options.url)
    this.#where = `${url.hostname}:${url.port === '' ? '6379' : url.port}`
    this.#onListenerError = hooks.onListenerError ?? warnListenerError
  }

  async add(key: string, by: number, expiresAt: number | null): Promise<number> {
    const [value] = await this.addMany([{ key, by, expiresAt }])
    return value as number
  }

  async addMany(entries: readonly CounterUpdate[]): Promise<number[]> {
    for (const entry of entries) checkCounterUpdate(entry)
    if (entries.length === 0) return []
    const keys = entries.map((entry) => this.#counterKey(entry.key))
    const args = entries.flatMap(({ by, expiresAt }) => [by, expiresAt ?? ''])
    return this.#run(entries.length === 1 ? 'add' : 'addMany', (redis) => redis.socksmithAdd(keys.length, ...keys, ...args))
  }

  async read(key: string): Promise<number> {
    checkKey(key)
    const value = await this.#run('read', (redis) => redis.get(this.#counterKey(key)))
    return value === null ? 0 : Number(value)
  }

  async acquire(key: string, holder: string, max: number, ttlMs: number): Promise<boolean> {
    checkLease(key, holder, max, ttlMs)
    return (await this.#run('acquire', (redis) => redis.socksmithAcquire(this.#leaseKey(key), holder, max, ttlMs))) === 1
  }

  async renew(leases: readonly LeaseRenewal[], ttlMs: number): Promise<LeaseRef[]> {
    checkRenewals(leases, ttlMs)
    if (leases.length === 0) return []
    const keys = leases.map((lease) => this.#leaseKey(lease.key))
    const lost = await this.#run('renew', (redis) => redis.socksmithRenew(keys.length, ...keys, ttlMs, ...leases.flatMap((lease) => [lease.holder, lease.max])))
    return lost.map((i) => {
      const { key, holder } = leases[i - 1]!
      return { key, holder }
    })
  }

  async release(key: string, holder: string): Promise<void> {
    await this.#run('release', (redis) => redis.zrem(this.#leaseKey(key), holder))
  }

  async holders(key: string): Promise<string[]> {
    checkKey(key)
    return this.#run('holders', (redis) => redis.socksmithHolders(this.#leaseKey(key)))
  }

  async getRecord(key: string): Promise<string | null> {
    checkKey(key)
    return this.#run('getRecord', (redis) => redis.get(this.#recordKey(key)))
  }

  async setRecord(key: string, value: string): Promise<void> {
    checkRecord(key, value)
    await this.#run('setRecord', (redis) => redis.set(this.#recordKey(key), value))
  }

  async removeRecord(key: string): Promise<boolean> {
    checkKey(key)
    return (await this.#run('removeRecord', (redis) => redis.del(this.#recordKey(key)))) === 1
  }

  async recordKeys(prefix: string, limit?: number): Promise<string[]> {
    const max = checkRecordKeys(prefix, limit)
    const namespace = this.#recordKey('')
    const match = `${escapeGlob(namespace + prefix)}*`
    // SCAN, a page per round trip (each bounded by the timeout), never KEYS: that would block
    // Redis for every node of the fleet while it walks the whole key space. SCAN may repeat a key.
    const found = new Set<string>()
    let cursor = '0'
    do {
      const [next, keys] = await this.#run('recordKeys', (redis) => redis.scan(cursor, 'MATCH', match, 'COUNT', SCAN_COUNT))
      for (const key of keys) found.add(key.slice(namespace.length))
      cursor = next
    } while (cursor !== '0' && found.size < max)
    return [...found].sort().slice(0, max)
  }

  async delete(...keys: string[]): Promise<void> {
    if (keys.length === 0) return
    await this.#run('delete', (redis) => redis.del(...keys.flatMap((key) => [this.#counterKey(key), this.#leaseKey(key), this.#recordKey(key)])))
  }

  async now(): Promise<number> {
    const [seconds, micros] = await this.#run('now', (redis) => redis.time())
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.#run('publish', (redis) => redis.publish(this.#prefix + channel, String(message)))
  }

  async subscribe(channel: string, listener: (message: string) => void, options: SubscribeOptions = {}): Promise<() => Promise<void>> {
    if (this.#closed) throw storeError(this.kind, 'subscribe', 'the store is closed')
    const onGap = options.onGap === undefined ? null : guardListener(channel, options.onGap, this.#onListenerError)
    return this.#channels.add(this.#prefix + channel, guardListener(channel, listener, this.#onListenerError), onGap)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#resubscribeTimer !== null) clearTimeout(this.#resubscribeTimer)
    this.#channels.clear()
    const connections = await Promise.allSettled([this.#client, this.#subscriber])
    for (const result of connections) {
      if (result.status === 'fulfilled') result.value?.close()
    }
  }

  // Counters, lease sets and records have namespaces of their own: one key may name one of each,
  // and a counter never meets a lease set's Redis type (WRONGTYPE).
  #counterKey(key: string): string {
    return `${this.#prefix}counter:${key}`
  }

  #leaseKey(key: string): string {
    return `${this.#prefix}lease:${key}`
  }

  /** A plain Redis string: operators may read and write it with GET and SET (docs/plugins/auth.md). */
  #recordKey(key: string): string {
    return `${this.#prefix}record:${key}`
  }

  /** Runs `command` once the connection is ready; rejects with ERR_SOCKS_STORE within the timeout. */
  async #run<T>(what: string, command: (redis: Client) => Promise<T>, connection: Promise<Connection> | null = null): Promise<T> {
    if (this.#closed) throw storeError(this.kind, what, 'the store is closed')
    const deadline = Date.now() + this.#timeout
    let link: Connection | null = null
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(storeError(this.kind, what, this.#unreachable(link))), this.#timeout)
    })
    try {
      const attempt = async (): Promise<T> => {
        link = await (connection ?? this.#openClient())
        const ready = link
        if (!(await ready.ready(Math.max(0, deadline - Date.now())))) throw storeError(this.kind, what, this.#unreachable(ready))
        return command(ready.redis)
      }
      return await Promise.race([attempt(), timedOut])
    } catch (err) {
      if (isSocksError(err)) throw err
      // ioredis's own words ("Stream isn't writeable...", "Command timed out"), and which Redis.
      const why = err instanceof Error ? err.message : String(err)
      throw storeError(this.kind, what, `${this.#where}: ${why}`, err)
    } finally {
      clearTimeout(timer)
    }
  }

  /** Why an operation ran out of time: Redis unreachable (with ioredis's last error), or slow. */
  #unreachable(link: Connection | null): string {
    if (link === null || link.redis.status !== 'ready') return `cannot reach ${this.#where} within ${this.#timeout} ms${link?.lastError == null ? '' : ` (${link.lastError})`}`
    return `no answer from ${this.#where} within ${this.#timeout} ms`
  }

  /** The subscriber connection was replaced: `channels` are subscribed again, then their gap reported. */
  #lose(channels: readonly string[]): void {
    for (const channel of channels) this.#lost.add(channel)
    void this.#resubscribe()
  }

  async #resubscribe(): Promise<void> {
    if (this.#resubscribeTimer !== null) clearTimeout(this.#resubscribeTimer)
    this.#resubscribeTimer = null
    // Not those unsubscribed meanwhile: nobody listens to them any more.
    const channels = [...this.#lost].filter((channel) => this.#channels.has(channel))
    this.#lost.clear()
    if (this.#closed || channels.length === 0) return
    try {
      await this.#run('subscribe', (redis) => redis.subscribe(...channels), this.#openSubscriber())
    } catch {
      if (this.#closed) return
      // The connection dropped again (its next 'ready' tries again) or Redis did not answer in time.
      for (const channel of channels) this.#lost.add(channel)
      this.#resubscribeTimer = setTimeout(() => void this.#resubscribe(), RESUBSCRIBE_RETRY).unref()
      return
    }
    // A channel lost again while this was under way is not back: its report waits for that.
    for (const channel of channels) if (!this.#lost.has(channel)) this.#channels.gap(channel)
  }

  #openClient(): Promise<Connection> {
    this.#client ??= this.#connect(false)
    return this.#client
  }

  #openSubscriber(): Promise<Connection> {
    this.#subscriber ??= this.#connect(true)
    return this.#subscriber
  }

  async #connect(subscriber: boolean): Promise<Connection> {
    const { Redis } = await import('ioredis')
    const options: RedisOptions = {
      // Every wait bounded by the operation's timeout, and no command sent twice or late.
      connectTimeout: this.#timeout,
      commandTimeout: this.#timeout,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // Back within a second of Redis's return (ioredis's default waits up to 2 s).
      retryStrategy: (times) => Math.min(times * 100, 1000),
      // The subscriber's channels are subscribed again by #resubscribe(), which knows when.
      autoResubscribe: !subscriber,
    }
    const redis = new Redis(this.#url, options) as Client
    if (subscriber) {
      redis.on('message', (channel: string, message: string) => this.#channels.deliver(channel, message))
      let readyBefore = false
      redis.on('ready', () => {
        // A 'ready' after the first is a new connection: Redis has none of the old one's subscriptions.
        if (readyBefore) this.#lose(this.#channels.confirmed())
        readyBefore = true
      })
    } else {
      redis.defineCommand('socksmithAdd', { lua: ADD_SCRIPT })
      redis.defineCommand('socksmithAcquire', { lua: ACQUIRE_SCRIPT, numberOfKeys: 1 })
      redis.defineCommand('socksmithRenew', { lua: RENEW_SCRIPT })
      redis.defineCommand('socksmithHolders', { lua: HOLDERS_SCRIPT, numberOfKeys: 1 })
    }
    // close() may have run while ioredis was loading.
    if (this.#closed) redis.disconnect()
    return new Connection(redis)
  }
}
