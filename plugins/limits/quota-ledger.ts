import type { SharedStore } from 'socksmith'
import type { CompiledLimit, CompiledQuota } from './options.js'
import { windowSlots } from './windows.js'

/**
 * One subject's usage of one quota (a user's daily bytes, say), as this process knows it: `used`
 * is what the store said at the last flush (every process's bytes), `pending` what this process
 * counted since and has not written yet. Counting is a field increment on the relay path; the
 * store sees it at the next flush, so between processes a quota can overshoot by one flush
 * interval of traffic (`flushInterval` × rate), never more.
 */
export class QuotaTally {
  used = 0
  pending = 0
  /** Bytes being written by the flush in progress (still part of the usage until it answers). */
  sending = 0
  /** The limit it counts for; replaced at a reload, null once the reload dropped its quota. */
  limit: CompiledLimit | null
  /** Live connections counted against it: `cut` closes them when it is used up. */
  readonly holders = new Set<{ cut(): void }>()
  /** Flushes since it last had a holder or a byte; a tally idle for long is forgotten. */
  idleFlushes = 0
  /** The first read from the store, which admission waits for: false if the store did not answer. */
  loaded: Promise<boolean> | null = null
  /** The store answered the last read of it (if not, it counts from what it had, and failMode decides). */
  stored = false

  constructor(
    readonly key: string,
    limit: CompiledLimit,
  ) {
    this.limit = limit
  }

  get quota(): CompiledQuota | null {
    return this.limit?.quota ?? null
  }

  /** Usage as this process knows it: the store's figure plus what is on its way there. */
  get usage(): number {
    return this.used + this.sending + this.pending
  }

  /** True when the quota is used up (nothing more may start; `cut` also ends what runs). */
  get exhausted(): boolean {
    const quota = this.quota
    return quota !== null && this.usage >= quota.bytes
  }
}

/** What the ledger needs of its plugin: where errors go. */
export interface LedgerEvents {
  /** A flush or a first read failed (the store is down): logged and counted by the plugin. */
  storeFailed(err: unknown): void
}

function tallyKey(limit: CompiledLimit, subject: string): string {
  const quota = limit.quota!
  return `limits:q:${limit.id}:${quota.direction}:${quota.windowId}:${subject}`
}

// A tally whose first read failed is admitted as the plugin's failMode says until a flush reads it.
const RETRY = Promise.resolve(false)
const STORED = Promise.resolve(true)

/**
 * Every quota tally of this process, and the flush that writes their pending bytes to the store and
 * reads back everybody's usage, in one round trip (`addMany`) per interval. Windows roll at the
 * flush: bytes go to the slot of the moment they are flushed.
 */
export class QuotaLedger {
  readonly #tallies = new Map<string, QuotaTally>()
  readonly #store: SharedStore
  readonly #events: LedgerEvents
  readonly #now: () => number
  #flushing: Promise<void> | null = null

  constructor(store: SharedStore, events: LedgerEvents, now: () => number = Date.now) {
    this.#store = store
    this.#events = events
    this.#now = now
  }

  /**
   * The tally of `limit` for `subject`, loaded from the store (the first time: so a restarted node
   * or a new worker starts from the stored usage, not from 0); `tally.stored` says whether the store
   * answered (if not, the tally counts from 0 and the next flush tries again). Null when the
   * quota's window is not open now (an absolute window before its start or after its end).
   */
  tally(limit: CompiledLimit, subject: string): QuotaTally | null | Promise<QuotaTally | null> {
    const quota = limit.quota!
    // Calendar and rolling windows are always open (and working out a calendar day is not free).
    if (quota.window.kind === 'absolute' && windowSlots(quota.window, this.#now()) === null) return null
    const key = tallyKey(limit, subject)
    let tally = this.#tallies.get(key)
    if (tally === undefined) {
      tally = new QuotaTally(key, limit)
      this.#tallies.set(key, tally)
      tally.loaded = this.#read([tally])
    }
    tally.idleFlushes = 0
    // Loaded and stored: no wait (the usual case, on the path of every connection).
    if (tally.loaded === STORED) return tally
    return this.#loaded(tally)
  }

  async #loaded(tally: QuotaTally): Promise<QuotaTally> {
    const stored = await tally.loaded!
    tally.stored = stored
    tally.loaded = stored ? STORED : RETRY
    return tally
  }

  /** A reload: every tally counts for the limit of the same id now (null if it has no quota any more). */
  reconfigure(limits: readonly CompiledLimit[]): void {
    const byId = new Map(limits.map((limit) => [limit.id, limit]))
    for (const tally of this.#tallies.values()) {
      const next = tally.limit === null ? undefined : byId.get(tally.limit.id)
      tally.limit = next?.quota != null && next.quota.windowId === tally.quota?.windowId && next.quota.direction === tally.quota.direction ? next : null
    }
  }

  /** Writes every pending count and reads back the usage of every tally in use; one at a time. */
  flush(): Promise<void> {
    this.#flushing ??= this.#flushAll().finally(() => {
      this.#flushing = null
    })
    return this.#flushing
  }

  async #flushAll(): Promise<void> {
    const live: QuotaTally[] = []
    for (const [key, tally] of this.#tallies) {
      if (tally.loaded === null) continue
      if (tally.pending === 0 && tally.holders.size === 0 && ++tally.idleFlushes > 3) {
        this.#tallies.delete(key)
        continue
      }
      live.push(tally)
    }
    if (live.length > 0) await this.#read(live, true)
  }

  /** One addMany for these tallies: their pending bytes (when `send`) to the current slot, 0 to the others; then their sums. */
  async #read(tallies: readonly QuotaTally[], send = false): Promise<boolean> {
    const now = this.#now()
    const updates: { key: string; by: number; expiresAt: number | null }[] = []
    const spans: { tally: QuotaTally; from: number; count: number; sent: number }[] = []
    for (const tally of tallies) {
      const quota = tally.quota
      const slots = quota === null ? null : windowSlots(quota.window, now)
      if (slots === null) {
        // The window closed (or the quota went at a reload): nothing more is counted there.
        tally.used = 0
        tally.pending = 0
        continue
      }
      const sent = send ? Math.round(tally.pending) : 0
      tally.pending -= sent
      tally.sending += sent
      spans.push({ tally, from: updates.length, count: slots.keys.length, sent })
      for (const slot of slots.keys) updates.push({ key: `${tally.key}:${slot}`, by: slot === slots.current ? sent : 0, expiresAt: slots.expiresAt })
    }
    if (updates.length === 0) return true
    let values: number[]
    try {
      values = await this.#store.addMany(updates)
    } catch (err) {
      // Nothing was written: the bytes go back to pending, for the next flush.
      for (const span of spans) {
        span.tally.sending -= span.sent
        span.tally.pending += span.sent
      }
      this.#events.storeFailed(err)
      return false
    }
    for (const span of spans) {
      let sum = 0
      for (let i = span.from; i < span.from + span.count; i++) sum += values[i] ?? 0
      span.tally.sending -= span.sent
      span.tally.used = sum
    }
    for (const span of spans) {
      const tally = span.tally
      if (tally.quota?.action === 'cut' && tally.exhausted) for (const holder of [...tally.holders]) holder.cut()
      if (tally.loaded === RETRY) tally.loaded = STORED
      tally.stored = true
    }
    return true
  }
}
