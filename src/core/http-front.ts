// The HTTP proxy front of a listener that takes `http`: node:http's own parser reads the client's
// requests (no hand-written HTTP parser) and hands each to the socket's handler (http-session.ts):
// a CONNECT, or a plain request to forward. What the targets mean, and the HTTP form of refusals.
import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import { Socket } from 'node:net'
import { SocksError, isSocksError } from './errors.js'
import type { Address } from '../protocol/address.js'
import { ipFamily } from '../protocol/ip-family.js'

/**
 * Who hears what node's parser reads from one socket: every request in order (keep-alive,
 * pipelining), a CONNECT (node then lets go of the socket), or a request it answered itself and
 * closes on (400, 431, an Upgrade's 501).
 */
export interface HttpClientHandler {
  request(request: IncomingMessage, response: ServerResponse): void
  connect(request: IncomingMessage, head: Buffer): void
  refused(err: SocksError): void
}

/** Longest request head accepted (request line and headers); past it, 431. */
export const MAX_HTTP_HEADER = 16 * 1024

const kHandler = Symbol('socksmith.httpHandler')
type ParsedSocket = Socket & { [kHandler]?: HttpClientHandler }

let front: HttpServer | null = null
const SocketPrototype = Socket.prototype

/** See onRequest in httpFront(): the client's leaving reaches the connection through its socket. */
function ignoreRequestError(): void {}

/** One http.Server for the process, never listening: it only parses the sockets handed to it. */
function httpFront(): HttpServer {
  if (front !== null) return front
  // keepAliveTimeout 0: node arms no timer of its own between requests; the connection's own
  // deadline bounds a keep-alive client that sends nothing (core/http-session.ts).
  front = createHttpServer({ maxHeaderSize: MAX_HTTP_HEADER, requestTimeout: 0, headersTimeout: 0, keepAliveTimeout: 0 })
  front.on('connect', (request: IncomingMessage, socket: Socket, head: Buffer) => {
    request.on('error', ignoreRequestError)
    releaseFromHttp(socket)
    const handler = (socket as ParsedSocket)[kHandler]
    if (handler === undefined) socket.destroy()
    else handler.connect(request, head)
  })
  const onRequest = (request: IncomingMessage, response: ServerResponse): void => {
    // A request whose client leaves before its body ended emits 'error' ("aborted", ECONNRESET;
    // node's _http_server.js abortIncoming): a request still waiting its turn behind a pipelined
    // one has no listener of the forwarder yet, and an unheard 'error' would end the process. The
    // connection hears of the client leaving from its socket; here the error only needs a listener.
    request.on('error', ignoreRequestError)
    const handler = (request.socket as ParsedSocket)[kHandler]
    if (handler === undefined) response.destroy()
    else handler.request(request, response)
  }
  front.on('request', onRequest)
  // Without these node answers an unusual Expect (417) and takes an Upgrade request off its
  // parser itself, and the handler would never hear of the request. With checkContinue heard,
  // node no longer sends `100 Continue` at once: the forwarder sends it once the request has been
  // let through (auth, rules, the dial), so a refused client is not invited to upload its body.
  front.on('checkExpectation', onRequest)
  front.on('checkContinue', onRequest)
  front.on('upgrade', (request: IncomingMessage, socket: Socket) => {
    ;(socket as ParsedSocket)[kHandler]?.refused(new SocksError('ERR_SOCKS_COMMAND_NOT_SUPPORTED', `HTTP ${request.method ?? ''} with Upgrade: not forwarded (WebSocket clients tunnel with CONNECT)`, { reply: null }))
    if (socket.writable) socket.end(statusResponse(501, 'Upgrade is not supported: use CONNECT\n'))
    else socket.destroy()
  })
  front.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400
    // No cause: node's parse error carries the raw request (rawPacket), credentials and all.
    ;(socket as ParsedSocket)[kHandler]?.refused(new SocksError('ERR_SOCKS_BAD_REQUEST', `malformed HTTP request (${err.code ?? 'parse error'})`, { reply: null }))
    // Behind a response still being written (a pipelined request went bad) an answer would land
    // inside it: the connection just closes.
    if (socket.writable && (socket as { _httpMessage?: unknown })._httpMessage == null) socket.end(statusResponse(status, `${STATUS_CODES[status]}\n`))
    else socket.destroy()
  })
  return front
}

