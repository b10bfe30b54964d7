import type { Socket } from 'node:net'
import { Command, commandName, Method, type CommandName } from '../protocol/constants.js'
import type { Address } from '../protocol/address.js'
import type { MessageParser } from '../protocol/reader.js'
import type { ResolvedAddress, ResolveOptions, Resolver } from '../net/resolver.js'
import type { Logger } from '../ops/logger.js'
import { isSocksError, SocksError } from './errors.js'
import { dialableIp, vetDomainName } from '../net/destination.js'
import { clientGroup, type ClientPrefix } from './client-group.js'
import { addTap, addThrottle, type RelaySide, type RelayTap } from '../commands/relay.js'
import type { TokenBucket } from '../commands/token-bucket.js'
import type { HttpExchange } from '../commands/http-forward.js'

// This module is the contract between the core, the commands and the plugins: the phase contexts
// and the interfaces they mention (dialer, binder, UDP association, the settings of a pipeline, the
// server as a connection sees it). They refer to each other, so they live together; everything
// that implements them (server, pipeline, dialers, the UDP association) imports from here, and
// this module imports none of them.

/** Every wait has a bound. Milliseconds; 0 disables a timeout (not recommended). */
export interface Timeouts {
  /** From accept to the end of the request phase, as a deadline (slowloris guard). Default 10 s. */
  handshake: number
  /** The connect phase: DNS, the dial, upstream hops (REP 06 when it passes). Default 10 s. */
  connect: number
  /** Relay with no byte either way; checked every quarter of it, so the close comes 1 to 1¼ timeouts after the last byte. Default 1 h. */
  idle: number
  /** BIND: waiting for the inbound connection. Default 60 s. */
  bindAccept: number
  /** UDP association with no datagram either way. Default 2 min. */
  udpIdle: number
  /** close(): how long live connections may finish before they are destroyed. Default 10 s. */
  drain: number
}

/** UDP ASSOCIATE settings of a pipeline. */
export interface UdpSettings {
  /** Accept inbound datagrams from peers the client never sent to. */
  readonly acceptFromAnyPeer: boolean
  /** Datagrams queued per UDP socket before new ones are dropped. */
  readonly maxSendQueue: number
  /** Live UDP associations per client (see `clientPrefix`). */
  readonly maxAssociationsPerClient: number
}

/**
 * Everything a connection's behaviour depends on besides its chains, fixed when the pipeline is
 * built (server options plus what plugins set up: resolver, dialer, whether auth is required).
 * Frozen: a connection reads it for its whole life, and a reload swaps in a new one for new
 * connections only.
 */
export interface PipelineSettings {
  readonly timeouts: Readonly<Timeouts>
  readonly resolver: Resolver
  readonly dialer: Dialer
  /** A plugin called `requireAuth()`: NO AUTH is no longer accepted by default. */
  readonly authRequired: boolean
  readonly allowOpenProxy: boolean
  readonly accessLog: boolean
  /** The relay's fast read path (managed read buffers) is used (`fastRelay`, `SOCKSMITH_FAST_RELAY`). */
  readonly fastRelay: boolean
  readonly maxConnections: number
  /** 0: no limit. */
  readonly maxConnectionsPerClient: number
  readonly clientPrefix: Readonly<ClientPrefix>
  readonly udp: UdpSettings
}

/** The server a connection belongs to, as middleware and plugins see it. */
export interface ServerHandle {
  readonly log: Logger
  /** Live connections over all listeners. */
  readonly connections: number
  /**
   * Ends the live connections `select` picks (for example those of a user who lost access), as a
   * forced close does. Returns how many were ended.
   */
  destroyConnections(select: (ctx: BaseContext & { readonly user: string | null }) => boolean, reason?: unknown): number
}

/** What a `Dialer` is given besides the connection: when to give up. */
export interface DialOptions {
  /** Aborts the dial (the client left). */
  readonly signal: AbortSignal
  /** Connect timeout in milliseconds; 0 disables it. */
  readonly timeout: number
}

/**
 * Opens the outgoing TCP connection of a CONNECT. The direct dialer connects to the destination;
 * the upstream plugin's dialers tunnel through other proxies. A dialer resolves the destination only
 * if it needs an IP (`ctx.resolve()`); if a middleware already resolved and vetted it, `ctx.resolved`
 * holds the addresses it may use.
 */
