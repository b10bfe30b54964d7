// The HTTP proxy front of a listener that takes `http`: node:http's own parser reads the client's
// request (no hand-written HTTP parser), then the connection goes through the same phases as a
// SOCKS CONNECT. Answers to refusals are HTTP statuses.
import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { SocksError, isSocksError } from './errors.js'
import type { Address } from '../protocol/address.js'
import { ipFamily } from '../protocol/ip-family.js'

/** The first request of an HTTP client: a CONNECT with what came after its head, or a request that is not one. */
export type HttpFirstRequest = { readonly kind: 'connect'; readonly request: IncomingMessage; readonly head: Buffer } | { readonly kind: 'other'; readonly request: IncomingMessage; readonly response: ServerResponse }

/** Longest request head accepted (request line and headers); past it, 431. */
export const MAX_HTTP_HEADER = 16 * 1024

const kWaiter = Symbol('socksmith.httpWaiter')
type WaitingSocket = Socket & { [kWaiter]?: { resolve: (first: HttpFirstRequest) => void; reject: (err: unknown) => void } }

let front: HttpServer | null = null

/** One http.Server for the process, never listening: it only parses the sockets handed to it. */
function httpFront(): HttpServer {
  if (front !== null) return front
  front = createHttpServer({ maxHeaderSize: MAX_HTTP_HEADER, requestTimeout: 0, headersTimeout: 0, keepAliveTimeout: 0 })
  front.on('connect', (request: IncomingMessage, socket: Socket, head: Buffer) => {
    releaseFromHttp(socket)
    settle(socket, (waiter) => waiter.resolve({ kind: 'connect', request, head }))
  })
  const other = (request: IncomingMessage, response: ServerResponse): void => settle(request.socket, (waiter) => waiter.resolve({ kind: 'other', request, response }))
  front.on('request', other)
  // Without these node answers an unusual Expect (417) and takes an Upgrade request off its
  // parser itself, and the waiter would never hear of the request.
  front.on('checkExpectation', other)
  front.on('upgrade', (request: IncomingMessage, socket: Socket) => {
    settle(socket, (waiter) => waiter.reject(new SocksError('ERR_SOCKS_COMMAND_NOT_SUPPORTED', `HTTP ${request.method ?? ''} with Upgrade: only CONNECT is served`, { reply: null })))
    if (socket.writable) socket.end(statusResponse(501, 'only CONNECT is supported: use a tunnelling client\n'))
    else socket.destroy()
  })
  front.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400
    // No cause: node's parse error carries the raw request (rawPacket), credentials and all.
    settle(socket, (waiter) => waiter.reject(new SocksError('ERR_SOCKS_BAD_REQUEST', `malformed HTTP request (${err.code ?? 'parse error'})`, { reply: null })))
    if (socket.writable) socket.end(statusResponse(status, `${STATUS_CODES[status]}\n`))
    else socket.destroy()
  })
  return front
}

/**
 * node's HTTP server gives a CONNECT's socket back with its own `on`, `addListener`,
 * `prependListener` and `setEncoding` left on it as own properties (lib/_http_server.js,
 * connectionListenerInternal); the tunnel is a plain socket again, so the prototype's are restored
 * (and the relayed socket keeps the shape of every other).
 */
function releaseFromHttp(socket: Socket): void {
  const own = socket as unknown as Record<string, unknown>
  for (const name of ['on', 'addListener', 'prependListener', 'setEncoding']) {
    if (Object.hasOwn(own, name)) delete own[name]
  }
}

function settle(socket: Socket, fn: (waiter: NonNullable<WaitingSocket[typeof kWaiter]>) => void): void {
  const waiting = socket as WaitingSocket
  const waiter = waiting[kWaiter]
  if (waiter === undefined) return
  waiting[kWaiter] = undefined
  fn(waiter)
}

/**
 * Hands `socket` to node's HTTP parser, `buffered` (bytes already read from it) first, and resolves
 * with its first request. The caller has stopped reading the socket itself.
 */
export function readHttpRequest(socket: Socket, buffered: Buffer | null): Promise<HttpFirstRequest> {
  return new Promise((resolve, reject) => {
    ;(socket as WaitingSocket)[kWaiter] = { resolve, reject }
    if (buffered !== null) socket.unshift(buffered)
    httpFront().emit('connection', socket)
  })
}

/** The socket closed before its first request was read: the waiter gets ERR_SOCKS_CLIENT_CLOSED. */
export function abandonHttpRequest(socket: Socket): void {
  settle(socket, (waiter) => waiter.reject(new SocksError('ERR_SOCKS_CLIENT_CLOSED', 'client closed the connection before its HTTP request')))
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

/** What the client is told when a CONNECT fails, by the error's code (a rule refusal is 403, never 407). */
export function httpRefusal(err: unknown): Buffer {
  const code = isSocksError(err) ? err.code : null
  switch (code) {
    case 'ERR_SOCKS_AUTH_FAILED':
    case 'ERR_SOCKS_NO_ACCEPTABLE_METHOD':
      return statusResponse(407, 'proxy authentication required\n', { 'Proxy-Authenticate': 'Basic realm="socksmith"' })
    case 'ERR_SOCKS_NOT_ALLOWED':
      return statusResponse(403, 'not allowed\n')
    case 'ERR_SOCKS_CONNECT_TIMEOUT':
      return statusResponse(504, 'connect timed out\n')
    case 'ERR_SOCKS_BAD_REQUEST':
    case 'ERR_SOCKS_BAD_ADDRESS':
      return statusResponse(400, 'bad request\n')
    case 'ERR_SOCKS_SERVER_CLOSING':
      return statusResponse(503, 'server is shutting down\n')
    case 'ERR_SOCKS_HOST_UNREACHABLE':
      return statusResponse(502, 'host unreachable\n')
    case 'ERR_SOCKS_CONNECTION_REFUSED':
      return statusResponse(502, 'connection refused\n')
    case 'ERR_SOCKS_NETWORK_UNREACHABLE':
      return statusResponse(502, 'network unreachable\n')
    default:
      return statusResponse(502, 'connect failed\n')
  }
}