/**
 * node's HTTP server gives a CONNECT's socket back with its own `on`, `addListener`,
 * `prependListener` and `setEncoding` left on it as own properties (lib/_http_server.js,
 * connectionListenerInternal); the tunnel is a plain socket again, so they become the prototype's
 * methods. Assigned, not deleted, as node's own socketListenerWrap does once the parser is gone:
 * deleting a property other than the last one added turns the socket into a dictionary-mode
 * object, and every property access of the relay and the close after it takes V8's slow path
 * (callgrind: ~+40k instructions per HTTP CONNECT in LoadIC/KeyedLoadIC misses and NameDictionary
 * work).
 */
function releaseFromHttp(socket: Socket): void {
  const own = socket as unknown as Record<string, unknown>
  if (Object.hasOwn(own, 'on')) own.on = SocketPrototype.on
  if (Object.hasOwn(own, 'addListener')) own.addListener = SocketPrototype.addListener
  if (Object.hasOwn(own, 'prependListener')) own.prependListener = SocketPrototype.prependListener
  if (Object.hasOwn(own, 'setEncoding')) own.setEncoding = SocketPrototype.setEncoding
}

/**
 * Hands `socket` to node's HTTP parser, `buffered` (bytes already read from it) first; `handler`
 * hears each request. The caller has stopped reading the socket itself.
 */
export function serveHttp(socket: Socket, buffered: Buffer | null, handler: HttpClientHandler): void {
  ;(socket as ParsedSocket)[kHandler] = handler
  if (buffered !== null) socket.unshift(buffered)
  httpFront().emit('connection', socket)
}

/** The handler hears nothing more of `socket` (it closed, or it is a tunnel now). */
export function releaseHttp(socket: Socket): void {
  ;(socket as ParsedSocket)[kHandler] = undefined
}

/**
 * The target of `CONNECT host:port` (authority form, RFC 9110 §9.3.6): a name, an IPv4 address or
 * a bracketed IPv6 one, and a port. Anything else is ERR_SOCKS_BAD_REQUEST (400).
 */
export function parseConnectTarget(target: string | undefined): Address {
  const match = target === undefined ? null : /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]/@]+)):(\d{1,5})$/.exec(target)
  const port = match === null ? 0 : Number(match[3])
  if (match === null || port < 1 || port > 65535) throw new SocksError('ERR_SOCKS_BAD_REQUEST', `CONNECT needs host:port, found ${JSON.stringify(target ?? '')}`, { reply: null })
  if (match[1] !== undefined) {
    if (ipFamily(match[1]) !== 6) throw new SocksError('ERR_SOCKS_BAD_REQUEST', `not an IPv6 address: [${match[1]}]`, { reply: null })
    return { type: 'ipv6', host: match[1], port }
  }
  const host = match[2]!
  return ipFamily(host) === 4 ? { type: 'ipv4', host, port } : { type: 'domain', host, port }
}

/** Where an absolute-form request goes: its destination, the authority for Host, and the origin-form target. */
export interface ProxyTarget {
  readonly destination: Address
  /** `host[:port]` as the Host header names it (the port only when it is not 80). */
  readonly authority: string
  /** The request target as the origin gets it (origin form, RFC 9112 §3.2.1): path and query, as the client wrote them. */
  readonly path: string
}

/**
 * The target of a proxy request in absolute form (`GET http://host[:port]/path?query`, RFC 9112
 * §3.2.2). The authority goes through the WHATWG URL parser (lower case, IDNA, the numeric IPv4
 * forms a resolver would also accept), so the rules see the host that is dialled; userinfo is
 * dropped; the path is passed on as written, without a fragment. Anything else (origin form, an
 * `https://` URL, which a client sends through CONNECT) is ERR_SOCKS_BAD_REQUEST (400).
 */
