import type { Socket } from 'node:net'
import { isSocksError, Reply, SocksError, type ConnectContext, type Dialer, type DialOptions } from 'socksmith'
import { isUnanswered, type ProxyChain } from './dialer.js'
import { reportUnavailable } from './report.js'

/**
 * How a pool picks its first member for a connection: always the first (`failover`), or one further each time (`round-robin`).
 */
export type PoolStrategy = 'round-robin' | 'failover'

/** What a connection runs through: one chain, or a pool of them. */
export type Upstream = ProxyChain | ProxyPool

/**
 * Runs `attempt` on the chain the upstream picks, failing over inside a pool. `eligible` narrows
 * the candidates (BIND and UDP need SOCKS5); with none eligible the command is not supported.
 * `budget` (ms, 0 = none) bounds all attempts together; each gets what is left of it.
 */
export function runThrough<T>(upstream: Upstream, ctx: ConnectContext, eligible: (chain: ProxyChain) => boolean, what: string, budget: number, attempt: (chain: ProxyChain, timeout: number) => Promise<T>): Promise<T> {
  if (upstream instanceof ProxyPool) return upstream.run(ctx, eligible, what, budget, attempt)
  assertCarries(upstream, eligible, what)
  return attempt(upstream, budget)
}

/** Throws REP 07 unless some chain of `upstream` is eligible for the command. */
export function assertCarries(upstream: Upstream, eligible: (chain: ProxyChain) => boolean, what: string): void {
  if (!carries(upstream, eligible)) throw notSupported(what, upstream.label)
}

export function carries(upstream: Upstream, eligible: (chain: ProxyChain) => boolean): boolean {
  return upstream instanceof ProxyPool ? upstream.members.some(eligible) : eligible(upstream)
}

/**
 * Several upstreams for the same traffic. `failover` always starts at the first; `round-robin`
 * starts one further each connection. Either way, an upstream that fails (ERR_SOCKS_PROXY_FAILED:
 * unreachable, closed, refused our login, silent past handshakeTimeout) is skipped for `cooldown` ms and the next one is tried
 * within the same connection. When all are cooling down they are tried anyway, soonest-recovering
 * first, rather than refusing the client outright. All tries of one connection share its connect
 * timeout: a member that failed slowly leaves the next one less time, never more.
 */
export class ProxyPool implements Dialer {
  /** Like its chains: any member's tunnel to a destination serves it (the pool only balances). */
  readonly reusable = true
  readonly members: readonly ProxyChain[]
  readonly strategy: PoolStrategy
  readonly cooldown: number
  readonly label: string
  readonly #downUntil = new Map<ProxyChain, number>()
  readonly #now: () => number
  #next = 0

  constructor(members: readonly ProxyChain[], strategy: PoolStrategy, cooldown: number, now: () => number = performance.now.bind(performance)) {
    if (members.length === 0) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', 'a pool needs at least one upstream')
    this.members = members
    this.strategy = strategy
    this.cooldown = cooldown
    this.#now = now
    this.label = `pool(${strategy}: ${members.map((m) => m.label).join(', ')})`
  }

  /**
   * Dials through the members in the strategy's order, skipping those in cooldown, until one carries the connection.
   */
  dial(ctx: ConnectContext, options: DialOptions): Promise<Socket> {
    return this.run(ctx, everyChain, 'CONNECT', options.timeout, (chain, timeout, more) => chain.dial(ctx, { signal: options.signal, timeout }, more))
  }

  /** True while `member` is skipped after a failure. */
  isCoolingDown(member: ProxyChain): boolean {
    const until = this.#downUntil.get(member)
    return until !== undefined && until > this.#now()
  }

