import { SocksError } from 'socksmith'
import { signalOf, type SignalSource } from './signal.js'

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

/** The throttle the auth plugin uses when its `throttle` option leaves a field out. */
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

/** A login waiting for one of its client's guesses in flight to settle. */
interface Waiter {
  readonly guess: string
  readonly admit: (admitted: boolean) => void
}

/** What one client has in flight: guess → attempts sharing it, and the logins waiting for room. */
interface InFlight {
  readonly guesses: Map<string, number>
  readonly waiting: Waiter[]
}

/**
 * Counts failed logins per client in a fixed window and locks a client out once it reaches
 * `maxFailures`. A locked-out client is refused before any hashing, so a password guesser gets
 * neither answers nor CPU time. Memory is bounded: a Map kept in least-recently-failed order,
 * trimmed to `maxClients`. A client is a key the caller gives: its group (`clientGroup()` with the
 * server's `clientPrefix`), so rotating through one's own IPv6 /64 does not reset the count.
 *
 * Attempts in flight count too. A guess (one user and password) is only checked while the
 * client's failures plus its distinct guesses in flight stay below `maxFailures`; others wait for
 * those outcomes, so a client sending many logins at once learns no more answers than one sending
 * them in turn, and a lockout reached meanwhile refuses the waiters unchecked. Identical attempts
 * share one place (they are one guess), so a burst of right logins is not held up. The in-flight
 * table holds only logins under way, so live connections bound it.
 */
export class FailureThrottle {
  readonly #options: Readonly<Required<ThrottleOptions>>
  readonly #records = new Map<string, FailureRecord>()
  readonly #inFlight = new Map<string, InFlight>()
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

  /**
   * Starts a login attempt of `client` for `guess` (equal for equal user and password, e.g. an
   * HMAC of both): true when it may be checked now, false when it must be refused unchecked (the
   * client is locked out), or a promise of either while it waits for room. Every attempt admitted
   * must be ended with `end()`. A waiter whose `signal` aborts is dropped and rejects.
   */
  admit(client: string, guess: string, signalSource: SignalSource): boolean | Promise<boolean> {
    const admitted = this.#tryAdmit(client, guess)
    if (admitted !== null) return admitted
    // No room means guesses in flight, whose end() will look at this waiter.
    const flight = this.#inFlight.get(client)
    if (flight === undefined) return false
    const signal = signalOf(signalSource)
    return new Promise<boolean>((resolve, reject) => {
      const waiter: Waiter = {
        guess,
        admit: (ok) => {
          signal?.removeEventListener('abort', onAbort)
          resolve(ok)
        },
      }
      const onAbort = (): void => {
        const index = flight.waiting.indexOf(waiter)
        if (index >= 0) flight.waiting.splice(index, 1)
        reject(new SocksError('ERR_SOCKS_CLIENT_CLOSED', 'client left while its login waited for its earlier ones', { cause: signal?.reason }))
      }
      if (signal?.aborted === true) return onAbort()
      signal?.addEventListener('abort', onAbort, { once: true })
      flight.waiting.push(waiter)
    })
  }

  /**
   * Ends an attempt `admit()` let through; `failed` counts a failure first (so failures plus
   * attempts in flight never dip in between). Returns true when that failure started a lockout.
   * Waiting logins of the client are then let through, or refused if it is now locked out.
   */
  end(client: string, guess: string, failed: boolean): boolean {
    const startedLockout = failed && this.recordFailure(client)
    const flight = this.#inFlight.get(client)
    if (flight === undefined) return startedLockout
    const sharing = flight.guesses.get(guess) ?? 1
    if (sharing > 1) flight.guesses.set(guess, sharing - 1)
    else flight.guesses.delete(guess)
    while (flight.waiting.length > 0) {
      const admitted = this.#tryAdmit(client, flight.waiting[0]!.guess)
      if (admitted === null) break
      flight.waiting.shift()!.admit(admitted)
    }
    if (flight.guesses.size === 0 && flight.waiting.length === 0) this.#inFlight.delete(client)
    return startedLockout
  }

  /** true: admitted (and counted in flight); false: locked out; null: no room yet. */
  #tryAdmit(client: string, guess: string): boolean | null {
    const now = this.#now()
    const record = this.#records.get(client)
    if (record !== undefined && record.lockedUntil > now) return false
    let flight = this.#inFlight.get(client)
    const sharing = flight?.guesses.get(guess)
    if (flight !== undefined && sharing !== undefined) {
      flight.guesses.set(guess, sharing + 1)
      return true
    }
    const failures = record === undefined || this.#isStale(record, now) ? 0 : record.count
    if (failures + (flight?.guesses.size ?? 0) >= this.#options.maxFailures) return null
    if (flight === undefined) this.#inFlight.set(client, (flight = { guesses: new Map(), waiting: [] }))
    flight.guesses.set(guess, 1)
    return true
  }

  /** True when a record's count no longer applies: its window passed, or its lockout ended. */
  #isStale(record: FailureRecord, now: number): boolean {
    return now - record.windowStart >= this.#options.windowMs || (record.lockedUntil !== 0 && record.lockedUntil <= now)
  }

  /** Counts a failure; returns true when this failure started a lockout. */
  recordFailure(key: string): boolean {
    const now = this.#now()
    const { maxFailures, lockoutMs, maxClients } = this.#options
    let record = this.#records.get(key)
    if (record === undefined) {
      record = { count: 0, windowStart: now, lockedUntil: 0 }
    } else {
      // Re-inserting moves the key to the end: the Map's order is least recently failed first.
      this.#records.delete(key)
    }
    this.#records.set(key, record)
    if (this.#isStale(record, now)) {
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
