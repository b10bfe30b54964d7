import * as crypto from 'node:crypto'
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { isSocksError, SocksError } from 'socksmith'
import { deriveKey, DEFAULT_SCRYPT_PARAMS, verifyAgainst, type ScryptHash, type ScryptParams } from './hash.js'
import { signalOf, type SignalSource } from './signal.js'

/**
 * crypto.hash (Node 20.12+, 21.7+): a one-shot digest without a Hash or Hmac object. An HMAC per
 * login was ~24k of the ~62k instructions a cached RFC 1929 login adds to a connection
 * (callgrind); with the one-shot keyed digest a cached login costs ~14k fewer (367.7k -> 353.8k on
 * the main thread, 32 clients). Older Nodes keep the HMAC.
 */
const oneShotHash = (crypto as { hash?: typeof crypto.hash }).hash

interface CachedLogin {
  /** Keyed digest of the name and password that last logged in, under this process's random key (see mac()). */
  readonly mac: Buffer
  /** The hash it was checked against: a changed password (a new hash in the store) misses. */
  readonly hashKey: Buffer
  readonly expiresAt: number
}

export interface PasswordCheckerOptions {
  /** How long a successful login is remembered (0: never). */
  cacheTtlMs: number
  /** scrypt computations running at once; the rest queue. */
  maxConcurrentHashes: number
  /** Logins remembered at most (the least recently cached go first). Default: no bound but the users there are. */
  maxCachedLogins?: number
  /** The hash check (a seam for tests that count scrypt runs). Default: scrypt + timingSafeEqual. */
  verifyHash?: (password: string, hash: ScryptHash) => Promise<boolean>
}

/**
 * Checks passwords against scrypt hashes.
 *
 * - Constant time: the attempt is hashed with the user's salt and parameters and compared with
 *   `timingSafeEqual`. An unknown user is hashed against a dummy hash with the usual parameters,
 *   so "no such user" costs what "wrong password" costs.
 * - Login cache: a successful login stores a keyed SHA-256 digest of the password under a random
 *   process key (mac()) for the user for `cacheTtlMs`. A later login whose digest matches (compared with `timingSafeEqual`) skips scrypt.
 *   The key is random per process and never leaves memory; the map holds at most one entry per
 *   user, and at most `maxCachedLogins`; a wrong password always goes on to scrypt, so it costs
 *   what it always costs. An entry is only good for the hash it was checked against, so a user
 *   whose hash changed (in the store) is hashed again.
 * - Concurrent identical attempts (same user, same password digest) share one scrypt run, for known
 *   and unknown users alike.
 * - At most `maxConcurrentHashes` scrypt runs use the libuv thread pool at once, leaving threads
 *   for `dns.lookup` and file I/O when many clients log in together. Logins waiting for a run are
 *   taken one client at a time in turn, so one client's flood of logins delays another client's by
 *   about one hash per busy client, not by the whole flood.
 */
export class PasswordChecker {
  readonly #hashes: ReadonlyMap<string, ScryptHash>
  readonly #dummy: ScryptHash
  /** Dummies for users looked up elsewhere (the store), by the parameters their hashes use. */
  readonly #dummies = new Map<string, ScryptHash>()
  /** The parameters of the last hash checkHash() got: an unknown user's dummy uses them. */
  #lookedUpParams: Readonly<ScryptParams> | null = null
  readonly #cacheTtlMs: number
  readonly #maxCachedLogins: number
  readonly #macKey = randomBytes(32)
  /** The key as the one-shot digest's prefix: 64 hex digits. */
  readonly #macPrefix = this.#macKey.toString('hex')
  readonly #cache = new Map<string, CachedLogin>()
  readonly #inFlight = new Map<string, Promise<boolean>>()
  readonly #gate: HashGate
  readonly #verifyHash: (password: string, hash: ScryptHash) => Promise<boolean>