export interface Dialer {
  /** Opens the outgoing connection for `ctx.destination`; rejects with an errno or a SocksError (its REP goes to the client). */
  dial(ctx: ConnectContext, options: DialOptions): Promise<Socket>
  /**
   * A socket this dialer opened for a forwarded plain HTTP request may carry the next request of
   * the same client connection (origin connection reuse), when that request's connect phase, after
   * all its middleware ran, ends with this same dialer object and the same `ctx.user`,
   * `ctx.destination` and `ctx.resolved`. Say true only if what the dialer connects to depends on
   * nothing else (not on `ctx.state`, for one). Default false: every request gets a dial of its
   * own. The direct dialer's sockets are reused when the peer is among the addresses vetted for
   * the new request.
   */
  readonly reusable?: boolean
}

/**
 * Sets up a BIND somewhere else than on this server (for example on another proxy, through a tunnel).
 * It runs where the server's own BIND would, after every connect middleware, so the checks they
 * installed (`ctx.acceptBindPeer`) and their refusals apply to it too. It sends the first reply
 * with `ctx.sendFirstBindReply`, waits for the peer (asking `ctx.acceptBindPeer`), then sets
 * `ctx.outbound` to the peer's stream and `ctx.bound` to the peer's address.
 */
export interface Binder {
  /** Sets the BIND up: first reply, wait for the peer, then `ctx.outbound` and `ctx.bound`. */
  bind(ctx: ConnectContext): Promise<void>
}

/** A datagram's direction: `out` from the client towards a peer, `in` from a peer back to the client. */
export type DatagramDirection = 'out' | 'in'

/** A UDP ASSOCIATE on this server: what middleware may read of it and do with it. */
export interface UdpAssociation {
  /** The id of its control connection. */
  readonly id: number
  /** The control connection's client endpoint. */
  readonly client: Endpoint
  readonly user: string | null
  /** The control connection's state. */
  readonly state: SocksState
  /** The control connection's context. */
  readonly ctx: BaseContext
  /** Datagrams forwarded each way, and dropped. */
  readonly datagramsOut: number
  readonly datagramsIn: number
  readonly datagramsDropped: number
  readonly closed: boolean
  /**
   * Sends `data` to the client as if it came from `peer` (for middleware that forwards datagrams
   * itself, such as the upstream plugin relaying through another proxy). Inbound middleware sees it
   * like any other datagram.
   */
  sendToClient(peer: Address, data: Buffer): void
  /** Ends the association (and with it its control connection). */
  close(): void
}

/** `datagram` phase context: one per packet, and only when the datagram chain is not empty. */
export interface DatagramContext {
  /** The association's id: the id of its control connection. */
  readonly id: number
  /** The user of the control connection (null without authentication). */
  readonly user: string | null
  readonly log: Logger
  /** The association this packet belongs to: its client, user, state, counters and `sendToClient()`. */
  readonly association: UdpAssociation
  readonly direction: DatagramDirection
  /** For `out`, the destination (rewrite it to reroute); for `in`, the peer that sent it. */
  peer: Address
  /** The payload: a view into the received packet, not a copy. Replace it to rewrite the payload. */
  data: Buffer
  /**
   * Resolves a domain `peer` with the pipeline's resolver and replaces `peer` with the first
   * dialable address, which it returns. (Unlike `ConnectContext.resolve()`, which keeps every
   * answer for the dialer to race, a datagram goes to one address.)
   * Bounded like the core's own datagram lookups (a deadline, a cap per association and per
   * server); over the cap or past the deadline it rejects and the packet is dropped.
   */
  resolvePeer(): Promise<Address>
  /** Drops this packet. */
  drop(): void
  readonly dropped: boolean
  /**
   * Takes the packet: the middleware delivered it itself (for example through an upstream relay),
   * so the association neither forwards it nor counts it as dropped.
   */
  consume(): void
  readonly consumed: boolean
}

/**
 * Per-connection plugin data. Extend it by declaration merging and declare the initial value in
 * your plugin's setup, so every state object has the same shape:
 *
 * @example
 * declare module 'socksmith' { interface SocksState { bytesQuota: number | null } }
 * host.declareState('bytesQuota', null)
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface SocksState {}

/** One end of a TCP connection. IPv4-mapped IPv6 addresses are reported as plain IPv4. */
export interface Endpoint {
  readonly address: string
  readonly port: number
  readonly family: 4 | 6
}

