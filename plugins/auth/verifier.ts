import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { isSocksError, SocksError } from 'socksmith'
import { deriveKey, DEFAULT_SCRYPT_PARAMS, verifyAgainst, type ScryptHash, type ScryptParams } from './hash.js'

interface CachedLogin {
  /** HMAC of the password that last logged in, under this process's random key. */
  readonly mac: Buffer
  readonly expiresAt: number
}

export interface PasswordCheckerOptions {
  /** How long a successful login is remembered (0: never). */
  cacheTtlMs: number
  /** scrypt computations running at once; the rest queue. */
  maxConcurrentHashes: number
  /** The hash check (a seam for tests that count scrypt runs). Default: scrypt + timingSafeEqual. */
  verifyHash?: (password: string, hash: ScryptHash) => Promise<boolean>
}

/**
 * Checks passwords against scrypt hashes.
 *
 * - Constant time: the attempt is hashed with the user's salt and parameters and compared with
 *   `timingSafeEqual`. An unknown user is hashed against a dummy hash with the usual parameters,
 *   so "no such user" costs what "wrong password" costs.
 * - Login cache: a successful login stores HMAC-SHA256(process key, password) for the user for
 *   `cacheTtlMs`. A later login whose HMAC matches (compared with `timingSafeEqual`) skips scrypt.
 *   The key is random per process and never leaves memory; the map holds at most one entry per
 *   configured user; a wrong password always goes on to scrypt, so it costs what it always costs.
 * - Concurrent identical attempts (same user, same password HMAC) share one scrypt run, for known
 *   and unknown users alike.
 * - At most `maxConcurrentHashes` scrypt runs use the libuv thread pool at once, leaving threads
 *   for `dns.lookup` and file I/O when many clients log in together.
 */
export class PasswordChecker {
  readonly #hashes: ReadonlyMap<string, ScryptHash>
  readonly #dummy: ScryptHash
  readonly #cacheTtlMs: number
  readonly #macKey = randomBytes(32)
  readonly #cache = new Map<string, CachedLogin>()
  readonly #inFlight = new Map<string, Promise<boolean>>()
  readonly #gate: HashGate
  readonly #verifyHash: (password: string, hash: ScryptHash) => Promise<boolean>

  private constructor(hashes: ReadonlyMap<string, ScryptHash>, dummy: ScryptHash, options: PasswordCheckerOptions) {
    this.#hashes = hashes
    this.#dummy = dummy
    this.#cacheTtlMs = options.cacheTtlMs
    this.#gate = new HashGate(options.maxConcurrentHashes)
    this.#verifyHash = options.verifyHash ?? verifyAgainst
  }

  static async create(hashes: ReadonlyMap<string, ScryptHash>, options: PasswordCheckerOptions): Promise<PasswordChecker> {
    const params = commonParams(hashes.values())
    const salt = randomBytes(16)
    // The dummy's key is real scrypt output, so comparing against it is no shortcut either.
    const key = await deriveKey(randomBytes(16).toString('base64'), salt, params, 32)
    return new PasswordChecker(hashes, { params, salt, key }, options)
  }

  /** True when `name` has a hash here. */
  has(name: string): boolean {
    return this.#hashes.has(name)
  }

  get size(): number {
    return this.#hashes.size
  }

  /** Checks a user's password; an unknown user takes as long as a wrong password and fails. */
  async check(name: string, password: string, signal: AbortSignal | null): Promise<boolean> {
    const hash = this.#hashes.get(name)
    // Unknown users go down the same road (HMAC, shared check, gate) against the dummy, so that
    // neither one attempt's time nor a burst of identical attempts tells them apart from real ones.
    const target = hash ?? this.#dummy
    if (this.#cacheTtlMs === 0) return (await this.#gate.run(() => this.#verifyHash(password, target), signal)) && hash !== undefined
    const mac = createHmac('sha256', this.#macKey).update(name).update('\0').update(password).digest()
    const cached = hash === undefined ? undefined : this.#cache.get(name)
    if (cached !== undefined) {
      if (cached.expiresAt > Date.now()) {
        if (timingSafeEqual(cached.mac, mac)) return true
      } else {
        this.#cache.delete(name)
      }
    }
    const ok = (await this.#sharedCheck(`${name}\0${mac.toString('base64')}`, password, target, signal)) && hash !== undefined
    if (ok) this.#cache.set(name, { mac, expiresAt: Date.now() + this.#cacheTtlMs })
    return ok
  }

  /** Joins a running check of the same attempt, or starts one. */
  async #sharedCheck(key: string, password: string, hash: ScryptHash, signal: AbortSignal | null): Promise<boolean> {
    for (;;) {
      let flight = this.#inFlight.get(key)
      const joined = flight !== undefined
      if (flight === undefined) {
        flight = this.#gate.run(() => this.#verifyHash(password, hash), signal).finally(() => this.#inFlight.delete(key))
        this.#inFlight.set(key, flight)
      }
      try {
        return await flight
      } catch (err) {
        // The flight we joined was abandoned in the queue because *its* client left: try again ourselves.
        if (!joined || signal?.aborted === true || !isAbandoned(err)) throw err
      }
    }
  }
}

/** A queued scrypt run dropped because its client left. */
function isAbandoned(err: unknown): boolean {
  return isSocksError(err) && err.code === 'ERR_SOCKS_CLIENT_CLOSED'
}

/** The parameters most users' hashes share (the defaults when there are none), for the dummy hash. */
function commonParams(hashes: Iterable<ScryptHash>): Readonly<ScryptParams> {
  const counts = new Map<string, { params: Readonly<ScryptParams>; count: number }>()
  for (const { params } of hashes) {
    const key = `${params.N},${params.r},${params.p}`
    const entry = counts.get(key)
    if (entry === undefined) counts.set(key, { params, count: 1 })
    else entry.count++
  }
  let best: { params: Readonly<ScryptParams>; count: number } | undefined
  for (const entry of counts.values()) if (best === undefined || entry.count > best.count) best = entry
  return best?.params ?? DEFAULT_SCRYPT_PARAMS
}

/** A counting semaphore for scrypt runs. A waiter whose client left is dropped from the queue. */
class HashGate {
  readonly #limit: number
  #running = 0
  readonly #queue: (() => void)[] = []

  constructor(limit: number) {
    this.#limit = limit
  }

  async run<T>(task: () => Promise<T>, signal: AbortSignal | null): Promise<T> {
    if (this.#running >= this.#limit) await this.#wait(signal)
    else this.#running++
    try {
      return await task()
    } finally {
      const next = this.#queue.shift()
      if (next !== undefined) next()
      else this.#running--
    }
  }

  /** Resolves when a slot is handed over (the slot count is not decremented in between). */
  #wait(signal: AbortSignal | null): Promise<void> {
    return new Promise((resolve, reject) => {
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      const onAbort = (): void => {
        const index = this.#queue.indexOf(wake)
        if (index >= 0) this.#queue.splice(index, 1)
        reject(new SocksError('ERR_SOCKS_CLIENT_CLOSED', 'client left while its login waited for a hash slot', { cause: signal?.reason }))
      }
      if (signal?.aborted === true) return onAbort()
      signal?.addEventListener('abort', onAbort, { once: true })
      this.#queue.push(wake)
    })
  }
}
