import { createSocket, type Socket as UdpSocket, type RemoteInfo } from 'node:dgram'
import { EventEmitter } from 'node:events'
import { isIP, type Socket } from 'node:net'
import { Command } from '../protocol/constants.js'
import { toAddress, unmapIPv4, type Address } from '../protocol/address.js'
import { encodeRequest } from '../protocol/request.js'
import { encodeDatagramHeader, parseDatagramHeader } from '../protocol/datagram.js'
import { Handshake, connectToProxy, prepareCredentials, type ProxyOptions } from './handshake.js'
import type { Destination } from './connect.js'

/** The second argument of `socksAssociate()`. */
export interface AssociateOptions {
  /**
   * Local IP to bind the UDP socket to. Default: the local address of the control connection, which
   * is the interface that reaches the proxy and the IP the proxy expects datagrams from (for a proxy
   * on loopback, the loopback address of the same family).
   */
  localAddress?: string
  /** Aborting fails the handshake with `signal.reason`. It has no effect once the association is up. */
  signal?: AbortSignal
  /**
   * An already-connected socket to the proxy to use as the control connection instead of dialling
   * `proxy`: a TLS socket for a proxy reached over TLS, say. It is destroyed if the handshake fails.
   * Only the control connection goes through it; the datagrams go to the relay the proxy names.
   */
  socket?: Socket
  /**
   * The hops after this proxy, in order, each already associated through a tunnel across the
   * hops before it (`socksAssociateHop`): this proxy's relay carries datagrams for the first
   * one's relay, that one for the next, and the last one's for their destinations. The
   * association owns their control connections from the call on: they are closed with it (also
   * when this call fails, however early), and any of them closing ends it.
   */
  chain?: readonly UdpRelayHop[]
}

/**
 * A UDP ASSOCIATE granted by a proxy further along a chain (`socksAssociateHop`): its relay, and
 * the control connection (through the earlier hops) whose life is the grant's.
 */
export interface UdpRelayHop {
  /** BND.ADDR/BND.PORT of the reply: as the previous hop reaches it, not necessarily as we could. */
  readonly relay: Address
  /** The TCP connection to this proxy (through the earlier hops): closing it ends the grant. */
  readonly control: Socket
}

/** The second argument of `socksAssociateHop()`. */
export interface AssociateHopOptions {
  /** The control connection: a connected socket to this proxy, normally a tunnel through the hops before it. Destroyed if the handshake fails. */
  socket: Socket
  /** Aborting fails the handshake with `signal.reason`. It has no effect once the relay is granted. */
  signal?: AbortSignal
}

/** The events of a `ClientUdpAssociation`. */
export type UdpAssociationEvents = {
  /** A datagram from `from`, relayed by the proxy; `data` is a view into the received packet. */
  message: [data: Buffer, from: Address]
  /** The association is over: the control connection closed or `close()` was called. */
  close: []
  /** A send failed and no callback was given to `send`. */
  error: [err: Error]
}

/**
 * A live UDP ASSOCIATE: datagrams go through the proxy's relay for as long as the control
 * connection is open (RFC 1928 §7).
 */
export class ClientUdpAssociation extends EventEmitter<UdpAssociationEvents> {
  /** Where datagrams are sent: BND.ADDR/BND.PORT of the reply, with an unspecified BND.ADDR replaced by the proxy's IP. */
  readonly relay: Address
  /** The TCP connection whose lifetime is the association's lifetime. */
  readonly control: Socket
  /** The hops after the first one (`AssociateOptions.chain`); empty for a single proxy. */
  readonly chain: readonly UdpRelayHop[]
  readonly #udp: UdpSocket
  // Only datagrams from the relay are accepted; a domain relay cannot be checked without a lookup.
  readonly #pinned: boolean
  /**
   * Through a chain: the headers that address each next relay, joined once here, so a datagram
   * costs one header (for its destination) whatever the chain's length. An answer comes back
   * wrapped in the same headers, each naming the relay it came from.
   */
  readonly #prefix: Buffer | null
  #closed = false