/** Username and password from the RFC 1929 sub-negotiation. The password is not enumerable. */
export interface Credentials {
  readonly username: string
  readonly password: string
}

/** The hooks a connection driver gives its context (internal). */
export interface ConnectionDriver {
  readMessage<T>(parser: MessageParser<T>): Promise<T>
  hijack(): Socket
  sendFirstBindReply(bound: Address): void
  /** True once the connection failed or closed: a terminal finishing late releases what it made. */
  readonly finished: boolean
  /** Ends the connection now with `reason` as its error (ctx.close, a forced close). */
  destroy(reason: unknown): void
}

/**
 * The protocol a client speaks: `socks5`, or on a listener whose `protocols` allow it `socks4`
 * (SOCKS4 and SOCKS4a) or `http` (an HTTP proxy client: a CONNECT, or one forwarded plain request
 * such as `GET http://host/path`, which is a connection of its own).
 */
export type ClientProtocol = 'socks5' | 'socks4' | 'http'

/** `ctx.tls`: what the TLS handshake of a connection to a TLS listener settled. */
export interface TlsInfo {
  /** The protocol version, as `TLSv1.3`. */
  readonly protocol: string
  /** The name the client asked for (SNI), or null when it sent none. */
  readonly servername: string | null
  /** True when the client presented a certificate that verified against the listener's `ca` (only with `requestCert`). */
  readonly authorized: boolean
  /** The verified client certificate's subject CN, or null (no certificate, or none asked for). */
  readonly commonName: string | null
  /** Its subjectAltName entries, each as `TYPE:value` (`DNS:alice.example`, `email:alice@example.com`); empty without one. */
  readonly altNames: readonly string[]
}

/** What every phase sees. */
export interface BaseContext {
  /** Unique per server, increasing. */
  readonly id: number
  /** The protocol the client speaks (set before the first phase runs). */
  readonly protocol: ClientProtocol
  readonly server: ServerHandle
  /** The settings of the pipeline this connection was accepted with (a reload does not change them). */
  readonly settings: PipelineSettings
  /** The client's TCP socket. Write to it only through the phase's API unless you `hijack()` it. */
  readonly socket: Socket
  readonly client: Endpoint
  /** The proxy's own address of this connection (the address the client connected to). */
  readonly local: Endpoint
  /**
   * The TLS session of a connection to a TLS listener (`ListenOptions.tls`), set before the first
   * phase runs; null on a plain listener. With `requestCert` it carries the client certificate's
   * names, verified against the listener's `ca`.
   *
   * @example
   * server.use('negotiate', async function onlyCertificates(ctx, next) {
   *   if (ctx.tls?.commonName == null) throw new SocksError('ERR_SOCKS_NOT_ALLOWED', 'a client certificate is required')
   *   await next()
   * })
   */
  readonly tls: TlsInfo | null
  /** Aborts when the client leaves or the server force-closes the connection. */
  readonly signal: AbortSignal
  readonly log: Logger
  readonly state: SocksState
  /** True once a success reply is on the wire: after it an error can only close the connection. */
  readonly replied: boolean
  /** Milliseconds since the epoch when the connection was accepted. */
  readonly startedAt: number
  /** Takes the raw socket: the driver stops touching it, and the connection is yours to end. */
  hijack(): Socket
  /** Reads one message with a codec parser (for custom authentication methods). */
  readMessage<T>(parser: MessageParser<T>): Promise<T>
  /**
   * Ends the connection now, for `reason`: a short label (letters, digits and `_.:-`, such as
   * `quota` or `limits:bandwidth`) that the access log (`reason`), the
   * `socksmith_connections_closed_total{reason}` metric and the `disconnect` event (`ctx.error`, a
   * SocksError `ERR_SOCKS_CLOSED` carrying it as `reason`) report. Both sockets (or the UDP
   * association) are destroyed; in the relay phase the chain's code after `next()` still runs.
   * Before the success reply, throw a SocksError instead: that sends the client a reply.
   *
   * @example
   * if (usedBytes > quota) ctx.close('quota')
   */
  close(reason: string, message?: string): void
}