  private constructor(hashes: ReadonlyMap<string, ScryptHash>, dummy: ScryptHash, options: PasswordCheckerOptions) {
    this.#hashes = hashes
    this.#dummy = dummy
    this.#cacheTtlMs = options.cacheTtlMs
    this.#maxCachedLogins = options.maxCachedLogins ?? Infinity
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

  /**
   * A key that is equal for equal user name and password and tells nothing about the password
   * without this process's random key: what the throttle counts as one guess (base64) and the
   * login cache compares. SHA-256 of key, name, NUL and password in one shot where Node has
   * crypto.hash (the key is fixed-length and first, so for one name no two passwords share an
   * input; the digest never leaves the process, so length extension gives nothing), else
   * HMAC-SHA256 under the key. Made once per login and passed to check().
   */
  mac(name: string, password: string): Buffer {
    if (oneShotHash !== undefined) return oneShotHash('sha256', `${this.#macPrefix}${name}\0${password}`, 'buffer')
    return createHmac('sha256', this.#macKey).update(name).update('\0').update(password).digest()
  }

  /** True when `name` has a hash here. */
  has(name: string): boolean {
    return this.#hashes.has(name)
  }

  get size(): number {
    return this.#hashes.size
  }

  /**
   * Checks a user's password; an unknown user takes as long as a wrong password and fails.
   * `client` (the client's group) is whose turn in the hashing queue this login takes.
   */
  check(name: string, password: string, signalSource: SignalSource, client = '', knownMac?: Buffer): Promise<boolean> {
    const hash = this.#hashes.get(name)
    // Unknown users go down the same road (digest, shared check, gate) against the dummy, so that
    // neither one attempt's time nor a burst of identical attempts tells them apart from real ones.
    return this.#check(name, password, hash, hash ?? this.#dummy, signalSource, client, knownMac)
  }

  /**
   * check() for a user whose hash was looked up elsewhere (the store): `hash` null for a user
   * who is not there, checked against a dummy with the parameters of the hashes looked up lately.
   */
  checkHash(name: string, password: string, hash: ScryptHash | null, signalSource: SignalSource, client = '', knownMac?: Buffer): Promise<boolean> {
    if (hash !== null) this.#lookedUpParams = hash.params
    return this.#check(name, password, hash ?? undefined, hash ?? this.#lookedUpDummy(), signalSource, client, knownMac)
  }

  /** Forgets `name`'s cached login: its next login is hashed (its password changed, or it is gone). */
  forget(name: string): void {
    this.#cache.delete(name)
  }

  async #check(name: string, password: string, hash: ScryptHash | undefined, target: ScryptHash, signalSource: SignalSource, client: string, knownMac: Buffer | undefined): Promise<boolean> {
    if (this.#cacheTtlMs === 0) return (await this.#gate.run(() => this.#verifyHash(password, target), signalOf(signalSource), client)) && hash !== undefined
    const mac = knownMac ?? this.mac(name, password)
    const cached = hash === undefined ? undefined : this.#cache.get(name)
    if (cached !== undefined) {
      if (cached.expiresAt > Date.now() && cached.hashKey.equals(hash!.key)) {
        if (timingSafeEqual(cached.mac, mac)) return true
      } else {
        this.#cache.delete(name)
      }
    }
    // The slow road (scrypt, queued): only now is the signal asked for (a connection's is made on first use).
    // The hash is part of the key: attempts across a password change do not share a run.
    const ok = (await this.#sharedCheck(`${name}\0${mac.toString('base64')}\0${target.key.toString('base64')}`, password, target, signalOf(signalSource), client)) && hash !== undefined
    if (ok) this.#remember(name, { mac, hashKey: hash!.key, expiresAt: Date.now() + this.#cacheTtlMs })
    return ok
  }

  #remember(name: string, login: CachedLogin): void {
    // Re-inserted, so the Map's order is the order logins were cached in: the oldest goes first.
    this.#cache.delete(name)
    this.#cache.set(name, login)
    if (this.#cache.size > this.#maxCachedLogins) this.#cache.delete(this.#cache.keys().next().value as string)
  }

  /**
   * The dummy for the parameters of the hashes looked up lately (that of the configured users
   * before any). Its key is random, not scrypt output: nothing can match it, and the attempt is
   * hashed with the same cost as a real user's.
   */
  #lookedUpDummy(): ScryptHash {
    const params = this.#lookedUpParams
    if (params === null) return this.#dummy
    const key = `${params.N},${params.r},${params.p}`
    let dummy = this.#dummies.get(key)
    if (dummy === undefined) {
      // A handful of parameter sets at most in practice; bounded all the same.
      if (this.#dummies.size >= 8) this.#dummies.clear()
      dummy = { params, salt: randomBytes(16), key: randomBytes(32) }
      this.#dummies.set(key, dummy)
    }
    return dummy
  }

  /** Joins a running check of the same attempt, or starts one. */
  async #sharedCheck(key: string, password: string, hash: ScryptHash, signal: AbortSignal | null, client: string): Promise<boolean> {
    for (;;) {
      let flight = this.#inFlight.get(key)
      const joined = flight !== undefined
      if (flight === undefined) {
        flight = this.#gate.run(() => this.#verifyHash(password, hash), signal, client).finally(() => this.#inFlight.delete(key))
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

/**
 * A counting semaphore for scrypt runs whose queue is fair between clients: waiters are kept per
 * client, and each free slot goes to the first waiter of the client first in line, which then
 * moves to the back of the line (round robin). A waiter whose client left is dropped.
 */
class HashGate {
  readonly #limit: number
  #running = 0
  /** Client → its waiters, in the order the clients get their next turn (a Map keeps insertion order). */
  readonly #queues = new Map<string, (() => void)[]>()

  constructor(limit: number) {
    this.#limit = limit
  }

  async run<T>(task: () => Promise<T>, signal: AbortSignal | null, client: string): Promise<T> {
    if (this.#running >= this.#limit) await this.#wait(signal, client)
    else this.#running++
    try {
      return await task()
    } finally {
      this.#handOver()
    }
  }

  /** Gives the finished run's slot to the next client in turn (the slot count stays as it is), or frees it. */
  #handOver(): void {
    const first = this.#queues.entries().next()
    if (first.done === true) {
      this.#running--
      return
    }
    const [client, waiters] = first.value
    const wake = waiters.shift()!
    this.#queues.delete(client)
    if (waiters.length > 0) this.#queues.set(client, waiters)
    wake()
  }

  /** Resolves when a slot is handed over. */
  #wait(signal: AbortSignal | null, client: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      const onAbort = (): void => {
        const waiters = this.#queues.get(client)
        const index = waiters === undefined ? -1 : waiters.indexOf(wake)
        if (index >= 0) {
          waiters!.splice(index, 1)
          if (waiters!.length === 0) this.#queues.delete(client)
        }
        reject(new SocksError('ERR_SOCKS_CLIENT_CLOSED', 'client left while its login waited for a hash slot', { cause: signal?.reason }))
      }
      if (signal?.aborted === true) return onAbort()
      signal?.addEventListener('abort', onAbort, { once: true })
      let waiters = this.#queues.get(client)
      if (waiters === undefined) this.#queues.set(client, (waiters = []))
      waiters.push(wake)
    })
  }
}

