import { guardListener, Subscriptions, warnListenerError } from './subscriptions.js'
import { checkCounterUpdate, checkHolder, checkKey, checkLease, checkRecord, checkRecordKeys, checkRenewals, checkTtl, storeError, type CounterUpdate, type LeaseRef, type LeaseRenewal, type SharedStore } from './store.js'

interface Counter {
  value: number
  /** ms since the epoch; Infinity: never. */
  expiresAt: number
}

interface LeaseSet {
  /** holder -> when its lease ends (ms since the epoch). */
  readonly leases: Map<string, number>
  /** No lease ends before this: a set is only scanned for expired leases once one may have. */
  earliest: number
}

/** Entries a write looks at for expiry, besides its own key: the sweep keeps pace with the writes. */
const SWEEP_STEP = 4

/**
 * The store of one process: three Maps and no timers. Expiry is checked when an entry is read, and
 * every write also sweeps a few entries further along the Maps (as Redis's active expiry does),
 * so expired counters and lease sets cannot pile up however keys come and go: each write that
 * may add an entry looks at several others. Pub/sub delivers on a later microtask, never inside
 * publish(), so a listener sees the same ordering as with the other backends.
 */
export class MemoryStore implements SharedStore {
  readonly kind = 'memory'
  readonly shared = false
  readonly #counters = new Map<string, Counter>()
  readonly #leaseSets = new Map<string, LeaseSet>()
  // Records never expire, so the sweep leaves them alone.
  readonly #records = new Map<string, string>()
  // Nothing to subscribe to: publish() is all the backend there is.
  readonly #channels = new Subscriptions(async () => {}, async () => {})
  #counterSweep: Iterator<[string, Counter]> = this.#counters.entries()
  #leaseSweep: Iterator<[string, LeaseSet]> = this.#leaseSets.entries()
  #closed = false
  readonly #onListenerError: (err: unknown, channel: string) => void

  /** `onListenerError`: a subscriber's listener threw (default: a process warning). */
  constructor(options: { onListenerError?: (err: unknown, channel: string) => void } = {}) {
    this.#onListenerError = options.onListenerError ?? warnListenerError
  }

  /** Counters, lease sets and records held, expired ones not yet swept included (tests check the bound). */
  get size(): number {
    return this.#counters.size + this.#leaseSets.size + this.#records.size
  }

  async add(key: string, by: number, expiresAt: number | null): Promise<number> {
    this.#assertOpen('add')
    checkCounterUpdate({ key, by, expiresAt })
    return this.#add(key, by, expiresAt, Date.now())
  }

  async addMany(entries: readonly CounterUpdate[]): Promise<number[]> {
    this.#assertOpen('addMany')
    for (const entry of entries) checkCounterUpdate(entry)
    const now = Date.now()
    return entries.map(({ key, by, expiresAt }) => this.#add(key, by, expiresAt, now))
  }

  #add(key: string, by: number, expiresAt: number | null, now: number): number {
    this.#sweep(now)
    const counter = this.#counters.get(key)
    if (counter !== undefined && counter.expiresAt > now) {
      counter.value += by
      return counter.value
    }
    // Re-inserted, not updated in place: the sweep visits entries in insertion order.
    if (counter !== undefined) this.#counters.delete(key)
    this.#counters.set(key, { value: by, expiresAt: expiresAt ?? Infinity })
    return by
  }

  async read(key: string): Promise<number> {
    this.#assertOpen('read')
    checkKey(key)
    const counter = this.#counters.get(key)
    return counter !== undefined && counter.expiresAt > Date.now() ? counter.value : 0
  }

  async acquire(key: string, holder: string, max: number, ttlMs: number): Promise<boolean> {
    this.#assertOpen('acquire')
    checkLease(key, holder, max, ttlMs)
    const now = Date.now()
    this.#sweep(now)
    const set = this.#liveSet(key, now)
    const held = set?.leases.has(holder) ?? false
    if (!held && (set?.leases.size ?? 0) >= max) return false
    this.#putLease(set, key, holder, now + ttlMs)
    return true
  }

  async renew(leases: readonly LeaseRenewal[], ttlMs: number): Promise<LeaseRef[]> {
    this.#assertOpen('renew')
    checkRenewals(leases, ttlMs)
    const now = Date.now()
    this.#sweep(now)
    const lost: LeaseRef[] = []
    for (const { key, holder, max } of leases) {
      const set = this.#liveSet(key, now)
      // Gone (expired or released), and its slot taken meanwhile: not put back over the cap.
      if (!(set?.leases.has(holder) ?? false) && (set?.leases.size ?? 0) >= max) lost.push({ key, holder })
      else this.#putLease(set, key, holder, now + ttlMs)
    }
    return lost
  }

