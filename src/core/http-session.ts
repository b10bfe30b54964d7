// The life of an HTTP proxy client's TCP connection: node's parser reads request after request
// (keep-alive, pipelining), and each plain request (`GET http://host/path`) becomes a connection
// of its own in the server's eyes, walking the phases with its own context, routed on its own
// (gost#592 sent a keep-alive connection's second host's request to the first host). They run one
// at a time, in the order they came; node writes their responses in that order. A CONNECT ends
// the session: once every request before it has ended, the tunnel goes through the phases on the
// TCP connection's own context, as a first CONNECT does. Between requests the session may keep the
// origin socket of the last one (origin-park.ts): the next request reuses it only if its own
// connect phase would dial the same thing; it closes when the session ends.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { SocksError } from './errors.js'
import { releaseHttp, serveHttp, type HttpClientHandler } from './http-front.js'
import { HttpExchange, type HttpForwardSettings } from '../commands/http-forward.js'
import { OriginPark } from '../commands/origin-park.js'

/** What a session needs of the connection that drives the TCP socket. */
export interface HttpSessionOwner {
  /** Runs one forwarded request as a connection of its own; settles when that connection's end is reported. */
  forwardExchange(exchange: HttpExchange): Promise<void>
  /** No request is in progress (true): the keep-alive deadline runs; false: it stops. */
  keepAliveIdle(waiting: boolean): void
}

/** A CONNECT that came after plain requests, or as the first request. */
export interface HttpTunnelRequest {
  readonly request: IncomingMessage
  readonly head: Buffer
}

/**
 * Requests a client may have waiting behind the one in progress before its connection is closed:
 * node parses pipelined requests ahead, and each waiting one holds its parsed head.
 */
const MAX_WAITING = 32

export class HttpSession implements HttpClientHandler {
  readonly #owner: HttpSessionOwner
  readonly #socket: Socket
  readonly #settings: HttpForwardSettings
  readonly #waiting: [IncomingMessage, ServerResponse][] = []
  #active = false
  #over = false
  #tunnel: HttpTunnelRequest | null = null
  /** The origin socket kept between requests. */
  readonly #origins = new OriginPark()
  #resolve: ((tunnel: HttpTunnelRequest) => void) | null = null
  #reject: ((err: unknown) => void) | null = null

  constructor(owner: HttpSessionOwner, socket: Socket, settings: HttpForwardSettings) {
    this.#owner = owner
    this.#socket = socket
    this.#settings = settings
  }

  /**
   * Hands the socket to node's parser (`buffered` first). Resolves with a CONNECT once every
   * request before it has ended; rejects with the refusal node answered (400, 431, Upgrade), or
   * ERR_SOCKS_CLIENT_CLOSED when the client leaves. A client that only forwards never resolves it.
   */
  start(buffered: Buffer | null): Promise<HttpTunnelRequest> {
    const settled = new Promise<HttpTunnelRequest>((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
    serveHttp(this.#socket, buffered, this)
    return settled
  }

  /** @internal node read a request. */
  request(request: IncomingMessage, response: ServerResponse): void {
    if (this.#over) {
      response.destroy()
      return
    }
    const expect = request.headers.expect
    if (expect !== undefined && expect.toLowerCase() !== '100-continue') {
      // node leaves an unusual Expect to us (its checkExpectation event); the origin never sees it.
      response.shouldKeepAlive = false
      response.writeHead(417, { 'Content-Type': 'text/plain; charset=utf-8' }).end('only Expect: 100-continue is understood\n')
      return
    }
    if (this.#tunnel !== null || this.#waiting.length >= MAX_WAITING) {
      this.#end(new SocksError('ERR_SOCKS_BAD_REQUEST', this.#tunnel !== null ? 'an HTTP request after a CONNECT' : `more than ${MAX_WAITING} pipelined HTTP requests waiting`, { reply: null }))
      this.#socket.destroy()
      return
    }
    this.#waiting.push([request, response])
    this.#next()
  }

  /** @internal node read a CONNECT and let go of the socket. */
  connect(request: IncomingMessage, head: Buffer): void {
    if (this.#over) return
    this.#tunnel = { request, head }
    this.#next()
  }

  /** @internal node answered a request it could not take, and closes the connection. */
  refused(err: SocksError): void {
    this.#end(err)
  }

  /** No request in progress or waiting: the connection is between requests. */
  get idle(): boolean {
    return !this.#active && !this.#over && this.#waiting.length === 0
  }

  /** The client's connection closed: nothing more is read or forwarded. */
  closed(): void {
    this.#end(new SocksError('ERR_SOCKS_CLIENT_CLOSED', 'client closed the connection'))
  }

  #next(): void {
    if (this.#active || this.#over) return
    const next = this.#waiting.shift()
    if (next === undefined) {
      const tunnel = this.#tunnel
      if (tunnel !== null) {
        this.#over = true
        this.#origins.close()
        releaseHttp(this.#socket)
        this.#resolve?.(tunnel)
        this.#resolve = this.#reject = null
      } else this.#owner.keepAliveIdle(true)
      return
    }
    this.#owner.keepAliveIdle(false)
    this.#active = true
    const exchange = new HttpExchange(this.#socket, next[0], next[1], this.#settings, this.#origins)
    void this.#owner.forwardExchange(exchange).then(() => {
      this.#active = false
      this.#next()
    })
  }

  #end(err: unknown): void {
    if (this.#over) return
    this.#over = true
    this.#waiting.length = 0
    this.#origins.close()
    releaseHttp(this.#socket)
    this.#reject?.(err)
    this.#resolve = this.#reject = null
  }
}