  /** @internal Use `socksAssociate`. */
  constructor(control: Socket, udp: UdpSocket, relay: Address, chain: readonly UdpRelayHop[] = []) {
    super()
    this.control = control
    this.relay = relay
    this.chain = chain
    this.#udp = udp
    this.#pinned = relay.type !== 'domain'
    this.#prefix = chain.length === 0 ? null : Buffer.concat(chain.map((hop) => encodeDatagramHeader(hop.relay)))
    udp.on('message', this.#onMessage)
    udp.on('error', this.#onError)
    watchControl(control, this.close)
    // Only the first control connection reports the end: every other one closing closes it.
    control.on('close', this.#onControlClose)
    for (const hop of chain) {
      watchControl(hop.control, this.close)
      hop.control.on('close', this.close)
      // Gone before we got here (between its grant and ours): nothing would ever tell us.
      if (hop.control.destroyed) queueMicrotask(this.close)
    }
  }

  /** The local address and port of the UDP socket. */
  address(): { address: string; family: string; port: number } {
    return this.#udp.address()
  }

  /**
   * Sends `data` to `destination` through the relay. Header and payload go out as a buffer list,
   * never joined. Errors go to `callback`, or are emitted as 'error' without one (as with dgram).
   *
   * @example
   * association.send(Buffer.from('ping'), { host: '1.1.1.1', port: 53 })
   */
  send(data: Uint8Array, destination: Destination, callback?: (err: Error | null) => void): void {
    if (this.#closed) {
      const err = new Error('UDP association is closed')
      if (callback) queueMicrotask(() => callback(err))
      else queueMicrotask(() => this.emit('error', err))
      return
    }
    const header = encodeDatagramHeader(toAddress(destination.host, destination.port))
    const prefix = this.#prefix
    this.#udp.send(prefix === null ? [header, data] : [prefix, header, data], this.relay.port, this.relay.host, callback ?? this.#onSent)
  }

  /** Closes the UDP socket and every control connection; 'close' is emitted once. */
  readonly close = (): void => {
    if (this.#closed) return
    this.#closed = true
    this.#udp.close()
    this.control.destroy()
    for (const hop of this.chain) hop.control.destroy()
  }

  readonly #onMessage = (packet: Buffer, rinfo: RemoteInfo): void => {
    if (this.#pinned && (rinfo.port !== this.relay.port || unmapIPv4(rinfo.address) !== this.relay.host)) return
    const start = this.#prefix === null ? 0 : this.#unwrap(packet)
    if (start < 0) return
    const header = parseDatagramHeader(packet, start)
    // This client never fragments, so it has no reassembly buffer either: fragments are dropped (§7 allows it).
    if (header === null || header.frag !== 0) return
    this.emit('message', packet.subarray(header.headerLength), header.address)
  }

  /**
   * Where the innermost header starts, or -1 to drop the packet: every outer header must name the
   * relay it came from (the next hop's), so nobody else who can reach a relay of the chain can pass
   * as a peer. Usually the hops write those headers byte for byte as we wrote ours (compared without
   * a copy); a hop that words an address differently (IPv4 as an IPv4-mapped IPv6) is read header
   * by header. A relay named by a domain cannot be checked without a lookup, so its header is not.
   */
  #unwrap(packet: Buffer): number {
    const prefix = this.#prefix!
    if (packet.length > prefix.length && prefix.compare(packet, 0, prefix.length) === 0) return prefix.length
    let offset = 0
    for (const { relay } of this.chain) {
      const header = parseDatagramHeader(packet, offset)
      if (header === null || header.frag !== 0) return -1
      const from = header.address
      if (relay.type !== 'domain' && (from.port !== relay.port || unmapIPv4(from.host) !== relay.host)) return -1
      offset = header.headerLength
    }
    return offset
  }

  readonly #onSent = (err: Error | null): void => {
    if (err !== null) this.emit('error', err)
  }

  readonly #onError = (err: Error): void => {
    this.emit('error', err)
  }

  readonly #onControlClose = (): void => {
    this.close()
    this.emit('close')
  }
}

/** How the end of a control connection is noticed. */
function watchControl(control: Socket, close: () => void): void {
  control.on('end', close)
  // A reset control connection is an ordinary way for an association to end; 'close' follows.
  control.on('error', noop)
  // The proxy sends nothing more on the control connection; reading is only how its close is noticed.
  control.resume()
}

/**
 * Sets up a UDP relay through a SOCKS5 proxy (RFC 1928 UDP ASSOCIATE). The UDP socket is bound first
 * and its real port is announced in the request (DST.ADDR unspecified), so the proxy can tell our
 * datagrams apart from anyone else's on the same host.
 *
 * Rejects like `socksConnect` does.
 *
 * @example
 * const association = await socksAssociate({ host: '127.0.0.1', port: 1080 })
 * association.on('message', (data, from) => console.log(from.host, data))
 * association.send(dnsQuery, { host: '1.1.1.1', port: 53 })
 * // later
 * association.close()
 */