  async release(key: string, holder: string): Promise<void> {
    this.#assertOpen('release')
    const set = this.#leaseSets.get(key)
    if (set === undefined) return
    set.leases.delete(holder)
    if (set.leases.size === 0) this.#leaseSets.delete(key)
  }

  async holders(key: string): Promise<string[]> {
    this.#assertOpen('holders')
    checkKey(key)
    return [...(this.#liveSet(key, Date.now())?.leases.keys() ?? [])]
  }

  async getRecord(key: string): Promise<string | null> {
    this.#assertOpen('getRecord')
    checkKey(key)
    return this.#records.get(key) ?? null
  }

  async setRecord(key: string, value: string): Promise<void> {
    this.#assertOpen('setRecord')
    checkRecord(key, value)
    this.#records.set(key, value)
  }

  async removeRecord(key: string): Promise<boolean> {
    this.#assertOpen('removeRecord')
    checkKey(key)
    return this.#records.delete(key)
  }

  async recordKeys(prefix: string, limit?: number): Promise<string[]> {
    this.#assertOpen('recordKeys')
    const max = checkRecordKeys(prefix, limit)
    const keys: string[] = []
    for (const key of this.#records.keys()) if (key.startsWith(prefix)) keys.push(key)
    return keys.sort().slice(0, max)
  }

  async delete(...keys: string[]): Promise<void> {
    this.#assertOpen('delete')
    for (const key of keys) {
      this.#counters.delete(key)
      this.#leaseSets.delete(key)
      this.#records.delete(key)
    }
  }

  async now(): Promise<number> {
    this.#assertOpen('now')
    return Date.now()
  }

  async publish(channel: string, message: string): Promise<void> {
    this.#assertOpen('publish')
    if (!this.#channels.has(channel)) return
    const text = String(message)
    queueMicrotask(() => this.#channels.deliver(channel, text))
  }

  // SubscribeOptions.onGap is never called: delivery is in-process, nothing can be missed.
  async subscribe(channel: string, listener: (message: string) => void): Promise<() => Promise<void>> {
    this.#assertOpen('subscribe')
    return this.#channels.add(channel, guardListener(channel, listener, this.#onListenerError))
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#counters.clear()
    this.#leaseSets.clear()
    this.#records.clear()
    this.#channels.clear()
  }

  /** `key`'s lease set with its expired leases dropped; undefined when none is live. */
  #liveSet(key: string, now: number): LeaseSet | undefined {
    const set = this.#leaseSets.get(key)
    if (set === undefined || set.earliest > now) return set
    if (dropExpired(set, now)) return set
    this.#leaseSets.delete(key)
    return undefined
  }

  #putLease(set: LeaseSet | undefined, key: string, holder: string, until: number): void {
    if (set === undefined) {
      this.#leaseSets.set(key, { leases: new Map([[holder, until]]), earliest: until })
      return
    }
    set.leases.set(holder, until)
    if (until < set.earliest) set.earliest = until
  }

  #sweep(now: number): void {
    this.#counterSweep = sweepStep(this.#counters, this.#counterSweep, (counter) => counter.expiresAt <= now)
    this.#leaseSweep = sweepStep(this.#leaseSets, this.#leaseSweep, (set) => set.earliest <= now && !dropExpired(set, now))
  }

  #assertOpen(what: string): void {
    if (this.#closed) throw storeError(this.kind, what, 'the store is closed')
  }
}

/**
 * Looks at the next SWEEP_STEP entries of `map` after `cursor`, deleting those `expired` says are,
 * and returns the cursor to go on from. A finished iterator stays finished (it would not see keys
 * added since), so at the end a new round starts over what is there now.
 */
function sweepStep<V>(map: Map<string, V>, cursor: Iterator<[string, V]>, expired: (value: V) => boolean): Iterator<[string, V]> {
  for (let i = 0; i < SWEEP_STEP; i++) {
    let next = cursor.next()
    if (next.done === true) {
      cursor = map.entries()
      next = cursor.next()
      if (next.done === true) break
    }
    const [key, value] = next.value
    if (expired(value)) map.delete(key)
  }
  return cursor
}

/** Drops `set`'s expired leases and recomputes `earliest`; false when none is left. */
function dropExpired(set: LeaseSet, now: number): boolean {
  let earliest = Infinity
  for (const [holder, until] of set.leases) {
    if (until <= now) set.leases.delete(holder)
    else if (until < earliest) earliest = until
  }
  set.earliest = earliest
  return set.leases.size > 0
}