/** `negotiate`: the client offered methods; choose one (or leave null to refuse with `05 FF`). */
export interface NegotiateContext extends BaseContext {
  readonly offeredMethods: readonly number[]
  method: number | null
}

/** `auth`: the chosen method's sub-negotiation. Set `user` to accept a username/password client. */
export interface AuthContext extends BaseContext {
  readonly offeredMethods: readonly number[]
  readonly method: number
  /** Set for method 0x02 before the chain runs. */
  readonly credentials: Credentials | null
  /** SOCKS4's USERID field: who the client says it is, with no password (null for SOCKS5). */
  readonly userId: string | null
  user: string | null
}

/** `request`: the client's command and destination, which middleware may rewrite. */
export interface RequestContext extends BaseContext {
  readonly method: number
  readonly user: string | null
  readonly command: Command
  readonly commandName: CommandName
  destination: Address
}

/** `connect`: resolve, check, dial (or set up BIND / UDP). */
export interface ConnectContext extends RequestContext {
  /** Addresses the destination name resolved to, once someone resolved it; middleware may filter them. */
  resolved: ResolvedAddress[] | null
  /** Resolves the destination (once; later calls return the same list) with the pipeline's resolver. */
  resolve(): Promise<ResolvedAddress[]>
  /** Who dials CONNECT. Replace it to route through something else. */
  dialer: Dialer
  /** Who sets up BIND; null: this server listens itself. Set it to BIND somewhere else (after every connect middleware ran, like the dial). */
  binder: Binder | null
  /** The outgoing socket, once connected. Set it yourself to skip the default dial. */
  outbound: Socket | null
  /** BND.ADDR/BND.PORT of the success reply. Defaults to the outgoing socket's local address. */
  bound: Address | null
  /** The address actually dialled, for logs. */
  dialed: Address | null
  /**
   * The proxy (or chain of proxies) this connection goes through, for logs and metrics; null when
   * it goes direct. Set by whoever routes it, such as the upstream plugin.
   */
  via: string | null
  /** For BIND: decides whether an inbound peer may connect. The default accepts only DST.ADDR (or anyone for 0.0.0.0/::). */
  acceptBindPeer: ((peer: Address) => boolean | Promise<boolean>) | null
  /** For UDP ASSOCIATE: the association, once set up. */
  association: UdpAssociation | null
  /**
   * For BIND handled by a middleware (e.g. through an upstream proxy): sends the first reply, naming
   * where the peer should connect. Then set `outbound` to the peer's stream and `bound` to the peer address.
   */
  sendFirstBindReply(bound: Address): void
}

/**
 * `relay`: runs around the data transfer, after the success reply; code after `next()` sees the
 * final byte counts. What the connect phase decided is settled here, so it is all read-only.
 */
