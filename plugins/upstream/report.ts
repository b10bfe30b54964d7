import { isSocksError, type ConnectContext } from 'socksmith'
import { channels } from 'socksmith/ops'

/**
 * What a report needs of a chain. Typed by shape, not as dialer.ts's ProxyChain: dialer.ts imports
 * this module, and an import back (even `import type`) would be a cycle (.dependency-cruiser.cjs).
 */
interface LabelledChain {
  readonly label: string
}

/**
 * Publishes `socksmith:upstream:failure` when `err` says the upstream itself was unavailable
 * (ERR_SOCKS_PROXY_FAILED), not when the last hop answered for the destination or the client left.
 */
export function reportUnavailable(ctx: ConnectContext, chain: LabelledChain, err: unknown): void {
  if (!channels.upstreamFailure.hasSubscribers) return
  if (isSocksError(err) && err.code === 'ERR_SOCKS_PROXY_FAILED') channels.upstreamFailure.publish({ ctx, upstream: chain.label, error: err })
}

/**
 * Runs one attempt through `chain` for BIND or UDP ASSOCIATE: on success the connection records
 * the chain it went through (`ctx.via`), on an unavailable upstream the failure is published.
 */
export async function attemptThrough<C extends LabelledChain, T>(ctx: ConnectContext, chain: C, attempt: (chain: C) => Promise<T>): Promise<T> {
  try {
    const result = await attempt(chain)
    ctx.via = chain.label
    return result
  } catch (err) {
    reportUnavailable(ctx, chain, err)
    throw err
  }
}
