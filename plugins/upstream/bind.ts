import { isIP } from 'node:net'
import { isSocksError, SocksError, toSocksError, type Address, type Binder, type ConnectContext } from 'socksmith'
import { formatAddress, toAddress } from 'socksmith/protocol'
import { socksBind, type BindResult } from 'socksmith/client'
import { Deadline } from './deadline.js'
import { clientProxyOptions, destinationFor, type ProxyChain } from './dialer.js'
import { runThrough, type Upstream } from './pool.js'
import { attemptThrough } from './report.js'

/**
 * What the plugin puts in `ctx.binder` for a BIND through `upstream`. The core calls it where its
 * own BIND would run, after every connect middleware: whatever is registered after this plugin
 * (rules) still checks the request and installs its peer check before the upstream is asked.
 */
export class UpstreamBinder implements Binder {
  readonly upstream: Upstream

  constructor(upstream: Upstream) {
    this.upstream = upstream
  }

  /**
   * Runs the BIND through the upstream: its first reply goes to the client, its accepted peer becomes `ctx.outbound`.
   */
  bind(ctx: ConnectContext): Promise<void> {
    return runThrough(this.upstream, ctx, canBind, 'BIND', ctx.settings.timeouts.connect, (chain, budget) => attemptThrough(ctx, chain, (c) => bindThrough(c, ctx, budget)))
  }
}

/** BIND needs a SOCKS5 last hop. */
export function canBind(chain: ProxyChain): boolean {
  return chain.canBind
}

/**
 * BIND through a chain whose last hop speaks SOCKS5: the last hop listens, its first reply (where
 * the peer should connect) is passed to our client, and its second reply (who connected) becomes
 * ours. The core's own BIND does not run: `ctx.outbound` is the tunnel and `ctx.bound` the peer.
 *
 * Up to the first reply no destination is involved, so every step there has the hop's
 * `handshakeTimeout` (within `budget`, the connect timeout) and missing it is the upstream's
 * failure (a pool fails over); only a REP is passed back as it is. After it the
 * client already holds an address, so nothing is retried: the wait is bounded by `bindAccept`
 * (REP 06), and a peer that `ctx.acceptBindPeer` refuses ends the BIND with REP 02 (the upstream
 * accepts a single peer, so we cannot wait for another).
 */
export async function bindThrough(chain: ProxyChain, ctx: ConnectContext, budget: number): Promise<void> {
  const last = chain.last
  const bindAccept = ctx.settings.timeouts.bindAccept
  const destination = await destinationFor(ctx, last.protocol)
  const deadline = new Deadline(ctx.signal, budget)
  try {
    const tunnel = await chain.openTunnel(ctx.settings.resolver, deadline)
    let bind: BindResult
    chain.handshakeStep(deadline)
    try {
      bind = await socksBind(clientProxyOptions(last), { host: destination.host, port: destination.port }, { socket: tunnel, signal: deadline.signal })
    } catch (err) {
      throw chain.finalFailure(err, deadline)
    }
    ctx.sendFirstBindReply(reachableAddress(bind.bound, chain, tunnel.remoteAddress))
    deadline.restart(bindAccept, () => new SocksError('ERR_SOCKS_BIND_TIMEOUT', `no peer connected to ${formatAddress(bind.bound)} within ${bindAccept} ms`))
    let peer: Address
    try {
      ;({ peer } = await bind.accepted)
    } catch (err) {
      if (deadline.abandoned || (isSocksError(err) && (err.code === 'ERR_SOCKS_REPLY' || err.code === 'ERR_SOCKS_BIND_TIMEOUT'))) throw toSocksError(err)
      throw new SocksError('ERR_SOCKS_CONNECT_FAILED', `upstream ${last.label} failed while waiting for the BIND peer: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
    if (ctx.acceptBindPeer !== null) {
      let allowed = false
      try {
        allowed = await ctx.acceptBindPeer(peer)
      } finally {
        if (!allowed) bind.socket.destroy()
      }
      if (!allowed) throw new SocksError('ERR_SOCKS_NOT_ALLOWED', `BIND peer ${formatAddress(peer)} is not allowed`)
    }
    ctx.outbound = bind.socket
    ctx.bound = peer
    ctx.dialed = peer
  } finally {
    deadline.clear()
  }
}

/** Many servers answer BND.ADDR 0.0.0.0 meaning "the address you reached me at". */
function reachableAddress(bound: Address, chain: ProxyChain, hop1Address: string | undefined): Address {
  if (bound.host !== '0.0.0.0' && bound.host !== '::') return bound
  const last = chain.last
  const host = isIP(last.host) !== 0 ? last.host : chain.hops.length === 1 && hop1Address !== undefined ? hop1Address : bound.host
  return toAddress(host.startsWith('::ffff:') ? host.slice(7) : host, bound.port)
}