export interface RelayContext extends BaseContext {
  readonly method: number
  readonly user: string | null
  readonly command: Command
  readonly commandName: CommandName
  readonly destination: Address
  /** The addresses the destination resolved to, if it was resolved. */
  readonly resolved: readonly ResolvedAddress[] | null
  /** The outgoing socket (CONNECT), or the inbound peer (BIND); null for UDP ASSOCIATE. */
  readonly outbound: Socket | null
  /** BND.ADDR/BND.PORT of the success reply. */
  readonly bound: Address | null
  /** The address actually dialled (or the BIND peer). */
  readonly dialed: Address | null
  /** The proxy or chain the connection goes through; null when direct. */
  readonly via: string | null
  /** For UDP ASSOCIATE: the association. */
  readonly association: UdpAssociation | null
  /** Payload bytes received from the client: the relayed bytes, never the handshake's. */
  readonly bytesFromClient: number
  /** Payload bytes sent to the client: the relayed bytes, never the handshake's (replies included). */
  readonly bytesToClient: number
  /**
   * Observes the bytes the relay moves: `'client'` what the client sends (its early data
   * included), `'outbound'` what comes back. `fn` gets every chunk of that side, in order, just
   * before it is forwarded, whether the relay reads through its fast path or through the streams.
   * The chunk is valid only during the call (it may be a view into a read buffer that the next
   * read overwrites): copy it to keep it, never modify it. Call it before `next()`; a tap added
   * while the relay runs sees the bytes read from then on. A tap that throws ends the connection
   * and is reported as a bug (`server.on('error')`). This is the way to see relayed bytes: a
   * `'data'` listener on `ctx.socket` / `ctx.outbound` still works, but moves that side off the
   * fast path.
   *
   * @example
   * host.use('relay', async function countUploads(ctx, next) {
   *   ctx.tap('client', (chunk) => { ctx.state.uploaded += chunk.length })
   *   await next()
   * })
   */
  tap(side: RelaySide, fn: RelayTap): void
  /**
   * Shapes what one side sends through a {@link TokenBucket}: `'client'` the bytes the client
   * sends (upload), `'outbound'` what comes back (download). Each chunk the relay reads from that
   * side is forwarded and charged to the bucket; a chunk that puts the bucket in debt stops that
   * side's reads until the debt is paid off. It works with the relay's backpressure (a side
   * stopped by its bucket and by a slow peer reads again only when both allow), and while a side
   * is shaped below 16 MiB/s it reads 16 KiB at a time (64 KiB without the fast relay path), so a
   * slow rate is smooth and the proxy buffers at most one read per side; above it (a limit that
   * rarely bites) it keeps the fast path's large reads. One bucket may shape many connections
   * (all of one user's: they share its rate); several buckets may shape one side (every chunk
   * passes each). Call it before `next()` or while the relay runs; the function it returns takes
   * the bucket off again. An unshaped connection keeps the zero-copy fast path.
   *
   * @example
   * const perUser = new Map<string, TokenBucket>()
   * host.use('relay', async function shapeDownloads(ctx, next) {
   *   if (ctx.user !== null) {
   *     let bucket = perUser.get(ctx.user)
   *     if (bucket === undefined) perUser.set(ctx.user, (bucket = new TokenBucket({ rate: 128 * 1024 })))
   *     ctx.throttle('outbound', bucket)
   *   }
   *   await next()
   * })
   */
  throttle(side: RelaySide, bucket: TokenBucket): () => void
}

/**
 * One per TCP connection. Every field is set in the constructor, so all contexts share one hidden
 * class; each phase sees it through its narrower view.
 */
export class ConnectionContext {
  readonly id: number
  readonly server: ServerHandle
  readonly settings: PipelineSettings
  readonly socket: Socket
  #client: Endpoint
  readonly local: Endpoint
  readonly log: Logger
  readonly state: SocksState
  readonly startedAt: number
  protocol: ClientProtocol = 'socks5'
  tls: TlsInfo | null = null
  offeredMethods: readonly number[] = EMPTY
  method: number | null = Method.NO_ACCEPTABLE
  credentials: Credentials | null = null
  userId: string | null = null
  user: string | null = null
  command: Command = Command.CONNECT
  destination: Address = UNSET_ADDRESS
  resolved: ResolvedAddress[] | null = null
  dialer: Dialer
  binder: Binder | null = null
  outbound: Socket | null = null
  bound: Address | null = null
  dialed: Address | null = null
  via: string | null = null
  /** For BIND: decides whether an inbound peer may connect (see `ConnectContext.acceptBindPeer`). */
  acceptBindPeer: ((peer: Address) => boolean | Promise<boolean>) | null = null
  association: UdpAssociation | null = null
  replied = false
  /** The REP byte sent, once a reply was sent. */
  reply: number | null = null
  /** The error that ended the connection, if any. */
  error: unknown = null
  /** Milliseconds from accept until the request was read (null if it never was). */
  handshakeMs: number | null = null
  /** Milliseconds the connect phase took, success or failure (null if it never ran to an end). */
  connectMs: number | null = null
  /** Bytes of the handshake, so relay counts report payload only. */
  handshakeBytesRead = 0
  handshakeBytesWritten = 0
  /** Payload the client pipelined behind its request; the relay sends it first. */
  earlyData: Buffer | null = null
  /**
   * On an HTTP client's connection: the plain requests it forwarded. Each was a connection of its
   * own (its own context, access line and metrics), so a connection that carried only those is
   * left out of the access log and the connection metrics.
   */
  forwardedRequests = 0
  /** @internal The forwarded HTTP request this context runs (null for every other connection). */
  exchange: HttpExchange | null = null
  #abort: AbortController | null = null
  #resolving: Promise<ResolvedAddress[]> | null = null
  /**
   * Ends the connect-phase operation in progress (the lookup, the direct dial) when the driver
   * aborts the context: at the phase's deadline or when the client leaves. One at a time; no
   * AbortSignal needed for it.
   */
  #onAbort: ((reason: unknown) => void) | null = null
  #aborted = false
  /** @internal true while the destination name is being looked up (a connect-phase timeout then means REP 04) */
  lookupPending = false
  readonly #driver: ConnectionDriver

