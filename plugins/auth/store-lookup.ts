import { SocksError, type Logger, type SharedStore } from 'socksmith'
import { parseHash, type ScryptHash } from './hash.js'
import { storedUserKey, USERS_CHANNEL } from './user-table.js'

/** How the plugin caches what it read from the store (`usersInStore: { ... }`). */
export interface UsersInStoreOptions {
  /** Milliseconds a looked-up user (or its absence) is reused; 0 asks the store at every login. Default 5000. */
  lookupCacheMs?: number
  /** Users whose lookup is kept at once; the least recently used go first. Default 10000. */
  lookupCacheSize?: number
}

/** The cache `usersInStore: true` gets. */
export const DEFAULT_USERS_IN_STORE: Readonly<Required<UsersInStoreOptions>> = Object.freeze({ lookupCacheMs: 5000, lookupCacheSize: 10_000 })

interface CachedLookup {
  /** null: no such user (cached too, so a storm of logins with made-up names does not reach the store). */
  readonly hash: ScryptHash | null
  readonly expiresAt: number
}

interface PendingLookup {
  readonly result: Promise<ScryptHash | null>
  /** The user changed while the store was being asked: the answer may predate it, so it is not cached. */
  stale: boolean
}

/** One login of a store user, from lookup to verdict. */
export interface StoreLogin {
  readonly name: string
  /** The user changed while this login was under way: it is refused, whatever its password. */
  stale: boolean
  /** The lookup's gap count when this login last looked the user up (see missedChanges()). */
  gaps: number
}

/** How often, at most, a store that does not answer is logged (ms). */
const WARNING_INTERVAL = 60_000
/** How long to wait before subscribing again after a failed subscribe (ms). */
const RESUBSCRIBE_DELAY = 1000

/**
 * The users of the store as one setup of the plugin sees them: lookups cached briefly in a
 * bounded LRU, forgotten the moment the store announces a change of the user (USERS_CHANNEL).
 * Announcements are heard through one subscription; while it is not in place (the store was
 * down at start-up) nothing is cached, so every login asks the store and a removal still takes
 * effect at once for new logins. Once it is in place after a time it was not (a retry after a
 * failed first attempt, or the store's onGap after its connection was replaced), announcements
 * may have been missed: the cache and the lookups under way are dropped, logins under way look
 * their user up again (missedChanges()), and `onGap` checks the live connections.
 *
 * A store that does not answer fails closed: the login is refused (ERR_SOCKS_AUTH_FAILED) and a
 * warning is logged at most once a minute. Letting anyone in because the user table is
 * unreachable would make an outage an open door.
 */
export class StoreUserLookup {
  readonly #store: SharedStore
  readonly #log: Logger
  readonly #options: Readonly<Required<UsersInStoreOptions>>
  // A Map in least-recently-used order: a hit is re-inserted, the first entry is the oldest.
  readonly #cache = new Map<string, CachedLookup>()
  readonly #pending = new Map<string, PendingLookup>()
  readonly #logins = new Map<string, Set<StoreLogin>>()
  #subscribed = false
  #unsubscribe: (() => Promise<void>) | null = null
  #retry: NodeJS.Timeout | null = null
  /** Gaps in the announcements so far. */
  #gaps = 0
  #closed = false
  #lastWarning = -Infinity

  constructor(store: SharedStore, log: Logger, options: Readonly<Required<UsersInStoreOptions>>) {
    this.#store = store
    this.#log = log
    this.#options = options
  }