  /** The members in the order this connection tries them. */
  order(eligible: (chain: ProxyChain) => boolean = everyChain): ProxyChain[] {
    const members = this.members
    const start = this.strategy === 'round-robin' ? this.#next++ % members.length : 0
    if (this.#next >= Number.MAX_SAFE_INTEGER) this.#next = 0
    const healthy: ProxyChain[] = []
    const cooling: ProxyChain[] = []
    for (let i = 0; i < members.length; i++) {
      const member = members[(start + i) % members.length]!
      if (!eligible(member)) continue
      ;(this.isCoolingDown(member) ? cooling : healthy).push(member)
    }
    cooling.sort((a, b) => this.#downUntil.get(a)! - this.#downUntil.get(b)!)
    return healthy.concat(cooling)
  }

  /**
   * `attempt` gets the time left and whether another member remains after it. A member may answer
   * "no answer in time" (`isUnanswered`: an HTTP or SOCKS4 last hop, whose only answer is the
   * destination's): the next one is tried, and the silent ones are blamed only if a later member
   * does answer for the destination, since then it was not the destination that was slow.
   */
  async run<T>(ctx: ConnectContext, eligible: (chain: ProxyChain) => boolean, what: string, budget: number, attempt: (chain: ProxyChain, timeout: number, more: boolean) => Promise<T>): Promise<T> {
    const candidates = this.order(eligible)
    if (candidates.length === 0) throw notSupported(what, this.label)
    const end = budget > 0 ? this.#now() + budget : Infinity
    let lastError: SocksError | null = null
    let silent: ProxyChain[] | null = null
    for (let i = 0; i < candidates.length; i++) {
      const member = candidates[i]!
      const left = end - this.#now()
      if (lastError !== null && left <= 0) {
        if (isUnanswered(lastError)) throw lastError
        throw new SocksError('ERR_SOCKS_PROXY_FAILED', `no time left of ${budget} ms to try ${member.label}; last: ${lastError.message}`, { cause: lastError, reply: lastError.reply })
      }
      try {
        const result = await attempt(member, end === Infinity ? 0 : Math.max(1, left), i < candidates.length - 1)
        this.#downUntil.delete(member)
        if (silent !== null) this.#blameSilent(ctx, silent, member)
        return result
      } catch (err) {
        if (!isSocksError(err) || ctx.signal.aborted) throw err
        if (isUnanswered(err)) {
          ;(silent ??= []).push(member)
        } else if (err.code === 'ERR_SOCKS_PROXY_FAILED') {
          this.#coolDown(ctx, member, err)
        } else {
          // The destination's own answer (a refusal, an unreachable host) through a working member;
          // a timeout answers nothing, so it blames nobody.
          if (silent !== null && err.code !== 'ERR_SOCKS_CONNECT_TIMEOUT') this.#blameSilent(ctx, silent, member)
          throw err
        }
        lastError = err
      }
    }
    if (isUnanswered(lastError!)) throw lastError!
    throw new SocksError('ERR_SOCKS_PROXY_FAILED', `every upstream of the pool failed; last: ${lastError!.message}`, { cause: lastError, reply: lastError!.reply })
  }

  #coolDown(ctx: ConnectContext, member: ProxyChain, err: SocksError): void {
    this.#downUntil.set(member, this.#now() + this.cooldown)
    ctx.log.warn(`upstream failed; skipping it for ${Math.round(this.cooldown / 1000)} s`, { id: ctx.id, upstream: member.label, error: err.message })
  }

  /** Members that stayed silent about a destination another member answered for were hung: they fail now. */
  #blameSilent(ctx: ConnectContext, silent: readonly ProxyChain[], answered: ProxyChain): void {
    for (const member of silent) {
      const err = new SocksError('ERR_SOCKS_PROXY_FAILED', `upstream ${member.label} gave no answer within ${member.handshakeTimeout} ms for a destination ${answered.label} answered for`, { reply: Reply.GENERAL_FAILURE })
      this.#coolDown(ctx, member, err)
      reportUnavailable(ctx, member, err)
    }
  }
}

function everyChain(): boolean {
  return true
}

function notSupported(what: string, label: string): SocksError {
  return new SocksError('ERR_SOCKS_COMMAND_NOT_SUPPORTED', `${what} cannot go through ${label}: it needs ${what === 'UDP ASSOCIATE' ? 'SOCKS5 at every hop' : 'a SOCKS5 last hop'}`)
}
