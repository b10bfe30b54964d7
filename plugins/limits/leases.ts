import type { SharedStore } from 'socksmith'

interface HeldLease {
  readonly key: string
  readonly holder: string
  /** Connections of this process using it (a client address's lease is shared by its connections). */
  refs: number
}

/**
 * The leases this process holds in the store, for `maxConnections` (one per connection) and
 * `maxClientIps` (one per client address, shared by that address's connections here). A heartbeat
 * renews them all in one round trip every third of their time to live, so the slots of a process
 * that dies free themselves within one `leaseTtl`.
 */
export class LeaseKeeper {
  readonly #held = new Map<string, HeldLease>()
  /**
   * With a store nobody else shares (the default memory store, one process) the leases are counted
   * here, synchronously: the store would say the same, a promise later. Lease set -> holders.
   */
  readonly #local: Map<string, Set<string>> | null
  readonly #store: SharedStore
  readonly #ttl: number
  readonly #onError: (err: unknown) => void
  #timer: NodeJS.Timeout | null = null

  constructor(store: SharedStore, ttl: number, onError: (err: unknown) => void) {
    this.#store = store
    this.#ttl = ttl
    this.#onError = onError
    this.#local = store.shared ? null : new Map()
  }

  get size(): number {
    return this.#held.size
  }

  /**
   * Takes `holder`'s lease in `key` unless `max` others hold one; a lease this process already holds
   * is shared (counted) instead. Resolves true if held; rejects when the store does not answer.
   */
  acquire(key: string, holder: string, max: number): boolean | Promise<boolean> {
    const id = `${key}\n${holder}`
    const held = this.#held.get(id)
    if (held !== undefined) {
      held.refs++
      return true
    }
    const local = this.#local
    if (local !== null) {
      let holders = local.get(key)
      if (holders === undefined) local.set(key, (holders = new Set()))
      if (holders.size >= max) return false
      holders.add(holder)
      this.#held.set(id, { key, holder, refs: 1 })
      return true
    }
    return this.#acquireShared(key, holder, max, id)
  }

  async #acquireShared(key: string, holder: string, max: number, id: string): Promise<boolean> {
    if (!(await this.#store.acquire(key, holder, max, this.#ttl))) return false
    // Another connection of the same holder may have taken it while this one waited.
    const now = this.#held.get(id)
    if (now !== undefined) now.refs++
    else this.#held.set(id, { key, holder, refs: 1 })
    this.#startHeartbeat()
    return true
  }

  /** One use of the lease ends; the last one gives it back to the store. */
  release(key: string, holder: string): void {
    const id = `${key}\n${holder}`
    const held = this.#held.get(id)
    if (held === undefined || --held.refs > 0) return
    this.#held.delete(id)
    const local = this.#local
    if (local !== null) {
      const holders = local.get(key)
      holders?.delete(holder)
      if (holders?.size === 0) local.delete(key)
      return
    }
    // A release that fails leaves the lease to expire on its own, within one ttl.
    this.#store.release(key, holder).catch(this.#onError)
    if (this.#held.size === 0) this.#stopHeartbeat()
  }

  /** Stops the heartbeat and gives every lease back. */
  async close(): Promise<void> {
    this.#stopHeartbeat()
    const leases = [...this.#held.values()]
    this.#held.clear()
    if (this.#local !== null) {
      this.#local.clear()
      return
    }
    await Promise.all(leases.map((lease) => this.#store.release(lease.key, lease.holder).catch(() => {})))
  }

  #startHeartbeat(): void {
    if (this.#timer !== null) return
    this.#timer = setInterval(() => this.#renew(), Math.max(100, Math.floor(this.#ttl / 3)))
    this.#timer.unref()
  }

  #stopHeartbeat(): void {
    if (this.#timer === null) return
    clearInterval(this.#timer)
    this.#timer = null
  }

  #renew(): void {
    if (this.#held.size === 0) return
    const leases = [...this.#held.values()].map(({ key, holder }) => ({ key, holder }))
    this.#store.renew(leases, this.#ttl).catch(this.#onError)
  }
}
