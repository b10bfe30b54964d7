import { isIP, type Socket } from 'node:net'
import { isSocksError, SocksError, toSocksError, Reply, type Address, type ConnectContext, type Dialer, type DialOptions, type Resolver } from 'socksmith'
import { dialTcp } from 'socksmith/net'
import { toAddress } from 'socksmith/protocol'
import { socksConnect, type ProxyOptions } from 'socksmith/client'
import { Deadline } from './deadline.js'
import { reportUnavailable } from './report.js'
import { httpConnect } from './http-connect.js'
import { socks4Connect } from './socks4.js'
import { isSocks5, type ProxyEndpoint, type ProxyProtocol } from './url.js'

// The SOCKS5 client's own handshake timer must not fire first: our Deadline bounds the whole dial.
const NO_CLIENT_TIMEOUT = 2_147_483_647

/** Seconds each step of reaching a hop may take when the options do not say (see ProxyChainOptions). */
export const DEFAULT_HANDSHAKE_TIMEOUT_SECONDS = 5

/** Options of a `ProxyChain`. */
export interface ProxyChainOptions {
  /**
   * Milliseconds each step of reaching a hop may take, within the connect timeout: the TCP connect
   * to the first hop, each hop's tunnel to the next, and the last hop's greeting and login (SOCKS5).
   * A hop that does not answer in time is unavailable (ERR_SOCKS_PROXY_FAILED, so a pool fails
   * over); only the last hop's answer for the destination may take the rest of the connect timeout.
   * Default 5000 (`DEFAULT_HANDSHAKE_TIMEOUT_SECONDS`).
   */
  readonly handshakeTimeout?: number
}

/**
 * Errors with which a failed final hop still says something true about the destination, so they
 * go back to the client as they are. Anything else the last hop does (closing, refusing our login,
 * talking nonsense) means the upstream is broken.
 */
const DESTINATION_FAILURES = new Set(['ERR_SOCKS_REPLY', 'ERR_SOCKS_CONNECT_TIMEOUT', 'ERR_SOCKS_ADDRESS_TYPE_NOT_SUPPORTED', 'ERR_SOCKS_BAD_ADDRESS'])

/**
 * One or more proxies in a row: hop 1 is reached over TCP, every next hop through the previous
 * hop's tunnel, and the last hop is asked for the destination. A single proxy is a chain of one.
 *
 * Failures are sorted into two kinds, because a pool must only fail over on the first:
 * - the upstream is unavailable (cannot reach hop 1, a hop closes or refuses our login, a hop cannot
 *   reach the next hop): ERR_SOCKS_PROXY_FAILED, REP 01;
 * - the last hop answered for the destination (refused, unreachable, timed out): that answer, as
 *   ERR_SOCKS_REPLY carrying the upstream's REP (or ERR_SOCKS_CONNECT_TIMEOUT, REP 06).
 */
export class ProxyChain implements Dialer {
  /** A tunnel to a destination carries later plain HTTP requests to it as well: the chain connects to nothing but `ctx.destination`. */
  readonly reusable = true
  readonly hops: readonly ProxyEndpoint[]
  /** `a -> b -> c`, passwords left out. */
  readonly label: string
  /** Milliseconds; see ProxyChainOptions. */
  readonly handshakeTimeout: number

