import { once } from 'node:events'
import type { Socket } from 'node:net'
import type { AuthContext, ConnectContext, ConnectionContext, NegotiateContext, RelayContext } from './context.js'
import type { Connection } from './connection.js'
import { SocksError } from './errors.js'
import { clientGroup } from './client-group.js'
import { Command, Method, Reply } from '../protocol/constants.js'
import { unmapIPv4, type Address } from '../protocol/address.js'
import { addressesToDial, connectDirect, dialDirect, dialTcp, directDialer } from '../net/dialer.js'
import type { HttpExchange } from '../commands/http-forward.js'
import { setUpBind } from '../commands/bind.js'
import { ServerUdpAssociation } from '../commands/udp.js'
import { relay } from '../commands/relay.js'
import { hearErrors } from '../net/hear-errors.js'

// The terminals: the default work at the centre of each phase's onion, run after every
// middleware of the phase called next(). Each reads what it needs from the connection's own
// pipeline (ctx.settings), never from the server, so a reload does not change a live connection.

/** `negotiate`: NO AUTH, if the client offered it and no plugin requires authentication. */
export function negotiateTerminal(ctx: NegotiateContext): void {
  if (ctx.method === null && !ctx.settings.authRequired && ctx.offeredMethods.includes(Method.NO_AUTH)) ctx.method = Method.NO_AUTH
}

/** `auth`: NO AUTH passes; any other method must have been completed by a middleware (ctx.user). */
export function authTerminal(ctx: AuthContext): void {
  if (ctx.method === Method.NO_AUTH || ctx.user !== null) return
  throw new SocksError('ERR_SOCKS_AUTH_FAILED', `authentication method 0x${ctx.method.toString(16).padStart(2, '0')} was not completed`)
}

/** `request`: nothing (the codec already refused unknown commands and address types). */
export function requestTerminal(): void {}

/** `connect`: CONNECT dials, BIND listens (or runs `ctx.binder`), UDP ASSOCIATE opens an association. */
export async function connectTerminal(view: ConnectContext): Promise<void> {
  const ctx = view as unknown as ConnectionContext
  const timeouts = ctx.settings.timeouts
  if (ctx.command === Command.CONNECT) {
    if (ctx.outbound !== null) return
    if (ctx.destination.type === 'domain' && ctx.destination.host.length === 0) throw new SocksError('ERR_SOCKS_BAD_ADDRESS', 'empty domain name')
    const exchange = ctx.exchange
    const socket = exchange !== null && (ctx.dialer === directDialer || ctx.dialer.reusable === true)
      ? await dialOrigin(ctx, view, exchange)
      : ctx.dialer === directDialer
        ? await dialDirect(ctx)
        : await ctx.dialer.dial(view, { signal: ctx.signal, timeout: timeouts.connect })
    // Connected after the connection gave up (its deadline, a middleware that did not wait for us).
    if (ctx.driver.finished) {
      socket.destroy()
      return
    }
    hearErrors(socket)
    ctx.outbound = socket
    ctx.dialed ??= dialedBy(ctx, socket)
    return
  }
  if (ctx.command === Command.BIND) {
    if (ctx.outbound !== null) return
    if (ctx.binder !== null) return ctx.binder.bind(view)
    await setUpBind(ctx, (bound) => ctx.sendFirstBindReply(bound), timeouts.bindAccept)
    return
  }
  if (ctx.association !== null) return
  const connection = ctx.driver as Connection
  const udp = ctx.settings.udp
  const counted = connection.host.claimAssociation(ctx.client.address, udp.maxAssociationsPerClient, ctx.settings.clientPrefix)
  if (counted === null) {
    throw new SocksError('ERR_SOCKS_NOT_ALLOWED', `${clientGroup(ctx.client.address, ctx.settings.clientPrefix)} holds ${udp.maxAssociationsPerClient} UDP associations already`)
  }
  const pipeline = connection.pipeline
  const options = { ...udp, idleTimeout: timeouts.udpIdle, lookupTimeout: timeouts.connect, lookups: pipeline.datagramLookups }
  const association = new ServerUdpAssociation(ctx, pipeline.chains.datagram, options, () => {
    // The association ending (idle) ends its control connection, and the other way round.
    connection.host.releaseAssociation(counted)
    if (!ctx.socket.destroyed) ctx.socket.destroy()
  })
  ctx.association = association
  ctx.bound ??= await association.open()
  if (ctx.driver.finished) association.close()
}

