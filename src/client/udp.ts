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
  readonly #udp: UdpSocket
  // Only datagrams from the relay are accepted; a domain relay cannot be checked without a lookup.
  readonly #pinned: boolean
  #closed = false

  /** @internal Use `socksAssociate`. */
  constructor(control: Socket, udp: UdpSocket, relay: Address) {
    super()
    this.control = control
    this.relay = relay
    this.#udp = udp
    this.#pinned = relay.type !== 'domain'
    udp.on('message', this.#onMessage)
    udp.on('error', this.#onError)
    control.on('end', this.close)
    // A reset control connection is an ordinary way for an association to end; 'close' follows.
    control.on('error', noop)
    control.on('close', this.#onControlClose)
    // The proxy sends nothing more on the control connection; reading is only how its close is noticed.
    control.resume()
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
    this.#udp.send([header, data], this.relay.port, this.relay.host, callback ?? this.#onSent)
  }

  /** Closes the UDP socket and the control connection; 'close' is emitted once. */
  readonly close = (): void => {
    if (this.#closed) return
    this.#closed = true
    this.#udp.close()
    this.control.destroy()
  }

  readonly #onMessage = (packet: Buffer, rinfo: RemoteInfo): void => {
    if (this.#pinned && (rinfo.port !== this.relay.port || unmapIPv4(rinfo.address) !== this.relay.host)) return
    const header = parseDatagramHeader(packet)
    // This client never fragments, so it has no reassembly buffer either: fragments are dropped (§7 allows it).
    if (header === null || header.frag !== 0) return
    this.emit('message', packet.subarray(header.headerLength), header.address)
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
  options.signal?.throwIfAborted()
  const credentials = prepareCredentials(proxy)
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
    return new ClientUdpAssociation(control, bound.udp!, relayAddress(relay, control))
  } catch (err) {
    handshake.fail(err)
    bound.udp?.close()
    throw err
  }
}

// Many servers answer BND.ADDR 0.0.0.0 meaning "the address you reached me at".
function relayAddress(relay: Address, control: Socket): Address {
  if (relay.host !== '0.0.0.0' && relay.host !== '::') return relay
  return toAddress(unmapIPv4(control.remoteAddress ?? relay.host), relay.port)
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