  constructor(hops: readonly ProxyEndpoint[], options: ProxyChainOptions = {}) {
    if (hops.length === 0) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', 'a proxy chain needs at least one hop')
    const handshakeTimeout = options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT_SECONDS * 1000
    if (!(Number.isFinite(handshakeTimeout) && handshakeTimeout > 0)) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `handshakeTimeout must be a positive number of milliseconds, got ${handshakeTimeout}`)
    this.hops = hops
    this.label = hops.map((h) => h.label).join(' -> ')
    this.handshakeTimeout = handshakeTimeout
  }

  /** The last hop: the proxy that is asked for the destination. */
  get last(): ProxyEndpoint {
    return this.hops[this.hops.length - 1]!
  }

  /** BIND needs the last hop to speak SOCKS5; the hops before it only carry the tunnel. */
  get canBind(): boolean {
    return isSocks5(this.last)
  }

  /**
   * UDP ASSOCIATE needs every hop to speak SOCKS5: each hop's relay carries the datagrams for the
   * next hop's relay (see associateUpstream), and SOCKS4 and HTTP CONNECT have no UDP at all.
   */
  get canAssociate(): boolean {
    return this.hops.every(isSocks5)
  }

  /**
   * `hasAlternative` (a pool with another member left): an HTTP or SOCKS4 last hop that is still
   * silent after `handshakeTimeout` is left with an `isUnanswered` timeout, so that the pool can ask
   * the next member; without one it gets the whole budget, like any answer for the destination.
   */
  async dial(ctx: ConnectContext, options: DialOptions, hasAlternative = false): Promise<Socket> {
    const destination = await destinationFor(ctx, this.last.protocol)
    const deadline = new Deadline(options.signal, options.timeout)
    const awaitDestination = (): void => deadline.final(() => new SocksError('ERR_SOCKS_CONNECT_TIMEOUT', `connect through ${this.label} timed out after ${options.timeout} ms`))
    try {
      let socket: Socket
      let bound: Address | null
      try {
        socket = await this.openTunnel(ctx.settings.resolver, deadline)
        try {
          if (isSocks5(this.last)) {
            // The greeting proves the last hop alive; only its answer for the destination may take the rest of the budget.
            this.handshakeStep(deadline)
            bound = await openHop(socket, this.last, destination, deadline.signal, awaitDestination)
          } else {
            // SOCKS4 and HTTP have no greeting: their one answer is already the destination's, and
            // their silence cannot be told from a slow destination (see ProxyPool.run).
            if (hasAlternative && deadline.remaining > this.handshakeTimeout) this.#awaitAnswer(deadline)
            else awaitDestination()
            bound = await openHop(socket, this.last, destination, deadline.signal)
          }
        } catch (err) {
          socket.destroy()
          throw this.finalFailure(err, deadline)
        }
      } catch (err) {
        reportUnavailable(ctx, this, err)
        throw err
      }
      ctx.dialed = destination
      ctx.via = this.label
      // BND of the last hop is where the traffic really leaves from; SOCKS4 and HTTP do not say.
      if (bound !== null && bound.host !== '0.0.0.0' && bound.host !== '::') ctx.bound = bound
      return socket
    } finally {
      deadline.clear()
    }
  }

  /** Arms `deadline` for one step of reaching a hop: missing it is that hop's failure, not the destination's. */
  handshakeStep(deadline: Deadline): void {
    const ms = Math.max(1, Math.round(Math.min(this.handshakeTimeout, deadline.remaining)))
    const bound = ms < this.handshakeTimeout ? 'what was left of the connect timeout' : 'handshakeTimeout'
    deadline.step(ms, () => new SocksError('ERR_SOCKS_PROXY_FAILED', `no answer within ${ms} ms (${bound})`, { reply: Reply.GENERAL_FAILURE }))
  }

  #awaitAnswer(deadline: Deadline): void {
    const ms = this.handshakeTimeout
    deadline.step(ms, () => {
      const err = new SocksError('ERR_SOCKS_CONNECT_TIMEOUT', `upstream ${this.last.label} gave no answer for the destination within ${ms} ms (handshakeTimeout)`)
      unanswered.add(err)
      return err
    })
  }

  /**
   * Connects to hop 1 and tunnels through every hop before hop `to` (0-based; default the last),
   * so the returned socket talks to that hop. Every failure here is ERR_SOCKS_PROXY_FAILED; each
   * step has `handshakeTimeout`.
   */
  async openTunnel(resolver: Resolver, deadline: Deadline, to: number = this.hops.length - 1): Promise<Socket> {
    const first = this.hops[0]!
    let socket: Socket
    this.handshakeStep(deadline)
    try {
      const addresses = isIP(first.host) !== 0 ? null : await resolver.resolve(first.host, { signal: deadline.signal })
      socket = await dialTcp(first.host, first.port, addresses, { signal: deadline.signal, timeout: 0 })
    } catch (err) {
      throw unavailable(`cannot reach upstream ${first.label}`, err, deadline)
    }
    socket = await this.#startTls(socket, first, deadline)
    for (let i = 1; i <= to; i++) {
      const via = this.hops[i - 1]!
      const next = this.hops[i]!
      this.handshakeStep(deadline)
      try {
        const target = await nextHopAddress(next, via.protocol, resolver, deadline.signal)
        await openHop(socket, via, target, deadline.signal)
      } catch (err) {
        socket.destroy()
        throw unavailable(`cannot reach upstream ${next.label} through ${via.label}`, err, deadline)
      }
      socket = await this.#startTls(socket, next, deadline)
    }
    return socket
  }

  /**
   * For a TLS hop, the handshake with it over `socket` (straight to it, or the tunnel to it), as a
   * step of its own: a proxy that takes the TCP connection but never finishes the handshake has
   * failed like one that never greets, and a certificate that does not verify is the upstream's
   * failure (REP 01, failover), never the destination's.
   */
  async #startTls(socket: Socket, hop: ProxyEndpoint, deadline: Deadline): Promise<Socket> {
    if (hop.tls === null) return socket
    // Nothing can be waiting unread on `socket` here: a TLS server says nothing before our
    // ClientHello, so the previous hop's answer was the last thing it carried in the clear.
    this.handshakeStep(deadline)
    try {
      return await hop.tls.connect(socket, hop.host, deadline.signal)
    } catch (err) {
      throw unavailable(`TLS with upstream ${hop.label} failed`, err, deadline)
    }
  }

  /** Classifies an error of the last hop's request (see the class comment). */
  finalFailure(err: unknown, deadline: Deadline): SocksError {
    if (deadline.abandoned) return toSocksError(err)
    if (isSocksError(err) && DESTINATION_FAILURES.has(err.code)) return err
    return unavailable(`upstream ${this.last.label} failed`, err, deadline)
  }
}

