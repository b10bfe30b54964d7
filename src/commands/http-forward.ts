// Plain HTTP forwarding (`GET http://host/path` to an HTTP proxy): one request, after its connect
// phase dialled the origin (directly or through an upstream), goes to the origin over that socket
// and its response comes back. node:http frames both sides (no hand-written HTTP); the bodies go
// through the relay's own pump, so ctx.tap, ctx.throttle, the idle timeout and the byte counts of
// a forwarded request behave as on a tunnel, counted in body bytes.
//
//   client TCP ─ node's parser ─ IncomingMessage ─┐               ┌─ ClientRequest ─ outbound socket ─ origin
//                                                 ForwardedClient ⇄ OriginBody   (relay pump)
//   client TCP ─ ServerResponse ──────────────────┘               └─ IncomingMessage (the origin's response)
import { request as httpRequest, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { Duplex } from 'node:stream'
import { SocksError, toSocksError } from '../core/errors.js'
import { refusalOf, type HttpRefusal, type ProxyTarget } from '../core/http-front.js'
import { forwardRequestHeaders, forwardResponseHeaders, VIA_PSEUDONYM, type ForwardHeaderOptions } from '../protocol/http-headers.js'
import { relay, relayThrough, type RelayOptions } from './relay.js'
import type { Address } from '../protocol/address.js'
import type { OriginKey, OriginPark } from './origin-park.js'

/**
 * The client side of one forwarded request, as the relay (and `ctx.socket`) sees it: reading it
 * reads the request body, writing it writes the response body. It closes when the body has been
 * read and the response written, or when the exchange fails; a response cut short takes the
 * client's TCP connection with it (nothing else can tell the client the body is incomplete).
 * Byte counts are body bytes; the address fields are the TCP connection's.
 */
export class ForwardedClient extends Duplex {
  #bytesRead = 0
  #bytesWritten = 0
  #reading = false
  readonly #tcp: Socket
  readonly #request: IncomingMessage
  readonly #response: ServerResponse
  readonly #onBody = (chunk: Buffer): void => {
    this.#bytesRead += chunk.length
    if (!this.push(chunk)) this.#request.pause()
  }
  readonly #onBodyEnd = (): void => {
    this.push(null)
  }
  readonly #onAborted = (): void => {
    this.destroy(new SocksError('ERR_SOCKS_CLIENT_CLOSED', 'the client left during its request'))
  }
  readonly #onResponseClose = (): void => {
    if (!this.#response.writableFinished) this.destroy(new SocksError('ERR_SOCKS_CLIENT_CLOSED', 'the client left before the response was complete'))
  }

  constructor(tcp: Socket, request: IncomingMessage, response: ServerResponse) {
    super({ allowHalfOpen: true })
    this.#tcp = tcp
    this.#request = request
    this.#response = response
    request.on('error', this.#onAborted)
    response.on('close', this.#onResponseClose)
  }

  get bytesRead(): number {
    return this.#bytesRead
  }

  get bytesWritten(): number {
    return this.#bytesWritten
  }

  get remoteAddress(): string | undefined {
    return this.#tcp.remoteAddress
  }

  get remotePort(): number | undefined {
    return this.#tcp.remotePort
  }

  get remoteFamily(): string | undefined {
    return this.#tcp.remoteFamily
  }

  get localAddress(): string | undefined {
    return this.#tcp.localAddress
  }

  get localPort(): number | undefined {
    return this.#tcp.localPort
  }

  /** The request body is read only once the relay asks: until then the client's socket is held back. */
  override _read(): void {
    if (!this.#reading) {
      this.#reading = true
      this.#request.on('data', this.#onBody)
      this.#request.on('end', this.#onBodyEnd)
    }
    this.#request.resume()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.#bytesWritten += chunk.length
    if (this.#response.write(chunk)) done()
    else this.#response.once('drain', () => done())
  }

  override _final(done: (err?: Error | null) => void): void {
    this.#response.end()
    done()
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    const request = this.#request
    const response = this.#response
    request.removeListener('data', this.#onBody)
    request.removeListener('end', this.#onBodyEnd)
    request.removeListener('error', this.#onAborted)
    response.removeListener('close', this.#onResponseClose)
    if (!response.writableEnded) response.destroy()
    // The response is complete but the body is not: read the rest off the wire (node's parser
    // knows where it ends), or the next request on this connection could never be read.
    else if (!request.complete) request.resume()
    done(err)
  }
}

/**
 * The origin side of one forwarded request: writing it writes the request body to the origin,
 * reading it reads the origin's response body. It exists before the relay phase (so ctx.tap and
 * ctx.throttle of the `outbound` side land on it) and is given its ClientRequest when the relay
 * terminal forwards.
 */
class OriginBody extends Duplex {
  #bytesRead = 0
  #bytesWritten = 0
  #request: ClientRequest | null = null
  #response: IncomingMessage | null = null
  /** The request body ended (_final ran): a request sent again is ended at once. */
  #ended = false
  /** _final's callback, until node has written the whole request. */
  #finalDone: ((err?: Error | null) => void) | null = null
  readonly #onRequestFinished = (): void => {
    const done = this.#finalDone
    this.#finalDone = null
    done?.()
  }

  constructor() {
    super({ allowHalfOpen: true })
  }

  get bytesRead(): number {
    return this.#bytesRead
  }

  get bytesWritten(): number {
    return this.#bytesWritten
  }

  /**
   * Starts the exchange with the origin: `onHead` writes the response head to the client (false:
   * it could not). `retry`: the request may be sent once more, on the socket it gives, if this
   * one's socket is reset before any response (a reused origin socket the origin was closing).
   */
  start(request: ClientRequest, onHead: (response: IncomingMessage) => boolean, onEarlyFailure: (err: unknown) => void, retry: (() => Promise<ClientRequest>) | null = null): void {
    this.#request = request
    request.on('response', (response: IncomingMessage) => {
      if (this.destroyed) {
        response.destroy()
        return
      }
      this.#response = response
      if (!onHead(response)) {
        const err = new SocksError('ERR_SOCKS_CONNECT_FAILED', 'the origin sent a response head that cannot be passed on')
        onEarlyFailure(err)
        response.destroy()
        this.destroy(err)
        return
      }
      response.on('data', (chunk: Buffer) => {
        this.#bytesRead += chunk.length
        if (!this.push(chunk)) response.pause()
      })
      response.on('end', () => this.push(null))
      response.on('error', (err: Error) => this.destroy(err))
    })
    request.on('error', (err: Error) => {
      if (request !== this.#request) return
      if (retry !== null && this.#response === null && !this.destroyed && RESET_CODES.has((err as NodeJS.ErrnoException).code ?? '')) {
        retry().then((next) => {
          if (this.destroyed) {
            next.destroy()
            return
          }
          this.start(next, onHead, onEarlyFailure)
          if (this.#ended) next.end(this.#onRequestFinished)
        }, (failure: unknown) => {
          onEarlyFailure(failure)
          this.destroy(failure instanceof Error ? failure : new SocksError('ERR_SOCKS_CONNECT_FAILED', String(failure)))
        })
        return
      }
      // Before its head the origin's failure is still the client's answer: 502 (or what the errno maps to).
      if (this.#response === null) onEarlyFailure(err)
      this.destroy(err)
    })
  }

  override _read(): void {
    this.#response?.resume()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    const request = this.#request
    if (request === null) {
      done(new SocksError('ERR_SOCKS_CONNECT_FAILED', 'request body before the request'))
      return
    }
    this.#bytesWritten += chunk.length
    if (request.write(chunk)) done()
    else request.once('drain', () => done())
  }

  override _final(done: (err?: Error | null) => void): void {
    const request = this.#request
    if (request === null) return done()
    // Finished once node has written the whole request: the exchange does not end (and destroy
    // the request) before node could keep its socket alive (it does only after both messages end).
    this.#ended = true
    this.#finalDone = done
    request.end(this.#onRequestFinished)
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.#response?.destroy()
    this.#request?.destroy()
    done(err)
  }
}

/** What a listener's `http` options make of forwarded messages (ListenOptions.http, resolved). */
export interface HttpForwardSettings {
  /** `Via: 1.1 <via>` on requests and responses; null: no Via. */
  readonly via: string | null
  /** Append the client's address to X-Forwarded-For. */
  readonly forwardedFor: boolean
}

/** What a socket the origin closed as the request went out fails with (by errno, never by message). */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED'])

/** A request that can be sent again: nothing in it changes anything, and it has no body to replay. */
function isRepeatable(request: IncomingMessage): boolean {
  const method = request.method
  if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS') return false
  const length = request.headers['content-length']
  return request.headers['transfer-encoding'] === undefined && (length === undefined || length === '0')
}

/**
 * An origin socket the connect terminal dialled or reused has no 'error' listener of its own until
 * node's client takes it (the relay middleware may await first), nor after node hands it back
 * (lib/_http_client.js responseKeepAlive): this one stays on it until it is parked or closed. The
 * failure itself reaches the exchange through node's client, or the park's own listener.
 */
function ignoreError(): void {}

/** A reused socket was paused when taken (origin-park.ts): it reads again once node's client listens. */
function resumeSocket(socket: Socket): void {
  socket.resume()
}

/**
 * One forwarded request: what came from the client, the client side the relay reads and writes,
 * the origin side, and whether its origin socket can serve the client connection's next request.
 */
export class HttpExchange {
  readonly request: IncomingMessage
  readonly response: ServerResponse
  /** `ctx.socket` of the forwarded request. */
  readonly client: ForwardedClient
  /** Where it goes, once the driver has read the request's target. */
  target: ProxyTarget | null = null
  readonly #settings: HttpForwardSettings
  #origin: OriginBody | null = null
  readonly #park: OriginPark | null
  /** What the connect terminal dialled (or reused) for this request; null: a middleware dialled, nothing is parked. */
  #originKey: OriginKey | null = null
  /** The origin socket, once node's client let go of it after a clean exchange (its 'free'): parked if the connection settles cleanly. */
  #kept: Socket | null = null
  #reused = false

  constructor(tcp: Socket, request: IncomingMessage, response: ServerResponse, settings: HttpForwardSettings, park: OriginPark | null = null) {
    this.request = request
    this.response = response
    this.#settings = settings
    this.#park = park
    // The origin's own Date (or none) goes back, not one of ours.
    response.sendDate = false
    this.client = new ForwardedClient(tcp, request, response)
  }

  /** Answers with a refusal (if nothing was answered yet) and ends the exchange; the connection lives on where HTTP allows. */
  refuse(refusal: HttpRefusal): void {
    const response = this.response
    if (!response.headersSent && !response.destroyed) {
      // A body still to come would have to be read and thrown away before the next request: the
      // connection closes after the answer instead (a refused upload is not drained).
      if (bodyPending(this.request)) response.shouldKeepAlive = false
      response.writeHead(refusal.status, { ...refusal.headers, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': String(Buffer.byteLength(refusal.body)) })
      response.end(refusal.body)
    }
    this.client.destroy()
  }

  /** The connect terminal's look for a parked origin socket that serves this request (origin-park.ts take()). */
  takeOrigin(dialer: object, user: string | null, destination: Address, resolved: string | null, addresses: readonly { address: string }[] | null): { socket: Socket; key: OriginKey } | null {
    const parked = this.#park?.take(dialer, user, destination, resolved, addresses) ?? null
    if (parked !== null) {
      this.#originKey = parked.key
      this.#reused = true
      parked.socket.on('error', ignoreError)
    }
    return parked
  }

  /** The connect terminal gave this request a parked socket rather than a dial of its own. */
  get reused(): boolean {
    return this.#reused
  }

  /** The connect terminal dialled `socket` for this request: it may be parked afterwards under `key`. */
  dialedOrigin(socket: Socket, key: OriginKey): void {
    this.#originKey = key
    socket.on('error', ignoreError)
  }

  /**
   * The connection of this request has ended: `clean` (no error, nothing cut, closed or hijacked
   * by a middleware) parks the origin socket for the client connection's next request, if node's
   * client let go of it (the response complete and framed, both messages keep-alive, the request
   * body sent) and the client's connection stays open; anything else closes it. `idleTimeout`:
   * the pipeline's (ms, 0 none); a parked socket waits no longer than it.
   */
  settle(outbound: Socket | null, clean: boolean, idleTimeout: number): void {
    const kept = this.#kept
    this.#kept = null
    if (kept === null) return
    kept.removeListener('error', ignoreError)
    const key = this.#originKey
    if (clean && key !== null && outbound === kept && this.#park !== null && this.response.shouldKeepAlive) this.#park.park(kept, key, idleTimeout)
    else kept.destroy()
  }

  /**
   * After the connect phase: the origin side exists from now on, and the `outbound` side's taps
   * and throttles (ctx.tap / ctx.throttle) act on its body rather than on the raw socket.
   */
  attach(outbound: Socket): void {
    const origin = new OriginBody()
    this.#origin = origin
    relayThrough(outbound, origin as unknown as Socket)
  }

  /**
   * Sends the request to the origin over `outbound` and relays both bodies; resolves with the
   * first error seen (null for a clean finish), as the relay does. `onEarlyFailure` hears an
   * origin that failed before its response head (the client got a 502 for it). `redial` gives
   * another socket to the same place: a request that went out on a reused socket and was reset
   * before any answer is sent once more on it, if sending it again is harmless (isRepeatable).
   */
  forward(outbound: Socket, client: string, options: RelayOptions, onEarlyFailure: (err: SocksError) => void, redial: (() => Promise<Socket>) | null = null): Promise<unknown> {
    const origin = this.#origin
    const target = this.target
    if (origin === null || target === null) return Promise.reject(new SocksError('ERR_SOCKS_CONNECT_FAILED', 'forward() before attach()'))
    const request = this.request
    const settings = this.#settings
    const headerOptions: ForwardHeaderOptions = { via: settings.via, forwardedFor: settings.forwardedFor ? client : null }
    const chunked = request.headers['transfer-encoding'] !== undefined
    // The client waits for a 100 before its body (Expect: 100-continue): it is let through now.
    if (request.headers.expect?.toLowerCase() === '100-continue') this.response.writeContinue()
    let socket = outbound
    // The socket node's client let go of after a clean exchange ('free' below), if it did.
    let freed: Socket | null = null
    const onFree = function (this: Socket): void {
      freed = this
    }
    const send = (to: Socket): ClientRequest => {
      const upstream = httpRequest({
        // No agent: the socket is the connect phase's (dialled, or parked by the request before).
        createConnection: () => to,
        method: request.method,
        path: target.path,
        // Keep-alive asked for explicitly: without an agent node would send `Connection: close`
        // for a request without a body. Whether the socket is kept is node's parser's verdict on
        // the response ('free') and the driver's on the exchange (settle()).
        headers: [...forwardRequestHeaders(request.rawHeaders, target.authority, request.httpVersion, chunked, headerOptions), 'Connection', 'keep-alive'],
        setHost: false,
      })
      // Without an agent node's client decides on Connection: close after the headers are stored
      // (lib/_http_client.js, ClientRequest: "No agent, default to Connection:close"), although the
      // head says keep-alive; its own flag is set back. Then node emits 'free' on the socket once
      // the response is complete, framed and keep-alive and the request fully written
      // (responseOnEnd → responseKeepAlive), its listeners taken off. A Node that stopped emitting
      // it would only cost the reuse: the socket is then closed with the exchange, as before.
      upstream.shouldKeepAlive = true
      to.once('free', onFree)
      upstream.once('socket', resumeSocket)
      return upstream
    }
    let upstream: ClientRequest
    try {
      upstream = send(outbound)
    } catch (err) {
      // node's client checks what its parser let through more strictly (a header value, the path).
      const refused = new SocksError('ERR_SOCKS_BAD_REQUEST', `the request cannot be forwarded: ${err instanceof Error ? err.message : String(err)}`, { reply: null })
      this.refuseHead(refusalOf(refused))
      onEarlyFailure(refused)
      origin.destroy()
      outbound.destroy()
      this.client.destroy()
      return Promise.resolve(refused)
    }
    const retry = redial === null || !isRepeatable(request)
      ? null
      : () => redial().then((next) => {
          socket.removeListener('free', onFree)
          socket.removeListener('error', ignoreError)
          socket = next
          next.on('error', ignoreError)
          return send(next)
        })
    origin.start(
      upstream,
      (response) => this.#writeHead(response, headerOptions),
      (err) => {
        const failure = toSocksError(err)
        this.refuseHead(refusalOf(failure))
        onEarlyFailure(failure)
      },
      retry,
    )
    const release = (clean: boolean): void => {
      socket.removeListener('free', onFree)
      if (clean && freed === socket && !socket.destroyed) this.#kept = socket
      else {
        socket.removeListener('error', ignoreError)
        if (!socket.destroyed) socket.destroy()
      }
    }
    // The origin's socket goes with the exchange unless node let go of it cleanly (then settle() decides).
    return relay(this.client as unknown as Socket, origin as unknown as Socket, null, options).then((error) => {
      release(error === null)
      return error
    }, (err: unknown) => {
      release(false)
      throw err
    })
  }

  /** The origin failed before its head: the client is answered, the relay's end closes the exchange. */
  refuseHead(refusal: HttpRefusal): void {
    const response = this.response
    if (response.headersSent || response.destroyed) return
    if (bodyPending(this.request)) response.shouldKeepAlive = false
    response.writeHead(refusal.status, { ...refusal.headers, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': String(Buffer.byteLength(refusal.body)) })
    response.end(refusal.body)
  }

  #writeHead(origin: IncomingMessage, options: ForwardHeaderOptions): boolean {
    try {
      this.response.writeHead(origin.statusCode ?? 502, origin.statusMessage, forwardResponseHeaders(origin.rawHeaders, origin.httpVersion, options))
      return true
    } catch {
      return false
    }
  }
}

/**
 * Part of the request's body has not been read yet. (Not just `!complete`: node marks a request
 * without a body complete only after its 'request' event, and a refusal may come before that.)
 */
function bodyPending(request: IncomingMessage): boolean {
  if (request.complete) return false
  const length = request.headers['content-length']
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

/** What a listener's HTTP proxy adds to the messages it forwards (`ListenOptions.http`). */
export interface ListenHttpOptions {
  /**
   * Add `Via: 1.1 <name>` to forwarded requests and responses (RFC 9110 §7.6.3); `true` names the
   * proxy `socksmith`, a string names it (one token: letters, digits, `!#$%&'*+.^_`|~-`). Default false.
   */
  via?: boolean | string
  /** Append the client's address to `X-Forwarded-For` of forwarded requests. Default false. */
  forwardedFor?: boolean
}

/** The keys of a listener's `http` options, for did-you-mean checks. */
export const LISTEN_HTTP_KEYS = ['via', 'forwardedFor'] as const

/** `ListenOptions.http` checked and resolved; `fail(field, message)` reports a bad field (and returns). */
export function checkListenHttp(raw: unknown, fail: (field: string, message: string) => void): HttpForwardSettings | null {
  if (raw === undefined) return null
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    fail('', `must be an object with ${LISTEN_HTTP_KEYS.join(', ')}`)
    return null
  }
  const { via, forwardedFor } = raw as ListenHttpOptions
  let name: string | null = null
  let ok = true
  if (via === true) name = 'socksmith'
  else if (typeof via === 'string') {
    if (VIA_PSEUDONYM.test(via)) name = via
    else {
      fail('via', `must be one token (letters, digits, !#$%&'*+.^_\`|~-; at most 64), found ${JSON.stringify(via)}`)
      ok = false
    }
  } else if (via !== undefined && via !== false) {
    fail('via', `must be true, false or a name, found ${JSON.stringify(via)}`)
    ok = false
  }
  if (forwardedFor !== undefined && typeof forwardedFor !== 'boolean') {
    fail('forwardedFor', `must be true or false, found ${JSON.stringify(forwardedFor)}`)
    ok = false
  }
  return ok ? Object.freeze({ via: name, forwardedFor: forwardedFor === true }) : null
}