export async function socksAssociate(proxy: ProxyOptions, options: AssociateOptions = {}): Promise<ClientUdpAssociation> {
  let credentials: Buffer | null
  try {
    options.signal?.throwIfAborted()
    credentials = prepareCredentials(proxy)
  } catch (err) {
    // The chain's control connections are ours from the call on, whatever fails.
    releaseChain(options.chain)
    throw err
  }
  const handshake = new Handshake(options.socket ?? connectToProxy(proxy), proxy, options.signal)
  const bound: { udp: UdpSocket | null } = { udp: null }
  try {
    const relay = await handshake.negotiate(credentials, Command.UDP_ASSOCIATE, async () => {
      // Called after the greeting was answered, so the control connection's local address is known.
      const local = options.localAddress ?? unmapIPv4(handshake.socket.localAddress ?? '127.0.0.1')
      const udp = (bound.udp = await bindUdp(local))
      const { family, port } = udp.address()
      return encodeRequest(Command.UDP_ASSOCIATE, toAddress(family === 'IPv6' ? '::' : '0.0.0.0', port))
    })
    const control = handshake.finish()
    return new ClientUdpAssociation(control, bound.udp!, relayAddress(relay, control.remoteAddress), options.chain)
  } catch (err) {
    handshake.fail(err)
    bound.udp?.close()
    releaseChain(options.chain)
    throw err
  }
}

function releaseChain(chain: readonly UdpRelayHop[] | undefined): void {
  for (const hop of chain ?? []) hop.control.destroy()
}

/**
 * UDP ASSOCIATE with a proxy further along a chain, over `options.socket` (a tunnel to it through
 * the hops before it): the relay it grants goes to `socksAssociate`'s `chain`, which wraps every
 * datagram once per hop. No UDP socket of ours is bound for it, since its datagrams come from the
 * previous hop's relay, and the request says so with DST.ADDR and DST.PORT all zeros (RFC 1928 §7:
 * the client does not know them); the proxy then takes them from the first datagram. An unspecified
 * BND.ADDR in the reply stands for `proxy.host`, where the previous hop reached it.
 *
 * Rejects like `socksConnect` does.
 *
 * @example
 * // Datagrams through hop1, then hop2: hop2's control connection is a tunnel through hop1.
 * const tunnel = await socksConnect(hop1, { host: hop2.host, port: hop2.port })
 * const second = await socksAssociateHop(hop2, { socket: tunnel.socket })
 * const association = await socksAssociate(hop1, { chain: [second] })
 */
export async function socksAssociateHop(proxy: ProxyOptions, options: AssociateHopOptions): Promise<UdpRelayHop> {
  options.signal?.throwIfAborted()
  const credentials = prepareCredentials(proxy)
  const handshake = new Handshake(options.socket, proxy, options.signal)
  try {
    const relay = await handshake.negotiate(credentials, Command.UDP_ASSOCIATE, UNKNOWN_SENDER)
    const control = handshake.finish()
    // Until the association takes it over, a reset must not be an uncaught 'error'.
    control.on('error', noop)
    return { relay: relayAddress(relay, proxy.host), control }
  } catch (err) {
    handshake.fail(err)
    throw err
  }
}

// UDP ASSOCIATE from an address and port we cannot know (RFC 1928 §7: all zeros).
const UNKNOWN_SENDER = encodeRequest(Command.UDP_ASSOCIATE, toAddress('0.0.0.0', 0))

// Many servers answer BND.ADDR 0.0.0.0 meaning "the address you reached me at".
function relayAddress(relay: Address, reachedAt: string | undefined): Address {
  if (relay.host !== '0.0.0.0' && relay.host !== '::') return relay
  return toAddress(unmapIPv4(reachedAt ?? relay.host), relay.port)
}

function bindUdp(localAddress: string): Promise<UdpSocket> {
  const udp = createSocket(isIP(localAddress) === 6 ? 'udp6' : 'udp4')
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      udp.close()
      reject(err)
    }
    udp.once('error', onError)
    udp.bind(0, localAddress, () => {
      udp.off('error', onError)
      resolve(udp)
    })
  })
}

function noop(): void {}
