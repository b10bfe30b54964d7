import type { SharedStore } from 'socksmith'

/** A lease this process holds: what a connection keeps, to give it back. */
export interface HeldLease {
  readonly key: string
  readonly holder: string
  /** `key` and `holder`: the lease's entry in the keeper. */
  readonly id: string
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
  readonly #local: Map<string, number> | null
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

  /**
   * Takes `holder`'s lease in `key` unless `max` others hold one; a lease this process already holds
   * is shared (counted) instead. The lease, or null at the cap; rejects when the store does not answer.
   */
  acquire(key: string, holder: string, max: number): HeldLease | null | Promise<HeldLease | null> {
    const id = `${key}\n${holder}`
    const held = this.#held.get(id)
    if (held !== undefined) {
      held.refs++
      return held
    }
    const local = this.#local
    if (local !== null) {
      const holders = local.get(key) ?? 0
      if (holders >= max) return null
      local.set(key, holders + 1)
      const lease = { key, holder, id, refs: 1 }
      this.#held.set(id, lease)
      return lease
    }
    return this.#acquireShared(key, holder, max, id)
  }

  async #acquireShared(key: string, holder: string, max: number, id: string): Promise<HeldLease | null> {
    if (!(await this.#store.acquire(key, holder, max, this.#ttl))) return null
    // Another connection of the same holder may have taken it while this one waited.
    let lease = this.#held.get(id)
    if (lease !== undefined) lease.refs++
    else this.#held.set(id, (lease = { key, holder, id, refs: 1 }))
    this.#startHeartbeat()
    return lease
  }

  /** One use of the lease ends; the last one gives it back to the store. */
  release(lease: HeldLease): void {
    if (--lease.refs > 0 || this.#held.get(lease.id) !== lease) return
    this.#held.delete(lease.id)
    const local = this.#local
    if (local !== null) {
      const holders = (local.get(lease.key) ?? 1) - 1
      if (holders <= 0) local.delete(lease.key)
      else local.set(lease.key, holders)
      return
    }
    // A release that fails leaves the lease to expire on its own, within one ttl.
    this.#store.release(lease.key, lease.holder).catch(this.#onError)
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
