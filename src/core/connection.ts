import type { Socket } from 'node:net'
import { ConnectionContext, type AuthContext, type ConnectContext, type ConnectionDriver, type Credentials, type DatagramContext, type Endpoint, type NegotiateContext, type PipelineSettings, type RelayContext, type RequestContext, type ServerHandle, type SocksState } from './context.js'
import { ByteReader, type MessageParser } from '../protocol/reader.js'
import { isIP } from 'node:net'
import { parseGreeting, encodeMethodSelection } from '../protocol/greeting.js'
import { parseProxyHeader } from '../protocol/proxy-header.js'
import { parsePasswordRequest, encodePasswordStatus, type PasswordRequest } from '../protocol/password.js'
import { parseRequest, encodeReply } from '../protocol/request.js'
import { encodeSocks4Reply, parseSocks4Request, Socks4Status, SOCKS4_VERSION } from '../protocol/socks4.js'
import { Command, Method, Reply, SOCKS_VERSION } from '../protocol/constants.js'
import { toAddress, unmapIPv4, type Address } from '../protocol/address.js'
import { isSocksError, SocksError, toSocksError } from './errors.js'
import { ChainError, type CompiledChain } from './compose.js'
import { channels } from '../ops/diagnostics.js'
import { isLogLevelEnabled } from '../ops/logger.js'
import { vetDestination } from '../net/destination.js'
import { hearErrors } from '../net/hear-errors.js'
import type { ClientPrefix } from './client-group.js'
import type { LookupBudget } from '../commands/udp.js'
import { armDeadline, DeadlineEntry, disarmDeadline } from './deadlines.js'
import { CONNECT_ESTABLISHED, httpRefusal, parseBasicCredentials, parseConnectTarget, parseProxyTarget, refusalOf, statusResponse } from './http-front.js'
import { HttpSession, type HttpSessionOwner } from './http-session.js'
import type { HttpExchange, HttpForwardSettings } from '../commands/http-forward.js'
import type { IncomingMessage } from 'node:http'

/** A pipeline's compiled phases (core/pipeline.ts builds them). */
export interface CompiledChains {
  readonly negotiate: CompiledChain<NegotiateContext>
  readonly auth: CompiledChain<AuthContext>
  readonly request: CompiledChain<RequestContext>
  readonly connect: CompiledChain<ConnectContext>
  readonly relay: CompiledChain<RelayContext>
  /** null when no middleware handles datagrams: then no per-packet context is made. */
  readonly datagram: CompiledChain<DatagramContext> | null
  newState(): SocksState
}

/** What a connection runs on: the pipeline it was accepted with (core/pipeline.ts). */
export interface ConnectionPipeline {
  readonly chains: CompiledChains
  readonly settings: PipelineSettings
  readonly datagramLookups: LookupBudget
}

/** What a connection needs of its server beyond the pipeline: the counts that outlive pipelines. */
export interface ConnectionHost extends ServerHandle {
  /** Counts a connection against the per-client limit: the key counted under, null (no limit) or false (at the limit). */
  claimClient(address: string, settings: PipelineSettings): string | null | false
  /**
   * Starts the connection of one request an HTTP client's connection (`parent`) forwards: a
   * connection of its own (id, context, state, access line, metrics) on the parent's pipeline.
   */
  openForwarded(parent: Connection, exchange: HttpExchange): Connection
  /** Counts a UDP association against its client's limit: the key to release, or null at the limit. */
  claimAssociation(address: string, max: number, prefix: Readonly<ClientPrefix>): string | null
  releaseAssociation(key: string): void
  /** A non-SocksError escaped a middleware: a bug, logged and reported, never fatal. */
  reportBug(err: unknown, ctx: ConnectionContext | null): void
}

// `forwarding`: an HTTP client's connection between and during its forwarded requests (each one a connection of its own).
type DriverPhase = 'negotiate' | 'auth' | 'request' | 'connect' | 'relay' | 'forwarding' | 'closing' | 'done'

interface Waiter {
  parse: MessageParser<unknown>
  resolve: (value: unknown) => void
  reject: (err: unknown) => void
}

/** Pipelined bytes held while no message is awaited, before reading stops (one socket read). */
const HOLD_WHILE_BUSY = 64 * 1024

/** How long a refused client gets to read our last words before the socket is destroyed. */
const LINGER_MS = 2000

