import { SocksError } from '../core/errors.js'

/** The options of `new TokenBucket()`. */
export interface TokenBucketOptions {
  /** Tokens (bytes) added per second; must be positive. */
  readonly rate: number
  /** Most tokens the bucket holds, and what it starts with. Default: one second of `rate`. */
  readonly burst?: number
  /** Milliseconds on a monotonic clock; default `performance.now`. Tests inject their own. */
  readonly now?: () => number
}

/**
 * A token bucket: `rate` tokens a second flow in, at most `burst` are kept. One bucket can shape
 * many connections at once (all of a user's, say): each takes from the same tokens, so together
 * they stay at the rate, and since each waits for the debt the others ran up before it, they take
 * turns.
 *
 * The relay (`ctx.throttle`) uses {@link TokenBucket.consume}: a chunk already read goes out, the
 * bucket may go into debt, and the side that read it stops reading until the debt is paid off —
 * over time exactly `rate`, overshooting by at most one read. Datagrams, which can be dropped, use
 * {@link TokenBucket.tryConsume}.
 *
 * @example
 * const perUser = new TokenBucket({ rate: 128 * 1024, burst: 32 * 1024 })
 * host.use('relay', async function shapeDownloads(ctx, next) {
 *   ctx.throttle('outbound', perUser)
 *   await next()
 * })
 */
export class TokenBucket {
  #rate: number
  #burst: number
  #tokens: number
  #at: number
  readonly #now: () => number

  constructor(options: TokenBucketOptions) {
    this.#now = options.now ?? performance.now.bind(performance)
    this.#rate = checkRate(options.rate)
    this.#burst = checkBurst(options.burst, this.#rate)
    this.#tokens = this.#burst
    this.#at = this.#now()
  }

  /** Tokens added per second. */
  get rate(): number {
    return this.#rate
  }

  /** Most tokens kept. */
  get burst(): number {
    return this.#burst
  }

  /** Tokens there now; negative while in debt. */
  get tokens(): number {
    this.#refill()
    return this.#tokens
  }

  /**
   * Takes `n` tokens, going into debt if there are not enough. Returns the milliseconds until the
   * debt is paid off (0 when the bucket is not in debt): how long whoever took them should wait
   * before taking more.
   */
  consume(n: number): number {
    this.#refill()
    this.#tokens -= n
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens * 1000) / this.#rate)
  }

  /** Takes `n` tokens only if there are that many: false, and nothing taken, if not. */
  tryConsume(n: number): boolean {
    this.#refill()
    if (this.#tokens < n) return false
    this.#tokens -= n
    return true
  }

  /**
   * Changes the rate (and burst, default one second of the new rate) from now on. The tokens there
   * are kept (capped at the new burst), and so is a debt: a new limit never hands out a fresh burst.
   */
  setRate(rate: number, burst?: number): void {
    this.#refill()
    this.#rate = checkRate(rate)
    this.#burst = checkBurst(burst, this.#rate)
    if (this.#tokens > this.#burst) this.#tokens = this.#burst
  }

  #refill(): void {
    const now = this.#now()
    const elapsed = now - this.#at
    if (elapsed <= 0) return
    this.#at = now
    this.#tokens = Math.min(this.#burst, this.#tokens + (elapsed * this.#rate) / 1000)
  }
}

function checkRate(rate: number): number {
  if (typeof rate !== 'number' || !Number.isFinite(rate) || rate <= 0) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `TokenBucket: rate must be a positive number of tokens per second, not ${String(rate)}`)
  return rate
}

function checkBurst(burst: number | undefined, rate: number): number {
  if (burst === undefined) return rate
  if (typeof burst !== 'number' || !Number.isFinite(burst) || burst <= 0) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `TokenBucket: burst must be a positive number of tokens, not ${String(burst)}`)
  return burst
}