  /**
   * Subscribes to the announcements: `onChange(name)` runs after the user's cached lookup and its
   * logins under way were dropped. Resolves once subscribed, or once the first attempt failed
   * (then it tries again every second in the background, and start-up does not wait for Redis).
   * `onGap()` runs once the subscription is in place after a time it was not, after the cache
   * was dropped: announcements of that time were not heard.
   */
  async listen(onChange: (name: string) => void, onGap: () => void): Promise<void> {
    const listener = (name: string): void => {
      this.forget(name)
      onChange(name)
    }
    const gap = (): void => {
      this.#gaps++
      this.#cache.clear()
      for (const pending of this.#pending.values()) pending.stale = true
      this.#pending.clear()
      onGap()
    }
    let failed = false
    const attempt = async (): Promise<void> => {
      this.#retry = null
      if (this.#closed) return
      try {
        const unsubscribe = await this.#store.subscribe(USERS_CHANNEL, listener, { onGap: gap })
        if (this.#closed) return void unsubscribe().catch(() => {})
        this.#unsubscribe = unsubscribe
        this.#subscribed = true
        if (failed) gap()
      } catch (err) {
        failed = true
        this.#warn(err, 'cannot subscribe to user changes; logins ask the store every time until it can')
        this.#retry = setTimeout(() => void attempt(), RESUBSCRIBE_DELAY).unref()
      }
    }
    await attempt()
  }

  /** Starts a login of `name`: end() it once decided. */
  begin(name: string): StoreLogin {
    const login: StoreLogin = { name, stale: false, gaps: this.#gaps }
    let logins = this.#logins.get(name)
    if (logins === undefined) this.#logins.set(name, (logins = new Set()))
    logins.add(login)
    return login
  }

  end(login: StoreLogin): void {
    const logins = this.#logins.get(login.name)
    if (logins === undefined) return
    logins.delete(login)
    if (logins.size === 0) this.#logins.delete(login.name)
  }

  /**
   * `name`'s hash, null when the store has no such user (or a record that is not a valid hash,
   * which is logged). Rejects with ERR_SOCKS_AUTH_FAILED when the store does not answer.
   */
  async lookup(name: string): Promise<ScryptHash | null> {
    const cached = this.#cache.get(name)
    if (cached !== undefined) {
      this.#cache.delete(name)
      if (cached.expiresAt > Date.now()) {
        this.#cache.set(name, cached)
        return cached.hash
      }
    }
    let pending = this.#pending.get(name)
    if (pending === undefined) {
      // Concurrent logins of one user share one question to the store.
      const created: PendingLookup = { result: this.#fetch(name), stale: false }
      created.result.then(
        (hash) => {
          if (this.#pending.get(name) === created) this.#pending.delete(name)
          if (!created.stale) this.#remember(name, hash)
        },
        () => {
          if (this.#pending.get(name) === created) this.#pending.delete(name)
        },
      )
      this.#pending.set(name, (pending = created))
    }
    return pending.result
  }

  /**
   * True when announcements may have been missed since `login` looked its user up (once per such
   * gap): the answer it got may predate a change it did not hear of. The gap dropped the cache and
   * the lookups under way, so looking up again now asks the store afresh.
   */
  missedChanges(login: StoreLogin): boolean {
    if (login.gaps === this.#gaps) return false
    login.gaps = this.#gaps
    return true
  }

  /**
   * `name`'s record read from the store now, not cached (null: no such user, or not a valid
   * hash). Rejects with the store's error when it does not answer: the caller says what that means.
   */
  async read(name: string): Promise<ScryptHash | null> {
    const record = await this.#store.getRecord(storedUserKey(name))
    if (record === null) return null
    try {
      return parseHash(record)
    } catch (err) {
      // Never the record itself: it might be a password someone stored by mistake.
      this.#log.warn(`auth: the store's record of user ${JSON.stringify(name)} is not a valid scrypt hash (${(err as Error).message}); its logins are refused`)
      return null
    }
  }

  /** Drops what is known of `name`: its cached lookup, the answer of a lookup under way, and its logins under way. */
  forget(name: string): void {
    this.#cache.delete(name)
    const pending = this.#pending.get(name)
    if (pending !== undefined) {
      pending.stale = true
      this.#pending.delete(name)
    }
    for (const login of this.#logins.get(name) ?? []) login.stale = true
  }

  async close(): Promise<void> {
    this.#closed = true
    if (this.#retry !== null) clearTimeout(this.#retry)
    this.#cache.clear()
    await this.#unsubscribe?.().catch(() => {})
  }

  async #fetch(name: string): Promise<ScryptHash | null> {
    try {
      return await this.read(name)
    } catch (err) {
      this.#warn(err, 'logins of users in the store are refused until it answers')
      throw new SocksError('ERR_SOCKS_AUTH_FAILED', `cannot look up user ${JSON.stringify(name)}: the ${this.#store.kind} store did not answer`, { cause: err, reason: 'auth:store' })
    }
  }

  #remember(name: string, hash: ScryptHash | null): void {
    // Unheard announcements could leave a removed user cached: without the subscription, no cache.
    if (!this.#subscribed || this.#options.lookupCacheMs === 0) return
    this.#cache.set(name, { hash, expiresAt: Date.now() + this.#options.lookupCacheMs })
    if (this.#cache.size > this.#options.lookupCacheSize) this.#cache.delete(this.#cache.keys().next().value as string)
  }

  #warn(err: unknown, consequence: string): void {
    const now = Date.now()
    if (now - this.#lastWarning < WARNING_INTERVAL) return
    this.#lastWarning = now
    const message = err instanceof Error ? err.message : String(err)
    this.#log.warn(`auth: the ${this.#store.kind} store did not answer (${message}); ${consequence} (further failures this minute are not logged)`)
  }
}
