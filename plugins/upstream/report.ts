import { channels, isSocksError, type ConnectContext } from 'socksmith'
import type { ProxyChain } from './dialer.js'

/**
 * Publishes `socksmith:upstream:failure` when `err` says the upstream itself was unavailable
 * (ERR_SOCKS_PROXY_FAILED), not when the last hop answered for the destination or the client left.
 */
export function reportUnavailable(ctx: ConnectContext, chain: ProxyChain, err: unknown): void {
  if (!channels.upstreamFailure.hasSubscribers) return
  if (isSocksError(err) && err.code === 'ERR_SOCKS_PROXY_FAILED') channels.upstreamFailure.publish({ ctx, upstream: chain.label, error: err })
}

/**
 * Runs one attempt through `chain` for BIND or UDP ASSOCIATE: on success the connection records
 * the chain it went through (`ctx.via`), on an unavailable upstream the failure is published.
 */
export async function attemptThrough<T>(ctx: ConnectContext, chain: ProxyChain, attempt: (chain: ProxyChain) => Promise<T>): Promise<T> {
  try {
    const result = await attempt(chain)
    ctx.via = chain.label
    return result
  } catch (err) {
    reportUnavailable(ctx, chain, err)
    throw err
  }
}