// Errors after which nothing is worth saying to the client: it is gone or not speaking SOCKS5.
const SILENT_CLOSE = new Set(['ERR_SOCKS_PROXY_HEADER', 'ERR_SOCKS_TOO_MANY_CONNECTIONS', 'ERR_SOCKS_BAD_VERSION', 'ERR_SOCKS_NO_METHODS', 'ERR_SOCKS_HANDSHAKE_TIMEOUT', 'ERR_SOCKS_HANDSHAKE_TOO_LARGE', 'ERR_SOCKS_CLIENT_CLOSED', 'ERR_SOCKS_MALFORMED'])

/** The protocols a listener takes, a bit each (ListenOptions.protocols). SOCKS5 alone, the default, reads no byte ahead. */
export const PROTOCOL_SOCKS5 = 1
export const PROTOCOL_SOCKS4 = 2
export const PROTOCOL_HTTP = 4

/** The first byte, left in place: which protocol the client speaks. */
const peekVersion: MessageParser<number> = (buf) => (buf.length === 0 ? null : { value: buf[0]!, length: 0 })
const SOCKS4_METHODS: readonly number[] = Object.freeze([Method.NO_AUTH])
// An HTTP client offers what its request carries: Basic credentials (as method 02, and NO AUTH
// beside it, so a server without authentication lets it in as a SOCKS5 client offering both) or nothing.
const HTTP_WITH_CREDENTIALS: readonly number[] = Object.freeze([Method.USERNAME_PASSWORD, Method.NO_AUTH])

/** A listener without `http` options: forwarded messages get neither Via nor X-Forwarded-For. */
export const NO_HTTP_HEADERS: HttpForwardSettings = Object.freeze({ via: null, forwardedFor: false })

const kConnection = Symbol('socksmith.connection')
type DrivenSocket = Socket & { [kConnection]: Connection }

/**
 * Drives one TCP connection through the phases. Owns the socket's lifetime: the deadline of each
 * handshake phase, what an error means on the wire in each phase, and cleanup. Everything it learns goes into the ConnectionContext.
 */
export class Connection extends DeadlineEntry implements ConnectionDriver, HttpSessionOwner {
  readonly ctx: ConnectionContext
  readonly socket: Socket
  readonly host: ConnectionHost
  /** The pipeline this connection was accepted with (a reload does not change it). */
  readonly pipeline: ConnectionPipeline
  readonly #chains: CompiledChains
  readonly #reader = new ByteReader()
  #waiter: Waiter | null = null
  #pendingError: unknown = null
  #phase: DriverPhase = 'negotiate'
  #ended = false
  #closed = false
  #hijacked = false
  // Monotonic clock for the latency figures (ctx.startedAt is wall-clock, for logs).
  readonly #acceptedAt = performance.now()
  #connectStartedAt = 0
  readonly #onClosed: (connection: Connection) => void
  // The deadline of the phase in progress (DeadlineEntry, this object being the list node): the
  // handshake (accept → request handled), then the connect phase (its own timeout, so a slow dial
  // is answered REP 06, not cut by the handshake's), then the linger after a refusal. A real
  // deadline, not the socket's idle timer: a client trickling a byte at a time cannot stretch it.
  /** Set once the connection has failed and its last words are sent: a chain still running is abandoned. */
  #failed = false
  /** The first BIND reply is on the wire (it may be sent once, and only while a BIND is being set up). */
  #bindReplySent = false
  /** node's HTTP parser has the socket (an HTTP client, before its first request is read). */
  #httpParsing = false
  /** What an HTTP client sent after its CONNECT head: the tunnel's first bytes. */
  #httpHead: Buffer | null = null
  /** An HTTP client's requests as node's parser reads them (until a CONNECT makes it a tunnel). */
  #session: HttpSession | null = null
  #httpSettings: HttpForwardSettings = NO_HTTP_HEADERS
  /**
   * The relay chain is running: the connection's end (the close channel, `disconnect`) is reported
   * once it has settled, so every middleware's code after next() has run by then.
   */
  #relaying = false
  /** The socket closed while the relay chain was still running: report the end when it settles. */
  #endPending = false

