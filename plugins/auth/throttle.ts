/** How repeated login failures from one client are slowed down. */
export interface ThrottleOptions {
  /** Failures allowed within `windowMs` before the address is locked out. Default 10. */
  maxFailures?: number
  /** Milliseconds over which failures are counted. Default 60000. */
  windowMs?: number
  /** Milliseconds a locked-out client is refused without its password being checked. Default 300000. */
  lockoutMs?: number
  /** Clients tracked at once; the least recently failing are forgotten first. Default 10000. */
  maxClients?: number
}

export const DEFAULT_THROTTLE: Readonly<Required<ThrottleOptions>> = Object.freeze({
  maxFailures: 10,
  windowMs: 60_000,
  lockoutMs: 300_000,
  maxClients: 10_000,
})

interface FailureRecord {
  /** Failures counted since `windowStart`. */
  count: number
  windowStart: number
  /** 0, or when the lockout ends. */
  lockedUntil: number
}

/**
 * Counts failed logins per client in a fixed window and locks a client out once it reaches
 * `maxFailures`. A locked-out client is refused before any hashing, so a password guesser gets
 * neither answers nor CPU time. Memory is bounded: a Map kept in least-recently-failed order,
 * trimmed to `maxClients`. A client is a key the caller gives: its group (`clientGroup()` with the
 * server's `clientPrefix`), so rotating through one's own IPv6 /64 does not reset the count.
 */
export class FailureThrottle {
  readonly #options: Readonly<Required<ThrottleOptions>>
  readonly #records = new Map<string, FailureRecord>()
  readonly #now: () => number

  constructor(options: Readonly<Required<ThrottleOptions>>, now: () => number = Date.now) {
    this.#options = options
    this.#now = now
  }

  /** Clients currently tracked. */
  get size(): number {
    return this.#records.size
  }

  /** True while `client` is locked out. */
  isLocked(client: string): boolean {
    const record = this.#records.get(client)
    return record !== undefined && record.lockedUntil > this.#now()
  }

  /** Counts a failure; returns true when this failure started a lockout. */
  recordFailure(key: string): boolean {
    const now = this.#now()
    const { maxFailures, windowMs, lockoutMs, maxClients } = this.#options
    let record = this.#records.get(key)
    if (record === undefined) {
      record = { count: 0, windowStart: now, lockedUntil: 0 }
    } else {
      // Re-inserting moves the key to the end: the Map's order is least recently failed first.
      this.#records.delete(key)
    }
    this.#records.set(key, record)
    if (now - record.windowStart >= windowMs || (record.lockedUntil !== 0 && record.lockedUntil <= now)) {
      record.count = 0
      record.windowStart = now
      record.lockedUntil = 0
    }
    record.count++
    let startedLockout = false
    if (record.count >= maxFailures && record.lockedUntil === 0) {
      record.lockedUntil = now + lockoutMs
      startedLockout = true
    }
    while (this.#records.size > maxClients) this.#records.delete(this.#records.keys().next().value as string)
    return startedLockout
  }
}
