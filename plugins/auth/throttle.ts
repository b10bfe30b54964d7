import { isIPv6 } from 'node:net'

/** How repeated login failures from one client address are slowed down. */
export interface ThrottleOptions {
  /** Failures allowed within `windowMs` before the address is locked out. Default 10. */
  maxFailures?: number
  /** Milliseconds over which failures are counted. Default 60000. */
  windowMs?: number
  /** Milliseconds a locked-out address is refused without its password being checked. Default 300000. */
  lockoutMs?: number
  /** Client addresses tracked at once; the least recently failing are forgotten first. Default 10000. */
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
 * Counts failed logins per client address in a fixed window and locks an address out once it
 * reaches `maxFailures`. A locked-out address is refused before any hashing, so a password guesser
 * gets neither answers nor CPU time. Memory is bounded: a Map kept in least-recently-failed order,
 * trimmed to `maxClients`. IPv6 clients are grouped by /64, the block one subscriber usually gets,
 * so rotating through one's own addresses does not reset the count.
 */
export class FailureThrottle {
  readonly #options: Readonly<Required<ThrottleOptions>>
  readonly #records = new Map<string, FailureRecord>()
  readonly #now: () => number

  constructor(options: Readonly<Required<ThrottleOptions>>, now: () => number = Date.now) {
    this.#options = options
    this.#now = now
  }

  /** Addresses (or /64 blocks) currently tracked. */
  get size(): number {
    return this.#records.size
  }

  /** True while `address` is locked out. */
  isLocked(address: string): boolean {
    const record = this.#records.get(clientKey(address))
    return record !== undefined && record.lockedUntil > this.#now()
  }

  /** Counts a failure; returns true when this failure started a lockout. */
  recordFailure(address: string): boolean {
    const key = clientKey(address)
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

/** The throttle key of a client address: IPv4 as is, IPv6 by its /64 prefix. */
export function clientKey(address: string): string {
  if (!isIPv6(address)) return address
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped !== null) return mapped[1]!
  const groups = expandIPv6(address)
  return groups === null ? address : `${groups.slice(0, 4).join(':')}::/64`
}

/** The eight 16-bit groups of an IPv6 address as lower-case hex, or null if it cannot be expanded. */
function expandIPv6(address: string): string[] | null {
  const zone = address.indexOf('%')
  let text = (zone < 0 ? address : address.slice(0, zone)).toLowerCase()
  // A trailing dotted quad (::ffff:1.2.3.4) becomes two groups.
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (dotted !== null) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number]
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const halves = text.split('::')
  if (halves.length > 2) return null
  const head = halves[0] === '' ? [] : halves[0]!.split(':')
  const tail = halves.length === 2 && halves[1] !== '' ? halves[1]!.split(':') : []
  const missing = 8 - head.length - tail.length
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail]
  return groups.map((g) => Number.parseInt(g, 16).toString(16))
}