export function parseProxyTarget(target: string | undefined): ProxyTarget {
  const match = target === undefined ? null : /^http:\/\/([^/?#]*)([^#]*)/i.exec(target)
  let url: URL | null = null
  if (match !== null) {
    try {
      url = new URL(`http://${match[1]!}/`)
    } catch {
      url = null
    }
  }
  if (match === null || url === null || url.hostname.length === 0) {
    const why = target?.startsWith('/') === true ? 'not a proxy request (origin-form target)' : 'only http:// URLs are forwarded (https goes through CONNECT)'
    throw new SocksError('ERR_SOCKS_BAD_REQUEST', `${why}: ${JSON.stringify((target ?? '').slice(0, 200))}`, { reply: null })
  }
  const port = url.port === '' ? 80 : Number(url.port)
  const rest = match[2]!
  const path = rest.length === 0 ? '/' : rest.startsWith('/') ? rest : `/${rest}`
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  const family = ipFamily(host)
  const destination: Address = family === 6 ? { type: 'ipv6', host, port } : family === 4 ? { type: 'ipv4', host, port } : { type: 'domain', host, port }
  return { destination, authority: url.host, path }
}

/** `Proxy-Authorization: Basic <base64 user:password>` (RFC 7617), or null when absent or not Basic. */
export function parseBasicCredentials(header: string | undefined): { username: string; password: string } | null {
  if (header === undefined) return null
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header)
  if (match === null) return null
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return null
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

/** A complete response with a short plain-text body, and `Connection: close`. */
export function statusResponse(status: number, body: string, headers: Readonly<Record<string, string>> = {}): Buffer {
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`, 'Content-Type: text/plain; charset=utf-8', `Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close']
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body}`)
}

/** The tunnel is up: what a CONNECT's success is on the wire. */
export const CONNECT_ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection established\r\n\r\n')

/** An HTTP refusal: status, short plain-text body, and the headers that go with it. */
export interface HttpRefusal {
  readonly status: number
  readonly body: string
  readonly headers: Readonly<Record<string, string>>
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({})
const CHALLENGE: Readonly<Record<string, string>> = Object.freeze({ 'Proxy-Authenticate': 'Basic realm="socksmith"' })

/** What the client is told when a request fails, by the error's code (a rule refusal is 403, never 407). */
export function refusalOf(err: unknown): HttpRefusal {
  const code = isSocksError(err) ? err.code : null
  switch (code) {
    case 'ERR_SOCKS_AUTH_FAILED':
    case 'ERR_SOCKS_NO_ACCEPTABLE_METHOD':
      return { status: 407, body: 'proxy authentication required\n', headers: CHALLENGE }
    case 'ERR_SOCKS_NOT_ALLOWED':
      return { status: 403, body: 'not allowed\n', headers: NO_HEADERS }
    case 'ERR_SOCKS_CONNECT_TIMEOUT':
      return { status: 504, body: 'connect timed out\n', headers: NO_HEADERS }
    case 'ERR_SOCKS_BAD_REQUEST':
    case 'ERR_SOCKS_BAD_ADDRESS':
      return { status: 400, body: 'bad request\n', headers: NO_HEADERS }
    case 'ERR_SOCKS_COMMAND_NOT_SUPPORTED':
      return { status: 501, body: 'not supported\n', headers: NO_HEADERS }
    case 'ERR_SOCKS_SERVER_CLOSING':
      return { status: 503, body: 'server is shutting down\n', headers: NO_HEADERS }
    case 'ERR_SOCKS_HOST_UNREACHABLE':
      return { status: 502, body: 'host unreachable\n', headers: NO_HEADERS }
    case 'ERR_SOCKS_CONNECTION_REFUSED':
      return { status: 502, body: 'connection refused\n', headers: NO_HEADERS }
    case 'ERR_SOCKS_NETWORK_UNREACHABLE':
      return { status: 502, body: 'network unreachable\n', headers: NO_HEADERS }
    default:
      return { status: 502, body: 'connect failed\n', headers: NO_HEADERS }
  }
}

/** What the client is told when a CONNECT fails: the refusal as a complete response, then the connection closes. */
export function httpRefusal(err: unknown): Buffer {
  const { status, body, headers } = refusalOf(err)
  return statusResponse(status, body, headers)
}
