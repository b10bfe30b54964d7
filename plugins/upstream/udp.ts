import { isSocksError, SocksError, type ConnectContext, type DatagramContext, type Next } from 'socksmith'
import { isLogLevelEnabled } from 'socksmith/ops'
import { socksAssociate, socksAssociateHop, type ClientUdpAssociation as UpstreamAssociation, type UdpRelayHop } from 'socksmith/client'
import { Deadline } from './deadline.js'
import { clientProxyOptions, sendsNames, unavailable } from './dialer.js'
import type { ProxyChain } from './dialer.js'
import type { ProxyEndpoint } from './url.js'
import { runThrough, type Upstream } from './pool.js'
import { attemptThrough } from './report.js'

declare module 'socksmith' {
  interface SocksState {
    /**
     * Set by the upstream plugin while a UDP association is relayed through an upstream SOCKS5
     * proxy; 'pending' while the upstream association is being set up (no datagram may go direct).
     */
    upstreamUdp: UpstreamUdpRelay | 'pending' | null
  }
}

/** UDP ASSOCIATE needs SOCKS5 at every hop. */
export function canAssociate(chain: ProxyChain): boolean {
  return chain.canAssociate
}

/** A client association's datagrams re-wrapped for an upstream SOCKS5 relay. */
export class UpstreamUdpRelay {
  readonly upstream: UpstreamAssociation
  /** socks5h: domain peers go upstream as names; socks5: they are resolved here first. */
  readonly sendsNames: boolean
  readonly label: string

  constructor(upstream: UpstreamAssociation, sendsNamesUpstream: boolean, label: string) {
    this.upstream = upstream
    this.sendsNames = sendsNamesUpstream
    this.label = label
  }
}

/**
 * Opens a UDP ASSOCIATE through the chain's SOCKS5 hops, each step within its `handshakeTimeout`
 * and all of them within `budget` ms. Every hop gets its own control connection, opened like a
 * CONNECT's (the server's resolver, TLS for `socks5s://` and `socks5hs://`): hop 1 directly, hop k
 * through a tunnel across hops 1 to k-1, so each hop sees its association come from the hop before
 * it, the only one whose datagrams it will get. Hop k's relay is addressed as hop k-1 sees it (it
 * may be reachable from there only): a datagram goes to hop 1's relay wrapped in one header per
 * hop, the outer ones naming the next relay, the innermost its destination (ClientUdpAssociation).
 * Hops 2..N are associated first and hop 1 last, so the association, once it exists, is whole.
 *
 * The datagrams go in the clear, as RFC 1928 §7 has them: TLS protects the control connections
 * (login, the relays' addresses), not the UDP payload. A refusal (REP) from any hop is passed back
 * as it is; anything else means the upstream is unavailable (no destination is involved, so even a
 * timeout is the upstream's fault). A failure closes every control connection opened so far.
 */
export async function associateUpstream(chain: ProxyChain, ctx: ConnectContext, budget: number): Promise<UpstreamUdpRelay> {
  const hops = chain.hops
  const resolver = ctx.settings.resolver
  const deadline = new Deadline(ctx.signal, budget)
  const onward: UdpRelayHop[] = []
  try {
    for (let i = 1; i < hops.length; i++) {
      // Already ERR_SOCKS_PROXY_FAILED, naming the hop and the step (TCP, TLS, a tunnel).
      const control = await chain.openTunnel(resolver, deadline, i)
      chain.handshakeStep(deadline)
      onward.push(await associateStep(hops[i]!, deadline, () => socksAssociateHop(clientProxyOptions(hops[i]!), { socket: control, signal: deadline.signal })))
    }
    const control = await chain.openTunnel(resolver, deadline, 0)
    chain.handshakeStep(deadline)
    // From here the association owns `onward`: it closes them if it fails.
    const association = await associateStep(hops[0]!, deadline, () => socksAssociate(clientProxyOptions(hops[0]!), { socket: control, signal: deadline.signal, chain: onward.splice(0) }))
    return new UpstreamUdpRelay(association, sendsNames(chain.last.protocol), chain.label)
  } finally {
    for (const hop of onward) hop.control.destroy()
    deadline.clear()
  }
}

/** One hop's UDP ASSOCIATE: its refusal (REP) as it is, anything else the upstream's failure. */
async function associateStep<T>(hop: ProxyEndpoint, deadline: Deadline, associate: () => Promise<T>): Promise<T> {
  try {
    return await associate()
  } catch (err) {
    if (deadline.abandoned || (isSocksError(err) && err.code === 'ERR_SOCKS_REPLY')) throw err
    throw unavailable(`upstream ${hop.label} failed to set up UDP ASSOCIATE`, err, deadline)
  }
}

/**
 * UDP ASSOCIATE through `upstream`. The rest of the connect chain runs first (`next()`: later
 * middleware such as rules check the request, and the core sets up the client-facing
 * association); only then is the upstream association opened and tied to it: datagrams from the
 * upstream relay go to the client as if from their peer, and either side ending ends the other.
 */
export async function associateThrough(upstream: Upstream, ctx: ConnectContext, next: Next): Promise<void> {
  // Until the upstream association is tied, a datagram must not take the direct path.
  ctx.state.upstreamUdp = 'pending'
  await next()
  const relay = await runThrough(upstream, ctx, canAssociate, 'UDP ASSOCIATE', ctx.settings.timeouts.connect, (chain, budget) => attemptThrough(ctx, chain, (c) => associateUpstream(c, ctx, budget)))
  tieAssociations(relay, ctx)
}

function tieAssociations(relay: UpstreamUdpRelay, ctx: ConnectContext): void {
  const upstream = relay.upstream
  const association = ctx.association
  if (association === null || association.closed) {
    upstream.close()
    if (association === null) throw new SocksError('ERR_SOCKS_CONNECT_FAILED', 'no UDP association was set up for the upstream relay')
    return
  }
  ctx.state.upstreamUdp = relay
  upstream.on('message', (data, from) => association.sendToClient(from, data))
  upstream.on('error', (err) => {
    if (isLogLevelEnabled(ctx.log, 'debug')) ctx.log.debug('upstream UDP error', { id: ctx.id, upstream: relay.label, error: err.message })
  })
  upstream.on('close', () => {
    if (isLogLevelEnabled(ctx.log, 'debug')) ctx.log.debug('upstream UDP association closed', { id: ctx.id, upstream: relay.label })
    association.close()
  })
  ctx.signal.addEventListener('abort', () => upstream.close(), { once: true })
}

/**
 * `datagram` middleware: outgoing datagrams of a relayed association go to the upstream relay
 * instead of the direct path (consumed, so they count as forwarded, not dropped), but only those
 * that every later middleware let through: the datagram is taken after `next()`, so a `rules`
 * registered after this plugin still drops (or resolves and vets) it first. Incoming ones come from
 * the upstream association through `sendToClient` and pass on to later middleware.
 */
export async function upstreamDatagram(dctx: DatagramContext, next: Next): Promise<void> {
  const relay = dctx.association.state.upstreamUdp
  if (relay === null || dctx.direction !== 'out') return next()
  if (relay === 'pending') return dctx.drop()
  await next()
  if (dctx.dropped || dctx.consumed) return
  dctx.consume()
  const peer = dctx.peer.type === 'domain' && !relay.sendsNames ? await dctx.resolvePeer() : dctx.peer
  relay.upstream.send(dctx.data, peer, ignoreSendError)
}

// A lost datagram is what UDP promises; the association goes on.
function ignoreSendError(): void {}