  // The socket's listeners are shared by every connection and find theirs on the socket: one set
  // of functions for the process instead of five closures per connection.
  static readonly #onData = function (this: DrivenSocket, chunk: Buffer): void {
    this[kConnection].#handleData(chunk)
  }
  static readonly #onEnd = function (this: DrivenSocket): void {
    this[kConnection].#handleEnd()
  }
  static readonly #onError = function (this: DrivenSocket, err: Error): void {
    this[kConnection].#handleError(err)
  }
  static readonly #onClose = function (this: DrivenSocket): void {
    this[kConnection].#handleClose()
  }

  constructor(host: ConnectionHost, pipeline: ConnectionPipeline, socket: Socket, id: number, client: Endpoint, local: Endpoint, onClosed: (connection: Connection) => void) {
    super()
    this.host = host
    this.pipeline = pipeline
    this.#chains = pipeline.chains
    this.socket = socket
    this.#onClosed = onClosed
    this.ctx = new ConnectionContext(host, pipeline.settings, socket, id, client, local, pipeline.chains.newState(), this)
  }

  get phase(): DriverPhase {
    return this.#phase
  }

  /** True while the connection has not reached the relay (used by drain and limits). */
  get inHandshake(): boolean {
    return this.#phase === 'negotiate' || this.#phase === 'auth' || this.#phase === 'request' || this.#phase === 'connect'
  }

  /** The client group counted against the per-client limit (see claimClient), released when the connection ends. */
  countedClient: string | null = null
  #proxyProtocol = false
  #protocols = PROTOCOL_SOCKS5

  /** `protocols`: PROTOCOL_* bits, what the listener takes; `http`: what forwarded requests get added. */
  start(handshakeTimeout: number, proxyProtocol = false, protocols = PROTOCOL_SOCKS5, http: HttpForwardSettings = NO_HTTP_HEADERS): void {
    this.#proxyProtocol = proxyProtocol
    this.#protocols = protocols
    this.#httpSettings = http
    const socket = this.socket
    ;(socket as DrivenSocket)[kConnection] = this
    socket.on('data', Connection.#onData)
    socket.on('end', Connection.#onEnd)
    socket.on('error', Connection.#onError)
    socket.on('close', Connection.#onClose)
    this.#arm(handshakeTimeout)
    if (channels.open.hasSubscribers) channels.open.publish({ ctx: this.ctx })
    this.#run().catch(this.#onUnexpected)
  }

  /**
   * Starts the connection of one forwarded HTTP request (ctx.exchange set, its socket the
   * exchange's client side): the phases from negotiate on, with the handshake deadline.
   */
  startForwarded(handshakeTimeout: number): void {
    const socket = this.socket
    ;(socket as DrivenSocket)[kConnection] = this
    socket.on('error', Connection.#onError)
    socket.on('close', Connection.#onClose)
    this.#arm(handshakeTimeout)
    if (channels.open.hasSubscribers) channels.open.publish({ ctx: this.ctx })
    this.#forwarded().catch(this.#onUnexpected)
  }

  /** @internal HttpSessionOwner: one request of this HTTP client, as a connection of its own. */
  forwardExchange(exchange: HttpExchange): Promise<void> {
    this.ctx.forwardedRequests++
    if (this.#phase === 'negotiate') this.#phase = 'forwarding'
    return this.host.openForwarded(this, exchange).ended
  }

  /** @internal HttpSessionOwner: between requests a keep-alive client has the handshake timeout to send the next one. */
  keepAliveIdle(waiting: boolean): void {
    if (this.#closed || this.#phase !== 'forwarding') return
    if (waiting) this.#arm(this.pipeline.settings.timeouts.handshake)
    else this.#disarm()
  }

  /** The server is closing: a keep-alive HTTP client between requests is closed now rather than at the drain deadline. */
  closeIfIdle(): void {
    if (this.#phase === 'forwarding' && this.#session?.idle === true) this.socket.destroy()
  }

  /** Ends the connection now (forced close after the drain deadline). */
  destroy(reason: unknown): void {
    this.ctx.error ??= reason
    this.#disarm()
    this.socket.destroy()
    this.ctx.outbound?.destroy()
    this.ctx.association?.close()
  }

  readMessage<T>(parse: MessageParser<T>): Promise<T> {
    if (this.#pendingError !== null) return Promise.reject(this.#pendingError)
    let value: T | undefined
    try {
      value = this.#reader.read(parse)
    } catch (err) {
      return Promise.reject(err)
    }
    if (value !== undefined) return Promise.resolve(value)
    if (this.#ended || this.#closed) return Promise.reject(new SocksError('ERR_SOCKS_CLIENT_CLOSED', 'client closed the connection during the handshake'))
    return new Promise<T>((resolve, reject) => {
      this.#waiter = { parse, resolve: resolve as (value: unknown) => void, reject }
      this.socket.resume()
    })
  }

  hijack(): Socket {
    if (this.#hijacked) return this.socket
    this.#hijacked = true
    const socket = this.socket
    socket.removeListener('data', Connection.#onData)
    socket.removeListener('end', Connection.#onEnd)
    this.#disarm()
    socket.pause()
    // An HTTP CONNECT's tunnel bytes were already taken from the reader.
    const rest = this.#httpHead ?? this.#reader.rest()
    this.#httpHead = null
    if (rest !== null && rest.length > 0) socket.unshift(rest)
    this.#phase = 'done'
    return socket
  }

  async #run(): Promise<void> {
    try {
      if (this.#proxyProtocol) await this.#readProxyHeader()
      // Only a listener that takes more than SOCKS5 looks at the first byte before parsing.
      const protocols = this.#protocols
      const version = protocols === PROTOCOL_SOCKS5 ? SOCKS_VERSION : await this.readMessage(peekVersion)
      if (version === SOCKS4_VERSION && (protocols & PROTOCOL_SOCKS4) !== 0) await this.#socks4()
      else if (version === SOCKS_VERSION && (protocols & PROTOCOL_SOCKS5) !== 0) await this.#socks5()
      else if (version !== SOCKS4_VERSION && version !== SOCKS_VERSION && (protocols & PROTOCOL_HTTP) !== 0) await this.#http()
      else throw new SocksError('ERR_SOCKS_BAD_VERSION', `unsupported SOCKS version ${version}`)
    } catch (err) {
      this.#fail(err)
    }
    // A relay still running reports the end itself once it settles (#relayPhase).
    if (this.#endPending && !this.#relaying) this.#reportEnd()
  }

  /** SOCKS5: greeting, method selection, sub-negotiation, request (RFC 1928, RFC 1929). */
  async #socks5(): Promise<void> {
    const ctx = this.ctx
    const chains = this.#chains
    const greeting = await this.readMessage(parseGreeting)
    ctx.offeredMethods = greeting.methods
    ctx.method = null
    await chains.negotiate(ctx as NegotiateContext)
    if (this.#stopped()) return
    const method = ctx.method as number | null
    if (method === null || method === Method.NO_ACCEPTABLE) throw new SocksError('ERR_SOCKS_NO_ACCEPTABLE_METHOD')
    this.socket.write(encodeMethodSelection(method))

    this.#phase = 'auth'
    if (method === Method.USERNAME_PASSWORD) ctx.credentials = toCredentials(await this.readMessage(parsePasswordRequest))
    await chains.auth(ctx as AuthContext)
    if (this.#stopped()) return
    if (method === Method.USERNAME_PASSWORD) this.socket.write(encodePasswordStatus(true))

    this.#phase = 'request'
    const request = await this.readMessage(parseRequest)
    await this.#serve(request.command, request.destination)
  }

  /**
   * SOCKS4 and SOCKS4a (CONNECT, BIND): the request comes first; the negotiate and auth chains run
   * as for a client offering NO AUTH only (SOCKS4 has no password), with the USERID on ctx.userId.
   */
  async #socks4(): Promise<void> {
    const ctx = this.ctx
    const chains = this.#chains
    ctx.protocol = 'socks4'
    const request = await this.readMessage(parseSocks4Request)
    ctx.userId = request.userId
    ctx.offeredMethods = SOCKS4_METHODS
    ctx.method = null
    await chains.negotiate(ctx as NegotiateContext)
    if (this.#stopped()) return
    if ((ctx.method as number | null) !== Method.NO_AUTH) throw new SocksError('ERR_SOCKS_NO_ACCEPTABLE_METHOD', 'SOCKS4 carries no password, and this server requires authentication')
    this.#phase = 'auth'
    await chains.auth(ctx as AuthContext)
    if (this.#stopped()) return
    this.#phase = 'request'
    await this.#serve(request.command, request.destination)
  }

  /**
   * An HTTP proxy client: node's parser reads its requests. Plain requests (`GET http://…`) are
   * forwarded one by one, each as a connection of its own (http-session.ts); a CONNECT goes
   * through the phases on this connection like a SOCKS5 CONNECT (Basic credentials offered as
   * method 02), and its tunnel is relayed.
   */
  async #http(): Promise<void> {
    const ctx = this.ctx
    ctx.protocol = 'http'
    const socket = this.socket
    socket.removeListener('data', Connection.#onData)
    this.#httpParsing = true
    const session = new HttpSession(this, socket, this.#httpSettings)
    this.#session = session
    const tunnel = await session.start(this.#reader.rest())
    this.#httpParsing = false
    this.#session = null
    // After forwarded requests the CONNECT gets a handshake deadline of its own.
    if (this.#phase === 'forwarding') {
      this.#phase = 'negotiate'
      this.#arm(this.pipeline.settings.timeouts.handshake)
    }
    this.#httpHead = tunnel.head
    const destination = parseConnectTarget(tunnel.request.url)
    await this.#httpLogin(tunnel.request)
    if (this.#stopped()) return
    this.#phase = 'request'
    await this.#serve(Command.CONNECT, destination)
  }

  /** One forwarded HTTP request: the target, then the phases as for a CONNECT to its host and port (default 80). */
  async #forwarded(): Promise<void> {
    try {
      const ctx = this.ctx
      ctx.protocol = 'http'
      const exchange = ctx.exchange!
      const target = parseProxyTarget(exchange.request.url)
      exchange.target = target
      await this.#httpLogin(exchange.request)
      if (this.#stopped()) return
      this.#phase = 'request'
      await this.#serve(Command.CONNECT, target.destination)
    } catch (err) {
      this.#fail(err)
    }
    // A relay still running reports the end itself once it settles (#relayPhase).
    if (this.#endPending && !this.#relaying) this.#reportEnd()
  }

  /** negotiate and auth for an HTTP request: `Proxy-Authorization: Basic` is offered as method 02 (with NO AUTH beside it). */
  async #httpLogin(request: IncomingMessage): Promise<void> {
    const ctx = this.ctx
    const credentials = parseBasicCredentials(request.headers['proxy-authorization'])
    ctx.offeredMethods = credentials === null ? SOCKS4_METHODS : HTTP_WITH_CREDENTIALS
    ctx.method = null
    await this.#chains.negotiate(ctx as NegotiateContext)
    if (this.#stopped()) return
    const method = ctx.method as number | null
    if (method === null || method === Method.NO_ACCEPTABLE) throw new SocksError('ERR_SOCKS_NO_ACCEPTABLE_METHOD', credentials === null ? 'no Proxy-Authorization, and this server requires authentication' : undefined)
    this.#phase = 'auth'
    if (method === Method.USERNAME_PASSWORD && credentials !== null) ctx.credentials = toCredentials(credentials)
    else if (method !== Method.NO_AUTH) throw new SocksError('ERR_SOCKS_NO_ACCEPTABLE_METHOD', `method ${method} has no HTTP form`)
    await this.#chains.auth(ctx as AuthContext)
  }

  /** From the request on, the same for every protocol: request, connect, the success reply, relay. */
  async #serve(command: Command, destination: Address): Promise<void> {
    const ctx = this.ctx
    const chains = this.#chains
    ctx.command = command
    ctx.handshakeMs = performance.now() - this.#acceptedAt
    // What the client asked for, as the system would dial it: no name that resolves to something
    // other than what the rules see, no unspecified address standing for loopback (destination.ts).
    // BIND's DST 0.0.0.0 means "any peer" and UDP's is the client's own endpoint: only names are vetted there.
    ctx.destination = command === Command.CONNECT || destination.type === 'domain' ? vetDestination(destination) : destination
    await chains.request(ctx as RequestContext)
    if (this.#stopped()) return

    this.#phase = 'connect'
    this.#connectStartedAt = performance.now()
    this.#arm(this.#connectPhaseTimeout())
    await chains.connect(ctx as ConnectContext)
    ctx.connectMs = performance.now() - this.#connectStartedAt
    if (this.#stopped()) {
      if (!this.#hijacked) this.#cleanUpTarget()
      return
    }
    // The success reply reports something that exists, or it is not sent: a middleware that
    // called next() without awaiting it lets the chain end before the terminal has connected.
    const missing = this.#missingTarget()
    if (missing !== null) throw new ChainError(`the connect phase ended without ${missing}: did a middleware call next() without awaiting it?`)
    // A socket a middleware dialled itself, or BIND's inbound one, waits for the relay too.
    if (ctx.outbound !== null) hearErrors(ctx.outbound)
    this.#disarm()
    const bound = ctx.bound ?? localAddressOf(ctx.outbound)
    ctx.bound = bound
    this.#sendReply(Reply.SUCCEEDED, bound)
    ctx.replied = true

    this.#phase = 'relay'
    this.socket.pause()
    this.socket.removeListener('data', Connection.#onData)
    const early = this.#httpHead ?? this.#reader.rest()
    this.#httpHead = null
    // Payload the client sent before the reply waits in the reader (early) or, once the reader held
    // HOLD_WHILE_BUSY or node's HTTP parser left it there, in the socket's stream buffer, whence
    // the relay gets it as 'data'. bytesRead counted both: neither is handshake.
    ctx.handshakeBytesRead = this.socket.bytesRead - (early?.length ?? 0) - this.socket.readableLength
    ctx.handshakeBytesWritten = this.socket.bytesWritten
    ctx.earlyData = early
    // A forwarded request relays bodies: the origin's side exists from now on, for ctx.tap / ctx.throttle.
    if (ctx.exchange !== null) ctx.exchange.attach(ctx.outbound!)
    this.#relaying = true
    // Not awaited: the handshake's async frames (#run, the protocol's, this one) end here instead
    // of staying suspended for the connection's whole life, about a kilobyte of heap per relayed
    // connection (generators, their contexts, promises and reactions). What ran after them when
    // the relay settles (a failure, the end report) is #relayPhase's.
    this.#relayPhase().catch(this.#onUnexpected)
  }

  /** The relay chain, then what its end means: a failure handled as in any phase, the end reported. */
  async #relayPhase(): Promise<void> {
    const ctx = this.ctx
    try {
      let settled = false
      try {
        await this.#chains.relay(ctx as RelayContext)
        settled = true
      } finally {
        this.#relaying = false
        // A forwarded request's origin socket serves the client connection's next request only
        // after an exchange that nothing cut short: no error, no forced close, no hijack.
        ctx.exchange?.settle(ctx.outbound, settled && ctx.error === null && !this.#hijacked && !this.#failed, this.pipeline.settings.timeouts.idle)
      }
    } catch (err) {
      this.#fail(err)
    }
    if (this.#endPending) this.#reportEnd()
  }

  /** Takes the real client from a load balancer's PROXY header (the LOCAL command keeps the socket's). */
  async #readProxyHeader(): Promise<void> {
    const header = await this.readMessage(parseProxyHeader)
    if (header.command === 'proxy' && header.source !== null) {
      const address = unmapIPv4(header.source.address)
      this.ctx.replaceClient({ address, port: header.source.port, family: isIP(address) === 6 ? 6 : 4 })
    }
    const address = this.ctx.client.address
    const counted = this.host.claimClient(address, this.pipeline.settings)
    if (counted === false) {
      throw new SocksError('ERR_SOCKS_TOO_MANY_CONNECTIONS', `per-client limit ${this.pipeline.settings.maxConnectionsPerClient} reached for ${address}`)
    }
    this.countedClient = counted
  }

  /** True once the connection failed or closed: a terminal finishing late must release what it made. */
  get finished(): boolean {
    return this.#failed || this.#closed
  }

  #stopped(): boolean {
    return this.#hijacked || this.#closed || this.#failed
  }

  /** What a successful connect phase must have produced and did not, or null. */
  #missingTarget(): string | null {
    const ctx = this.ctx
    if (ctx.command === Command.UDP_ASSOCIATE) return ctx.association === null || ctx.association.closed || ctx.bound === null ? 'a UDP association' : null
    const upstream = ctx.outbound
    if (upstream === null || upstream.destroyed) return ctx.command === Command.BIND ? 'an inbound BIND connection' : 'a connected outbound socket'
    return null
  }

  /** The connect phase's bound: the dial (DNS, upstream hops included) and, for BIND, the wait for the peer. */
  #connectPhaseTimeout(): number {
    const timeouts = this.pipeline.settings.timeouts
    if (this.ctx.command !== Command.BIND) return timeouts.connect
    return timeouts.bindAccept > 0 && timeouts.connect > 0 ? timeouts.bindAccept + timeouts.connect : 0
  }

  #arm(ms: number): void {
    armDeadline(this, ms)
  }

  #disarm(): void {
    disarmDeadline(this)
  }

  /** @internal The phase's deadline passed (deadlines.ts). */
  onDeadline(): void {
    const phase = this.#phase
    // After a refusal: the client had LINGER_MS to read our last words and close.
    if (phase === 'closing') {
      this.socket.destroy()
      return
    }
    // A keep-alive HTTP client sent no next request in time.
    if (phase === 'forwarding') {
      this.ctx.error ??= new SocksError('ERR_SOCKS_IDLE_TIMEOUT', `no HTTP request within ${this.pipeline.settings.timeouts.handshake} ms`)
      this.socket.destroy()
      return
    }
    if (this.#closed || this.#failed || phase === 'relay' || phase === 'done') return
    const ctx = this.ctx
    if (phase !== 'connect') {
      const err = new SocksError('ERR_SOCKS_HANDSHAKE_TIMEOUT', `handshake not completed within ${this.pipeline.settings.timeouts.handshake} ms`)
      ctx.error ??= err
      if (isLogLevelEnabled(ctx.log, 'debug')) ctx.log.debug('handshake timeout', { id: ctx.id, phase })
      this.socket.destroy()
      return
    }
    // The connect phase ran out: answer it (REP 06, or REP 04 while the name is still being
    // looked up), and stop whatever the chain is still doing (dials and BIND waits watch the signal).
    const err = ctx.lookupPending
      ? new SocksError('ERR_SOCKS_HOST_UNREACHABLE', `DNS lookup of ${ctx.destination.host} not answered within ${this.pipeline.settings.timeouts.connect} ms`)
      : new SocksError('ERR_SOCKS_CONNECT_TIMEOUT', `connect phase not completed within ${this.#connectPhaseTimeout()} ms`)
    this.#fail(err)
    ctx.abort(err)
  }

  #sendReply(reply: number, bound: Address | null): void {
    const ctx = this.ctx
    ctx.reply = reply
    const protocol = ctx.protocol
    if (protocol === 'socks5') this.socket.write(encodeReply(reply, bound))
    else if (protocol === 'socks4') this.socket.write(encodeSocks4Reply(reply === Reply.SUCCEEDED ? Socks4Status.GRANTED : Socks4Status.REJECTED, bound))
    // A forwarded request's answer is the origin's response, written by the relay terminal.
    else if (ctx.exchange === null) this.socket.write(reply === Reply.SUCCEEDED ? CONNECT_ESTABLISHED : statusResponse(502, 'connect failed\n'))
    if (channels.reply.hasSubscribers) channels.reply.publish({ ctx, reply })
  }

  /** First BIND reply: success with the listening address; the connection is not "replied" until the second. */
  sendFirstBindReply(bound: Address): void {
    if (this.ctx.command !== Command.BIND || this.#phase !== 'connect' || this.#bindReplySent || this.#failed || this.#closed) {
      throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', 'sendFirstBindReply() is for the connect phase of a BIND request, once')
    }
    this.#bindReplySent = true
    this.#sendReply(Reply.SUCCEEDED, bound)
  }

  #fail(raw: unknown): void {
    const ctx = this.ctx
    if (this.#hijacked) return
    if (this.#failed) {
      // Already answered (a deadline): what the abandoned chain leaves behind is only cleaned up.
      this.#cleanUpTarget()
      return
    }
    this.#failed = true
    this.#disarm()
    // Work still running for this connection (a BIND wait, a custom dialer) stops; the direct dial
    // stops when the socket closes.
    this.ctx.abort(raw)
    let err = raw
    if (this.#phase === 'connect') {
      ctx.connectMs ??= performance.now() - this.#connectStartedAt
      if (!isSocksError(err) && hasErrno(err)) err = toSocksError(err)
    }
    ctx.error ??= err
    if (!isSocksError(err)) this.host.reportBug(err, ctx)
    else if (err.code !== 'ERR_SOCKS_CLIENT_CLOSED' && isLogLevelEnabled(ctx.log, 'debug')) ctx.log.debug('connection refused', { id: ctx.id, phase: this.#phase, code: err.code, message: err.message })
    this.#cleanUpTarget()
    if (this.#closed) return
    const phase = this.#phase
    if (phase === 'relay' || ctx.replied || (isSocksError(err) && SILENT_CLOSE.has(err.code))) {
      this.#closeWith(null, phase === 'relay' || ctx.replied)
      return
    }
    // node's parser answered a request it could not read (400, 431) itself: let it arrive.
    if (this.#httpParsing) {
      this.#httpParsing = false
      this.#closeWith(null, false)
      return
    }
    // The REP of the failure from the request on (what a SOCKS5 client gets, and what logs and
    // metrics report for SOCKS4 and HTTP clients too, whose answers have their own form), reported
    // only once it can be written.
    const reply = phase === 'negotiate' || phase === 'auth' ? null : isSocksError(err) ? (err.reply ?? Reply.GENERAL_FAILURE) : Reply.GENERAL_FAILURE
    if (reply !== null && this.socket.writable) {
      ctx.reply = reply
      if (channels.reply.hasSubscribers) channels.reply.publish({ ctx, reply })
    }
    // SOCKS4 has one answer for every refusal and failure, in every phase: 91. A forwarded HTTP
    // request is answered on its own response, and the client's connection lives on.
    if (ctx.exchange !== null) {
      this.#phase = 'closing'
      ctx.exchange.refuse(refusalOf(err))
    } else if (ctx.protocol === 'http') this.#closeWith(httpRefusal(err), false)
    else if (ctx.protocol === 'socks4') this.#closeWith(encodeSocks4Reply(Socks4Status.REJECTED), false)
    else if (reply !== null) this.#closeWith(encodeReply(reply), false)
    else if (phase === 'negotiate') this.#closeWith(encodeMethodSelection(Method.NO_ACCEPTABLE), false)
    else this.#closeWith(ctx.method === Method.USERNAME_PASSWORD ? encodePasswordStatus(false) : null, false)
  }

  #cleanUpTarget(): void {
    const ctx = this.ctx
    if (ctx.outbound !== null && !ctx.outbound.destroyed) ctx.outbound.destroy()
    ctx.association?.close()
  }

  /**
   * Sends the last message and closes. The client's FIN (or the linger timer) completes the close,
   * so the reply is not lost to a reset caused by unread bytes still in our receive buffer.
   */
  #closeWith(last: Buffer | null, abort: boolean): void {
    const socket = this.socket
    // A forwarded request's socket is its exchange: nothing is written on it but the response.
    if (abort || this.ctx.exchange !== null) {
      socket.destroy()
      return
    }
    this.#phase = 'closing'
    this.#waiter = null
    if (last !== null) socket.end(last)
    else socket.end()
    this.#arm(LINGER_MS)
    socket.resume()
  }

  #handleData(chunk: Buffer): void {
    if (this.#phase === 'closing') return
    try {
      this.#reader.push(chunk)
    } catch (err) {
      this.#pendingError = err
      this.socket.pause()
      const waiter = this.#waiter
      this.#waiter = null
      waiter?.reject(err)
      return
    }
    const waiter = this.#waiter
    if (waiter === null) {
      // Nobody is reading (a middleware or the dial is running): keep what came (pipelined payload)
      // and keep listening, so a client that leaves is noticed at once; past a bound, let the
      // kernel hold the rest.
      if (this.#reader.length >= HOLD_WHILE_BUSY) this.socket.pause()
      return
    }
    let value: unknown
    try {
      value = this.#reader.read(waiter.parse)
    } catch (err) {
      this.#waiter = null
      this.socket.pause()
      waiter.reject(err)
      return
    }
    if (value !== undefined) {
      this.#waiter = null
      waiter.resolve(value)
    }
  }

  #handleEnd(): void {
    this.#ended = true
    if (this.#phase === 'closing') {
      this.socket.destroy()
      return
    }
    const waiter = this.#waiter
    if (waiter !== null) {
      this.#waiter = null
      waiter.reject(new SocksError('ERR_SOCKS_CLIENT_CLOSED', 'client closed the connection during the handshake'))
    }
  }

  #handleError(err: Error): void {
    this.ctx.error ??= err
  }

  #handleClose(): void {
    if (this.#closed) return
    this.#closed = true
    this.#disarm()
    const ctx = this.ctx
    ctx.abort(ctx.error)
    const waiter = this.#waiter
    if (waiter !== null) {
      this.#waiter = null
      waiter.reject(new SocksError('ERR_SOCKS_CLIENT_CLOSED'))
    }
    if (this.#session !== null) this.#session.closed()
    if (this.#phase !== 'relay') this.#cleanUpTarget()
    this.#phase = 'done'
    if (this.#relaying) this.#endPending = true
    else this.#reportEnd()
  }

  #reportEnd(): void {
    this.#endPending = false
    const ctx = this.ctx
    if (channels.close.hasSubscribers) channels.close.publish({ ctx, error: ctx.error })
    this.#onClosed(this)
    this.#endReported = true
    this.#resolveEnded?.()
  }

  #endReported = false

  #resolveEnded: (() => void) | null = null
  #endedPromise: Promise<void> | null = null

  /**
   * Settles once the connection's end is reported (`disconnect`): after its socket closed and its
   * relay chain settled. What a forced close waits for (made on first use).
   */
  get ended(): Promise<void> {
    return (this.#endedPromise ??= this.#endReported
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          this.#resolveEnded = resolve
        }))
  }

  readonly #onUnexpected = (err: unknown): void => {
    this.host.reportBug(err, this.ctx)
    this.destroy(err)
    // The chain that failed will not report the end it was keeping back.
    if (this.#endPending) this.#reportEnd()
  }
}

function toCredentials(request: PasswordRequest): Credentials {
  const credentials = { username: request.username } as { username: string; password: string }
  // Kept off enumerable properties so a logged or serialised context never shows it.
  Object.defineProperty(credentials, 'password', { value: request.password, enumerable: false })
  return credentials
}

function localAddressOf(socket: Socket | null): Address {
  if (socket === null || socket.localAddress === undefined) return { type: 'ipv4', host: '0.0.0.0', port: 0 }
  return toAddress(unmapIPv4(socket.localAddress), socket.localPort ?? 0)
}

function hasErrno(err: unknown): boolean {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string'
}

