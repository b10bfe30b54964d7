import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram'
import { once } from 'node:events'
import { isIP } from 'node:net'
import type { ConnectionContext, DatagramContext, DatagramDirection, Endpoint, SocksState, UdpAssociation } from '../core/context.js'
import type { CompiledChain } from '../core/compose.js'
import { encodeDatagramHeader, parseDatagramHeader } from '../protocol/datagram.js'
import { toAddress, unmapIPv4, type Address } from '../protocol/address.js'
import { SocksError } from '../core/errors.js'
import { isLogLevelEnabled, type Logger } from '../ops/logger.js'
import { dialableIp } from '../net/destination.js'
import { toAsciiDomainName } from '../protocol/domain-name.js'
import { clientGroup } from '../core/client-group.js'

export type { DatagramContext, DatagramDirection } from '../core/context.js'

export interface UdpAssociationOptions {
  /** Milliseconds without a datagram before the association (and its control connection) ends. */
  readonly idleTimeout: number
  /** Accept inbound datagrams from any peer, not only from peers the client has sent to. */
  readonly acceptFromAnyPeer: boolean
  /** Datagrams queued in one socket's send queue beyond which new ones are dropped (UDP backpressure). */
  readonly maxSendQueue: number
  /** Milliseconds a datagram waits for its destination name to resolve before it is dropped. */
  readonly lookupTimeout: number
  /** Lookups in flight over all associations of the server (shared by them). */
  readonly lookups: LookupBudget
}

/**
 * Name lookups that datagrams may have in flight at once, over all associations of a server. Each
 * pending lookup holds its datagram, so this bounds memory as well as resolver work; datagrams
 * beyond it are dropped (and counted as dropped).
 */
export class LookupBudget {
  readonly max: number
  inFlight = 0
  constructor(max: number) {
    this.max = max
  }
}

/** Lookups one association may have in flight; datagrams beyond are dropped. */
const MAX_LOOKUPS_PER_ASSOCIATION = 8

/** A datagram waiting for its destination name: what close() releases. */
class PendingLookup {
  readonly controller = new AbortController()
  timer: NodeJS.Timeout | null = null
}

// How many distinct peers an association remembers (for inbound filtering and header reuse).
const MAX_PEERS = 1024

/**
 * UDP ASSOCIATE (RFC 1928 §7). The client-facing socket is bound to the local IP of the control
 * connection, so the reply names an address the client can reach. Datagrams are accepted only
 * from the client's IP (and port, once known or declared); outbound traffic leaves through one
 * socket per family bound to the wildcard address, because the client-facing IP (often loopback)
 * cannot reach every destination. Inbound datagrams are accepted only from peers the client has
 * sent to, unless `acceptFromAnyPeer`.
 */
export class ServerUdpAssociation implements UdpAssociation {
  readonly id: number
  /** The control connection's client endpoint. */
  readonly client: Endpoint
  readonly user: string | null
  readonly state: SocksState
  readonly ctx: ConnectionContext
  /** Datagrams forwarded each way, and dropped. */
  datagramsOut = 0
  datagramsIn = 0
  datagramsDropped = 0
  #clientSocket: UdpSocket
  #clientPort: number
  #out4: UdpSocket | null = null
  #out6: UdpSocket | null = null
  #peers = new Map<string, Buffer | null>()
  #chain: CompiledChain<DatagramContext> | null
  #options: UdpAssociationOptions
  #activity = 0
  #lastActivity = -1
  #idleTimer: NodeJS.Timeout | null = null
  #closed = false
  #onClose: () => void
  readonly #lookups = new Set<PendingLookup>()
  #clientGroup: string | null = null