/** `relay`: pump both ways until both sides closed; for UDP, hold the control connection. */
export async function relayTerminal(view: RelayContext): Promise<void> {
  const ctx = view as unknown as ConnectionContext
  const socket = ctx.socket
  if (ctx.command === Command.UDP_ASSOCIATE) {
    // The control connection carries nothing; it lives as long as the association (RFC 1928 §7).
    socket.resume()
    if (!socket.destroyed) {
      socket.on('end', () => socket.end())
      await once(socket, 'close')
    }
    ctx.association?.close()
    return
  }
  let upstream = ctx.outbound
  if (upstream === null) throw new SocksError('ERR_SOCKS_CONNECT_FAILED', 'connect phase set no upstream socket')
  const exchange = ctx.exchange
  if (exchange !== null) {
    // A reused origin socket the origin closed or reset while the relay middleware ran: nothing
    // was sent on it yet, so any request may go out on a new dial.
    if (upstream.destroyed && exchange.reused) upstream = await redialOrigin(ctx)
    // A forwarded HTTP request: the request goes to the origin over the dialled socket, and the
    // bodies through the relay's pump (commands/http-forward.ts).
    const error = await exchange.forward(upstream, ctx.client.address, { idleTimeout: ctx.settings.timeouts.idle, fastReads: false }, (failure) => {
      ctx.reply = failure.reply ?? Reply.GENERAL_FAILURE
      ctx.error ??= failure
    }, exchange.reused ? () => redialOrigin(ctx) : null)
    if (error !== null) ctx.error ??= error
    return
  }
  const early = ctx.earlyData
  ctx.earlyData = null
  const error = await relay(socket, upstream, early, { idleTimeout: ctx.settings.timeouts.idle, fastReads: ctx.settings.fastRelay })
  if (error !== null) ctx.error ??= error
}

/**
 * The dial of a forwarded HTTP request: the origin socket its client connection parked after an
 * earlier request, if this connect phase (every middleware having run) would dial the same thing
 * (commands/origin-park.ts), else a dial, whose socket may then be parked in its turn. Only this
 * default path reuses: a middleware that dials itself (sets ctx.outbound) never gets a parked socket.
 */
async function dialOrigin(ctx: ConnectionContext, view: ConnectContext, exchange: HttpExchange): Promise<Socket> {
  const dialer = ctx.dialer
  const direct = dialer === directDialer
  // The direct dialer's addresses are resolved and vetted first, as for any dial: a parked socket
  // serves only if its peer is still among them.
  const addresses = direct ? await addressesToDial(ctx) : null
  const resolved = ctx.resolved === null ? null : ctx.resolved.map((a) => a.address).join(' ')
  const parked = exchange.takeOrigin(dialer, ctx.user, ctx.destination, resolved, addresses)
  if (parked !== null) {
    // What the dial said about itself holds for the socket's later requests (access fields).
    const key = parked.key
    ctx.dialed ??= key.dialed
    ctx.via ??= key.via
    ctx.bound ??= key.bound
    return parked.socket
  }
  const socket = direct ? await connectDirect(ctx, addresses) : await dialer.dial(view, { signal: ctx.signal, timeout: ctx.settings.timeouts.connect })
  if (!ctx.driver.finished) {
    ctx.dialed ??= dialedBy(ctx, socket)
    exchange.dialedOrigin(socket, { dialer, user: ctx.user, destination: ctx.destination, resolved, dialed: ctx.dialed, via: ctx.via, bound: ctx.bound })
  }
  return socket
}

/**
 * A second dial for a request whose reused origin socket the origin closed as the request went
 * out: the dial the connect phase would have made (same dialer, the addresses it vetted), bounded
 * by the connect timeout, since no phase deadline runs during the relay.
 */
async function redialOrigin(ctx: ConnectionContext): Promise<Socket> {
  const timeout = ctx.settings.timeouts.connect
  const socket = ctx.dialer === directDialer
    ? await dialTcp(ctx.destination.host, ctx.destination.port, await addressesToDial(ctx), { signal: ctx.signal, timeout })
    : await ctx.dialer.dial(ctx as unknown as ConnectContext, { signal: ctx.signal, timeout })
  if (ctx.socket.destroyed) {
    socket.destroy()
    throw new SocksError('ERR_SOCKS_CLIENT_CLOSED', 'the client left during the second dial')
  }
  ctx.outbound = socket
  return socket
}

/**
 * Where a CONNECT went. The direct dialer dials an unresolved IP as it is and a single resolved
 * address as it is; only a race between several addresses (or another dialer) needs the socket
 * asked (getpeername, a syscall).
 */
function dialedBy(ctx: ConnectionContext, socket: Socket): Address {
  if (ctx.dialer === directDialer) {
    const resolved = ctx.resolved
    if (resolved === null && ctx.destination.type !== 'domain') return ctx.destination
    if (resolved !== null && resolved.length === 1) return { type: resolved[0]!.family === 6 ? 'ipv6' : 'ipv4', host: resolved[0]!.address, port: ctx.destination.port }
  }
  return { type: socket.remoteFamily === 'IPv6' ? 'ipv6' : 'ipv4', host: unmapIPv4(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 }
}

/** `datagram`: nothing; the association forwards what the chain did not drop or consume. */
export function datagramTerminal(): void {}
