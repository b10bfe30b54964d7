import type { LeaseRef, SharedStore } from 'socksmith'

/** What uses a lease: told when the lease is lost (its connection must then end). */
export interface LeaseUser {
  leaseLost(lease: HeldLease): void
}

/** A lease this process holds: what a connection keeps, to give it back. */
export interface HeldLease {
  readonly key: string
  readonly holder: string
  /** `key` and `holder`: the lease's entry in the keeper. */
  readonly id: string
  /** The cap it was taken under: the heartbeat takes it again only under this if it expired. */
  readonly max: number
  /** Connections of this process using it (a client address's lease is shared by its connections). */
  refs: number
  /** Those connections, to end if the lease is lost; null with an unshared store, where none is. */
  readonly users: LeaseUser[] | null
}

/**
 * The leases this process holds in the store, for `maxConnections` (one per connection) and
 * `maxClientIps` (one per client address, shared by that address's connections here). A heartbeat
 * renews them all in one round trip every third of their time to live, so the slots of a process
 * that dies free themselves within one `leaseTtl`.
 *
 * A process cut off from the store for longer than that (the store down, a partition, a stalled
 * event loop) is, to the others, a process that died: its slots were free, and may have been
 * taken. When the store answers again the heartbeat takes each lease again under its cap, oldest
 * first, as the store cannot tell the two cases apart either; a lease that no longer fits is lost,
 * and its users are told (the connections end, so the cap holds again, newest first).
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
  acquire(key: string, holder: string, max: number, user: LeaseUser): HeldLease | null | Promise<HeldLease | null> {
    const id = `${key}\n${holder}`
    const held = this.#held.get(id)
    if (held !== undefined) {
      held.refs++
      held.users?.push(user)
      return held
    }
    const local = this.#local
    if (local !== null) {
      const holders = local.get(key) ?? 0
      if (holders >= max) return null
      local.set(key, holders + 1)
      const lease = { key, holder, id, max, refs: 1, users: null }
      this.#held.set(id, lease)
      return lease
    }
    return this.#acquireShared(key, holder, max, id, user)
  }

  async #acquireShared(key: string, holder: string, max: number, id: string, user: LeaseUser): Promise<HeldLease | null> {
    if (!(await this.#store.acquire(key, holder, max, this.#ttl))) return null
    // Another connection of the same holder may have taken it while this one waited.
    let lease = this.#held.get(id)
    if (lease !== undefined) {
      lease.refs++
      lease.users?.push(user)
    } else this.#held.set(id, (lease = { key, holder, id, max, refs: 1, users: [user] }))
    this.#startHeartbeat()
    return lease
  }

  /** One use of the lease ends; the last one gives it back to the store (unless it was lost). */
  release(lease: HeldLease, user: LeaseUser): void {
    const users = lease.users
    if (users !== null) {
      const at = users.indexOf(user)
      if (at >= 0) {
        users[at] = users[users.length - 1]!
        users.pop()
      }
    }
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
    // In the order they were taken: where not all fit again after an outage, the oldest do.
    const leases = [...this.#held.values()].map(({ key, holder, max }) => ({ key, holder, max }))
    this.#store.renew(leases, this.#ttl).then((lost) => this.#lose(lost), this.#onError)
  }

  /** The heartbeat could not take these leases again (see the class comment): their users end. */
  #lose(lost: readonly LeaseRef[]): void {
    for (const { key, holder } of lost) {
      const id = `${key}\n${holder}`
      const lease = this.#held.get(id)
      // Released while the heartbeat was under way: nothing uses it any more.
      if (lease === undefined) continue
      this.#held.delete(id)
      for (const user of [...(lease.users ?? [])]) user.leaseLost(lease)
    }
    if (this.#held.size === 0) this.#stopHeartbeat()
  }
}