// Timeouts of a greeting-less last hop cut short because a pool had another member to ask.
const unanswered = new WeakSet<SocksError>()

/** True for a last hop's "no answer in time" that may be a slow destination or a hung upstream (see ProxyChain.dial). */
export function isUnanswered(err: SocksError): boolean {
  return unanswered.has(err)
}

/** The error of an unavailable upstream: REP 01 for the client, failover for a pool. */
export function unavailable(what: string, cause: unknown, deadline: Deadline | null): SocksError {
  // The client left: that is the story, not the upstream.
  if (deadline?.abandoned === true) return toSocksError(cause)
  const reason = cause instanceof Error ? cause.message : String(cause)
  return new SocksError('ERR_SOCKS_PROXY_FAILED', `${what}: ${reason}`, { cause, reply: Reply.GENERAL_FAILURE })
}

/** The options the SOCKS5 client takes for one hop. */
export function clientProxyOptions(hop: ProxyEndpoint, timeout = NO_CLIENT_TIMEOUT): ProxyOptions {
  const options: ProxyOptions = { host: hop.host, port: hop.port, timeout: timeout > 0 ? timeout : NO_CLIENT_TIMEOUT }
  if (hop.username !== null) {
    options.username = hop.username
    options.password = hop.password ?? ''
  }
  return options
}

/**
 * Asks `hop` (which `socket` talks to) for a tunnel to `destination`. Resolves with the address the
 * hop reports (SOCKS BND), or null when it reports none. `onGreeted` runs when a SOCKS5 hop has
 * answered the greeting (and login), before the request goes out.
 */
export async function openHop(socket: Socket, hop: ProxyEndpoint, destination: Address, signal: AbortSignal, onGreeted?: () => void): Promise<Address | null> {
  const name = `upstream ${hop.label}`
  switch (hop.protocol) {
    case 'socks5':
    case 'socks5h':
    case 'socks5s':
    case 'socks5hs': {
      const result = await socksConnect(clientProxyOptions(hop), { host: destination.host, port: destination.port }, { socket, signal, onGreeted })
      return result.bound
    }
    case 'socks4':
    case 'socks4a':
      return socks4Connect(socket, destination, hop.username ?? '', { name, signal })
    case 'http':
    case 'https':
      await httpConnect(socket, destination, hop.username, hop.password, { name, signal })
      return null
  }
}

/** True when the protocol sends names to the upstream as they are; the others need an IP from us. */
export function sendsNames(protocol: ProxyProtocol): boolean {
  return protocol === 'socks5h' || protocol === 'socks5hs' || protocol === 'socks4a' || protocol === 'http' || protocol === 'https'
}

/**
 * What the last hop is asked for, following design §7: a name some middleware resolved and vetted
 * (`ctx.resolved`) goes as its first vetted address; an unresolved name goes unchanged to
 * upstreams that resolve names themselves (socks5h, socks5hs, socks4a, http, https) and is resolved here first for
 * the others (socks5 sends the first address, socks4 the first IPv4 one).
 */
export async function destinationFor(ctx: ConnectContext, protocol: ProxyProtocol): Promise<Address> {
  const destination = ctx.destination
  const ipv4Only = protocol === 'socks4' || protocol === 'socks4a'
  if (ctx.resolved === null) {
    if (destination.type !== 'domain') {
      if (ipv4Only && destination.type === 'ipv6') throw notIPv4(protocol, destination.host)
      return destination
    }
    if (destination.host.length === 0) throw new SocksError('ERR_SOCKS_BAD_ADDRESS', 'empty domain name')
    if (sendsNames(protocol)) return destination
  }
  const addresses = await ctx.resolve()
  const chosen = ipv4Only ? addresses.find((a) => a.family === 4) : addresses[0]
  if (chosen === undefined) {
    if (addresses.length === 0) throw new SocksError('ERR_SOCKS_HOST_UNREACHABLE', `no allowed address for ${destination.host}`)
    throw notIPv4(protocol, destination.host)
  }
  return { type: chosen.family === 6 ? 'ipv6' : 'ipv4', host: chosen.address, port: destination.port }
}

/** How a hop names the next hop: as written, or resolved here when the hop needs an IP. */
async function nextHopAddress(next: ProxyEndpoint, viaProtocol: ProxyProtocol, resolver: Resolver, signal: AbortSignal): Promise<Address> {
  if (isIP(next.host) !== 0 || sendsNames(viaProtocol)) return toAddress(next.host, next.port)
  const answers = await resolver.resolve(next.host, { signal })
  const chosen = viaProtocol === 'socks4' ? answers.find((a) => a.family === 4) : answers[0]
  if (chosen === undefined) throw new SocksError('ERR_SOCKS_HOST_UNREACHABLE', `${next.host} has no usable address`)
  return toAddress(chosen.address, next.port)
}

function notIPv4(protocol: ProxyProtocol, host: string): SocksError {
  return new SocksError('ERR_SOCKS_ADDRESS_TYPE_NOT_SUPPORTED', `a ${protocol} upstream carries IPv4 destinations only; ${host} has none`)
}