  /** @internal made by the connection driver */
  constructor(server: ServerHandle, settings: PipelineSettings, socket: Socket, id: number, client: Endpoint, local: Endpoint, state: SocksState, driver: ConnectionDriver) {
    this.id = id
    this.server = server
    this.settings = settings
    this.socket = socket
    this.#client = client
    this.local = local
    this.log = server.log
    this.state = state
    this.startedAt = Date.now()
    this.dialer = settings.dialer
    this.#driver = driver
  }

  /** The client's endpoint (from the PROXY protocol header on such listeners). */
  get client(): Endpoint {
    return this.#client
  }

  /** @internal the driver learned the real client (PROXY protocol header) */
  replaceClient(client: Endpoint): void {
    this.#client = client
  }

  /** The command as logs, rules and configs name it: `connect`, `bind` or `udp`. */
  get commandName(): CommandName {
    return commandName(this.command)
  }

  /** Aborts when the client leaves or the server force-closes the connection. */
  get signal(): AbortSignal {
    // Created on first use: most connections never ask for it.
    this.#abort ??= new AbortController()
    if (this.socket.destroyed && !this.#abort.signal.aborted) this.#abort.abort(CLIENT_CLOSED)
    return this.#abort.signal
  }

  /** Payload bytes received from the client: 0 until the success reply, then the relayed bytes (handshake bytes never count). */
  get bytesFromClient(): number {
    return this.replied ? this.socket.bytesRead - this.handshakeBytesRead : 0
  }

  /** Payload bytes sent to the client: 0 until the success reply, then the relayed bytes (handshake bytes and replies never count). */
  get bytesToClient(): number {
    return this.replied ? this.socket.bytesWritten - this.handshakeBytesWritten : 0
  }

  /** Why a middleware closed the connection (`close(reason)`), or the `reason` of the SocksError that ended it; null otherwise. */
  get closeReason(): string | null {
    const error = this.error
    return isSocksError(error) ? error.reason : null
  }

  /** @internal Aborts `signal` (called by the driver when the connection ends). */
  abort(reason: unknown): void {
    this.#aborted = true
    const onAbort = this.#onAbort
    if (onAbort !== null) {
      this.#onAbort = null
      onAbort(reason ?? CLIENT_CLOSED)
    }
    if (this.#abort !== null && !this.#abort.signal.aborted) this.#abort.abort(reason ?? CLIENT_CLOSED)
  }

  /**
   * @internal Runs `fn` when the driver aborts the context (replacing a watcher set before); false,
   * and `fn` is not kept, if that already happened.
   */
  watchAbort(fn: (reason: unknown) => void): boolean {
    if (this.#aborted) return false
    this.#onAbort = fn
    return true
  }

  /** @internal */
  unwatchAbort(fn: (reason: unknown) => void): void {
    if (this.#onAbort === fn) this.#onAbort = null
  }

  /** Resolves the destination once with the pipeline's resolver (see `ConnectContext.resolve`). */
  resolve(): Promise<ResolvedAddress[]> {
    if (this.resolved !== null) return Promise.resolve(this.resolved)
    this.#resolving ??= this.#resolveOnce()
    return this.#resolving
  }

  async #resolveOnce(): Promise<ResolvedAddress[]> {
    const destination = this.destination
    let resolved: ResolvedAddress[]
    // The destination may have been rewritten by a middleware since the driver vetted it: what is
    // resolved and dialled is vetted again here (destination.ts).
    if (destination.type === 'ipv4') resolved = [{ address: dialableIp(destination.host), family: 4 }]
    else if (destination.type === 'ipv6') resolved = [{ address: dialableIp(destination.host), family: 6 }]
    else {
      if (destination.host.length === 0) throw new SocksError('ERR_SOCKS_BAD_ADDRESS', 'empty domain name')
      const name = vetDomainName(destination.host)
      this.lookupPending = true
      let answers: ResolvedAddress[]
      try {
        // Who asks goes with the lookup: the system resolver shares its threads out by client. The
        // signal is made only for a resolver that reads it (the system resolver does when a lookup
        // has to queue): an AbortController per lookup cost a tenth of a name connection's CPU.
        const settings = this.settings
        const ctx = this
        const origin: ResolveOptions = {
          client: clientGroup(this.#client.address, settings.clientPrefix),
          kind: 'connect',
          get signal() {
            return ctx.signal
          },
        }
        answers = await this.#untilAborted(settings.resolver.resolve(name, origin))
      } finally {
        this.lookupPending = false
      }
      resolved = dialableAnswers(answers)
      if (resolved.length === 0) throw new SocksError('ERR_SOCKS_HOST_UNREACHABLE', `${destination.host} has no address${answers.length > 0 ? ' that can be dialled' : ''}`)
    }
    this.resolved = resolved
    return resolved
  }

  /**
   * The lookup, or the driver's abort if that comes first. No timer of its own: every phase that
   * can resolve runs under a driver deadline (handshake, connect), which aborts the context; a
   * lookup already running goes on holding its resolver slot (it cannot be cancelled), but nobody waits for it.
   */
  #untilAborted(lookup: Promise<ResolvedAddress[]>): Promise<ResolvedAddress[]> {
    return new Promise((resolve, reject) => {
      const settle = (): void => this.unwatchAbort(reject)
      if (!this.watchAbort(reject)) reject(this.error ?? CLIENT_CLOSED)
      lookup.then(
        (answers) => {
          settle()
          resolve(answers)
        },
        (err: unknown) => {
          settle()
          reject(err)
        },
      )
    })
  }

  /** Takes the raw socket: the driver stops touching it (see `BaseContext.hijack`). */
  hijack(): Socket {
    return this.#driver.hijack()
  }

  /** Observes the relayed bytes of one side (see `RelayContext.tap`). */
  tap(side: RelaySide, fn: RelayTap): void {
    addTap(this, side, fn)
  }

  /** Shapes the relayed bytes of one side (see `RelayContext.throttle`). */
  throttle(side: RelaySide, bucket: TokenBucket): () => void {
    return addThrottle(this, side, bucket)
  }

  /** Ends the connection for `reason` (see `BaseContext.close`). */
  close(reason: string, message?: string): void {
    if (typeof reason !== 'string' || !CLOSE_REASON.test(reason)) {
      throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `ctx.close(reason): reason must be a short label (letters, digits, _.:-; at most 64), not ${JSON.stringify(reason)}`)
    }
    this.#driver.destroy(new SocksError('ERR_SOCKS_CLOSED', message ?? `closed by a middleware: ${reason}`, { reason }))
  }

  /** Reads one message with a codec parser (see `BaseContext.readMessage`). */
  readMessage<T>(parser: MessageParser<T>): Promise<T> {
    return this.#driver.readMessage(parser)
  }

  /** Sends a BIND's first reply (see `ConnectContext.sendFirstBindReply`). */
  sendFirstBindReply(bound: Address): void {
    this.#driver.sendFirstBindReply(bound)
  }

  /** @internal */
  get driver(): ConnectionDriver {
    return this.#driver
  }
}

/** Answers as the system dials them: 0.0.0.0 / :: become loopback, the rest of 0.0.0.0/8 is dropped. */
function dialableAnswers(answers: ResolvedAddress[]): ResolvedAddress[] {
  let out: ResolvedAddress[] | null = null
  for (let i = 0; i < answers.length; i++) {
    const answer = answers[i]!
    let address: string | null
    try {
      address = dialableIp(answer.address)
    } catch {
      address = null
    }
    if (address === answer.address && out === null) continue
    out ??= answers.slice(0, i)
    if (address !== null) out.push({ ...answer, address })
  }
  return out ?? answers
}

const EMPTY: readonly number[] = Object.freeze([])
/** What ctx.close() takes as a reason: a label fit for a metric and a log field. */
const CLOSE_REASON = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/
// The reason of every ordinary close: one shared error, since building an Error (its stack) per
// connection is measurable on the handshake path.
const CLIENT_CLOSED = new SocksError('ERR_SOCKS_CLIENT_CLOSED')
const UNSET_ADDRESS: Address = Object.freeze({ type: 'ipv4', host: '0.0.0.0', port: 0 })
