import type { Socket } from 'node:net'
import { isSocksError, SocksError, type ConnectContext, type Dialer, type DialOptions } from 'socksmith'
import type { ProxyChain } from './dialer.js'

export type PoolStrategy = 'round-robin' | 'failover'

/** What a connection runs through: one chain, or a pool of them. */
export type Upstream = ProxyChain | ProxyPool

/**
 * Runs `attempt` on the chain the upstream picks, failing over inside a pool. `eligible` narrows
 * the candidates (BIND and UDP need SOCKS5); with none eligible the command is not supported.
 */
export function runThrough<T>(upstream: Upstream, ctx: ConnectContext, eligible: (chain: ProxyChain) => boolean, what: string, attempt: (chain: ProxyChain) => Promise<T>): Promise<T> {
  if (upstream instanceof ProxyPool) return upstream.run(ctx, eligible, what, attempt)
  if (!eligible(upstream)) throw notSupported(what, upstream.label)
  return attempt(upstream)
}

/**
 * Several upstreams for the same traffic. `failover` always starts at the first; `round-robin`
 * starts one further each connection. Either way, an upstream that fails (ERR_SOCKS_PROXY_FAILED:
 * unreachable, closed, refused our login) is skipped for `cooldown` ms and the next one is tried
 * within the same connection. When all are cooling down they are tried anyway, soonest-recovering
 * first, rather than refusing the client outright.
 */
export class ProxyPool implements Dialer {
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

  dial(ctx: ConnectContext, options: DialOptions): Promise<Socket> {
    return this.run(ctx, everyChain, 'CONNECT', (chain) => chain.dial(ctx, options))
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

  async run<T>(ctx: ConnectContext, eligible: (chain: ProxyChain) => boolean, what: string, attempt: (chain: ProxyChain) => Promise<T>): Promise<T> {
    const candidates = this.order(eligible)
    if (candidates.length === 0) throw notSupported(what, this.label)
    let lastError: SocksError | null = null
    for (const member of candidates) {
      try {
        const result = await attempt(member)
        this.#downUntil.delete(member)
        return result
      } catch (err) {
        if (!isSocksError(err) || err.code !== 'ERR_SOCKS_PROXY_FAILED' || ctx.signal.aborted) throw err
        this.#downUntil.set(member, this.#now() + this.cooldown)
        ctx.log.warn(`upstream failed; skipping it for ${Math.round(this.cooldown / 1000)} s`, { id: ctx.id, upstream: member.label, error: err.message })
        lastError = err
      }
    }
    throw new SocksError('ERR_SOCKS_PROXY_FAILED', `every upstream of the pool failed; last: ${lastError!.message}`, { cause: lastError, reply: lastError!.reply })
  }
}

function everyChain(): boolean {
  return true
}

function notSupported(what: string, label: string): SocksError {
  return new SocksError('ERR_SOCKS_COMMAND_NOT_SUPPORTED', `${what} cannot go through ${label}: it needs a SOCKS5 upstream${what === 'UDP ASSOCIATE' ? ' as the only hop' : ' as the last hop'}`)
}