  constructor(ctx: ConnectionContext, chain: CompiledChain<DatagramContext> | null, options: UdpAssociationOptions, onClose: () => void) {
    this.id = ctx.id
    this.ctx = ctx
    this.client = ctx.client
    this.user = ctx.user
    this.state = ctx.state
    this.#chain = chain
    this.#options = options
    this.#onClose = onClose
    // The request's DST.PORT, when not zero, is the port the client will send from.
    this.#clientPort = ctx.destination.port
    this.#clientSocket = createSocket({ type: ctx.local.family === 6 ? 'udp6' : 'udp4' })
  }

  /** Binds the client-facing socket; returns the address for the reply's BND fields. */
  async open(): Promise<Address> {
    const socket = this.#clientSocket
    socket.on('error', noop)
    socket.on('message', (msg, rinfo) => this.#fromClient(msg, rinfo))
    socket.bind({ address: this.ctx.local.address, port: 0, exclusive: true })
    await once(socket, 'listening')
    const info = socket.address()
    if (this.#options.idleTimeout > 0) this.#idleTimer = setTimeout(() => this.#checkIdle(), this.#options.idleTimeout)
    return toAddress(unmapIPv4(info.address), info.port)
  }

  get closed(): boolean {
    return this.#closed
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#idleTimer !== null) clearTimeout(this.#idleTimer)
    this.#clientSocket.close()
    this.#out4?.close()
    this.#out6?.close()
    this.#peers.clear()
    // Lookups still pending end now: their datagrams are dropped, nothing of them is kept.
    for (const lookup of this.#lookups) lookup.controller.abort(ASSOCIATION_CLOSED)
    this.#onClose()
  }

  #checkIdle(): void {
    if (this.#closed) return
    if (this.#activity === this.#lastActivity) {
      if (isLogLevelEnabled(this.ctx.log, 'debug')) this.ctx.log.debug('udp association idle', { id: this.id })
      this.close()
      return
    }
    this.#lastActivity = this.#activity
    this.#idleTimer = setTimeout(() => this.#checkIdle(), this.#options.idleTimeout)
  }

  #fromClient(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.#closed) return
    // Only the client's own IP may use the association; anyone else is dropped without a word.
    if (unmapIPv4(rinfo.address) !== this.client.address) return this.#drop()
    if (this.#clientPort === 0) this.#clientPort = rinfo.port
    else if (rinfo.port !== this.#clientPort) return this.#drop()
    const header = parseDatagramHeader(msg)
    // Fragmentation is optional (RFC 1928 §7) and not implemented: FRAG ≠ 0 is dropped.
    if (header === null || header.frag !== 0) return this.#drop()
    this.#activity++
    // As for CONNECT, what the rules see is what is sent to (destination.ts): no name that is not
    // one, unspecified addresses as the loopback they reach.
    const peer = vetPeer(header.address)
    if (peer === null) return this.#drop()
    const data = msg.subarray(header.headerLength)
    if (this.#chain === null) {
      if (peer.type === 'domain') void this.#resolveAndSend(peer, data)
      else this.#sendOut(peer, data)
      return
    }
    void this.#runChain('out', peer, data)
  }

  async #runChain(direction: DatagramDirection, peer: Address, data: Buffer): Promise<void> {
    const dctx = new PacketContext(this, direction, peer, data)
    try {
      await this.#chain!(dctx)
    } catch (err) {
      // A datagram middleware failing drops that packet; the association lives on.
      if (isLogLevelEnabled(this.ctx.log, 'debug')) this.ctx.log.debug('datagram dropped by middleware error', { id: this.id, error: String(err) })
      return this.#drop()
    }
    if (dctx.consumed) {
      if (direction === 'out') this.datagramsOut++
      else this.datagramsIn++
      return
    }
    if (dctx.dropped || this.#closed) return this.#drop()
    if (direction === 'in') return this.#sendToClient(dctx.peer, dctx.data)
    if (dctx.peer.type === 'domain') return this.#resolveAndSend(dctx.peer, dctx.data)
    this.#sendOut(dctx.peer, dctx.data)
  }

  /**
   * @internal used by the datagram context. Resolves a domain peer to its first dialable address.
   * Every lookup is bounded: at most MAX_LOOKUPS_PER_ASSOCIATION per association and
   * `options.lookups.max` per server in flight (beyond: rejected, so the datagram is dropped), a
   * deadline of `lookupTimeout`, and an abort when the association closes.
   */
  async resolvePeer(peer: Address): Promise<Address> {
    if (peer.type !== 'domain') return { type: peer.type, host: dialableIp(peer.host), port: peer.port }
    const name = toAsciiDomainName(peer.host)
    if (name === null) throw new SocksError('ERR_SOCKS_BAD_ADDRESS', `not a valid domain name: ${JSON.stringify(peer.host)}`)
    const budget = this.#options.lookups
    if (this.#closed) throw ASSOCIATION_CLOSED
    if (this.#lookups.size >= MAX_LOOKUPS_PER_ASSOCIATION || budget.inFlight >= budget.max) throw TOO_MANY_LOOKUPS
    const lookup = new PendingLookup()
    this.#lookups.add(lookup)
    budget.inFlight++
    const signal = lookup.controller.signal
    if (this.#options.lookupTimeout > 0) lookup.timer = setTimeout(abortLookup, this.#options.lookupTimeout, lookup.controller)
    this.#clientGroup ??= clientGroup(this.client.address, this.ctx.settings.clientPrefix)
    let answers: readonly { address: string; family: 4 | 6 }[]
    try {
      answers = await raceAbort(this.ctx.settings.resolver.resolve(name, { signal, client: this.#clientGroup, kind: 'datagram' }), signal)
    } finally {
      if (lookup.timer !== null) clearTimeout(lookup.timer)
      this.#lookups.delete(lookup)
      budget.inFlight--
    }
    for (const answer of answers) {
      let host: string
      try {
        host = dialableIp(answer.address)
      } catch {
        continue
      }
      return { type: answer.family === 6 ? 'ipv6' : 'ipv4', host, port: peer.port }
    }
    throw new SocksError('ERR_SOCKS_HOST_UNREACHABLE', `${peer.host} has no address`)
  }

  async #resolveAndSend(peer: Address, data: Buffer): Promise<void> {
    let resolved: Address
    try {
      resolved = await this.resolvePeer(peer)
    } catch {
      return this.#drop()
    }
    if (!this.#closed) this.#sendOut(resolved, data)
  }

  #sendOut(peer: Address, data: Buffer): void {
    const family = isIP(peer.host)
    if (family === 0 || peer.port === 0) return this.#drop()
    // A middleware may have rewritten the peer after the core vetted it.
    let host: string
    try {
      host = dialableIp(peer.host)
    } catch {
      return this.#drop()
    }
    const socket = family === 6 ? (this.#out6 ??= this.#openOut('udp6')) : (this.#out4 ??= this.#openOut('udp4'))
    if (socket.getSendQueueCount() > this.#options.maxSendQueue) return this.#drop()
    const key = peerKey(unmapIPv4(host), peer.port)
    if (!this.#peers.has(key)) this.#rememberPeer(key, null)
    this.datagramsOut++
    socket.send(data, peer.port, host)
  }

  #openOut(type: 'udp4' | 'udp6'): UdpSocket {
    const socket = createSocket({ type })
    socket.on('error', noop)
    socket.on('message', (msg, rinfo) => this.#fromPeer(msg, rinfo))
    // Binding happens implicitly on first send, to the wildcard address and an ephemeral port.
    return socket
  }

  #fromPeer(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.#closed || this.#clientPort === 0) return this.#drop()
    const host = unmapIPv4(rinfo.address)
    const key = peerKey(host, rinfo.port)
    let header = this.#peers.get(key)
    if (header === undefined) {
      if (!this.#options.acceptFromAnyPeer) return this.#drop()
      header = null
    }
    this.#activity++
    if (this.#chain !== null) {
      void this.#runChain('in', toAddress(host, rinfo.port), msg)
      return
    }
    if (header === null) {
      header = encodeDatagramHeader(toAddress(host, rinfo.port))
      this.#rememberPeer(key, header)
    }
    this.#sendRaw(header, msg)
  }

  /**
   * Sends `data` to the client as if it came from `peer` (for middleware that forwards datagrams
   * itself, such as the upstream plugin relaying through another proxy).
   */
  sendToClient(peer: Address, data: Buffer): void {
    if (this.#closed || this.#clientPort === 0) return this.#drop()
    this.#activity++
    // Inbound middleware (rules, accounting) sees these datagrams like any other.
    if (this.#chain !== null) void this.#runChain('in', peer, data)
    else this.#sendToClient(peer, data)
  }

  #sendToClient(peer: Address, data: Buffer): void {
    const key = peerKey(peer.host, peer.port)
    let header = this.#peers.get(key)
    if (header == null) {
      header = encodeDatagramHeader(peer)
      this.#rememberPeer(key, header)
    }
    this.#sendRaw(header, data)
  }

  #sendRaw(header: Buffer, data: Buffer): void {
    const socket = this.#clientSocket
    if (socket.getSendQueueCount() > this.#options.maxSendQueue) return this.#drop()
    this.datagramsIn++
    // Header and payload go out as a list: the payload is never copied into a joined buffer.
    socket.send([header, data], this.#clientPort, this.client.address)
  }

  #rememberPeer(key: string, header: Buffer | null): void {
    const peers = this.#peers
    if (peers.size >= MAX_PEERS && !peers.has(key)) {
      const oldest = peers.keys().next().value
      if (oldest !== undefined) peers.delete(oldest)
    }
    peers.set(key, header)
  }

  #drop(): void {
    this.datagramsDropped++
  }
}

class PacketContext implements DatagramContext {
  readonly association: ServerUdpAssociation
  readonly direction: DatagramDirection
  peer: Address
  data: Buffer
  dropped = false
  consumed = false

  constructor(association: ServerUdpAssociation, direction: DatagramDirection, peer: Address, data: Buffer) {
    this.association = association
    this.direction = direction
    this.peer = peer
    this.data = data
  }

  // Getters on the prototype: a packet context stays four fields, created per datagram.
  get id(): number {
    return this.association.id
  }

  get user(): string | null {
    return this.association.user
  }

  get log(): Logger {
    return this.association.ctx.log
  }

  async resolvePeer(): Promise<Address> {
    this.peer = await this.association.resolvePeer(this.peer)
    return this.peer
  }

  drop(): void {
    this.dropped = true
  }

  consume(): void {
    this.consumed = true
  }
}

/** The peer of an outbound datagram as it will be sent to, or null when it is no destination at all. */
function vetPeer(address: Address): Address | null {
  if (address.type === 'domain') {
    const host = toAsciiDomainName(address.host)
    if (host === null) return null
    return host === address.host ? address : { type: 'domain', host, port: address.port }
  }
  let host: string
  try {
    host = dialableIp(address.host)
  } catch {
    return null
  }
  return host === address.host ? address : { type: isIP(host) === 6 ? 'ipv6' : 'ipv4', host, port: address.port }
}

/** A resolver that ignores the signal still cannot hold the datagram past its deadline. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason)
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}

function abortLookup(controller: AbortController): void {
  controller.abort(LOOKUP_TIMED_OUT)
}

const ASSOCIATION_CLOSED = new SocksError('ERR_SOCKS_CLIENT_CLOSED', 'UDP association closed')
const TOO_MANY_LOOKUPS = new SocksError('ERR_SOCKS_HOST_UNREACHABLE', 'too many datagram name lookups in flight')
const LOOKUP_TIMED_OUT = new SocksError('ERR_SOCKS_HOST_UNREACHABLE', 'datagram name lookup timed out')

function peerKey(host: string, port: number): string {
  return `${host}|${port}`
}

function noop(): void {}
