import type { Socket } from 'node:net'
import { Reply, SocksError, type Address } from 'socksmith'
import { exchange } from './exchange.js'

/** Largest response head accepted from an HTTP proxy (status line and headers). */
const MAX_HEAD_LENGTH = 16 * 1024

const HEAD_END = Buffer.from('\r\n\r\n')

/**
 * What an HTTP proxy's refusal means for our client. Proxies disagree on codes for "connection
 * refused" and "no such host" (Squid says 503, others 502), so only the unambiguous ones get their
 * own REP; the rest are a general failure.
 */
const STATUS_TO_REPLY: Readonly<Record<number, Reply>> = {
  401: Reply.NOT_ALLOWED,
  403: Reply.NOT_ALLOWED,
  404: Reply.HOST_UNREACHABLE,
  405: Reply.COMMAND_NOT_SUPPORTED,
  408: Reply.TTL_EXPIRED,
  504: Reply.TTL_EXPIRED,
}

export interface HttpResponseHead {
  readonly status: number
  readonly reason: string
}

/** `host:port` as a CONNECT request target: IPv6 in brackets (RFC 9110 §9.3.6, authority-form). */
export function authorityOf(destination: Address): string {
  return destination.type === 'ipv6' ? `[${destination.host}]:${destination.port}` : `${destination.host}:${destination.port}`
}

/**
 * Encodes a CONNECT request, with Basic credentials (RFC 7617) when a user name is given.
 *
 *   CONNECT host:port HTTP/1.1\r\n
 *   Host: host:port\r\n
 *   Proxy-Authorization: Basic base64(user:pass)\r\n     (only with credentials)
 *   \r\n
 */
export function encodeConnectRequest(destination: Address, username: string | null, password: string | null): Buffer {
  const authority = authorityOf(destination)
  if (/[\s\0]/.test(authority)) throw new SocksError('ERR_SOCKS_BAD_ADDRESS', 'destination name contains whitespace or NUL')
  let head = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`
  if (username !== null) head += `Proxy-Authorization: Basic ${Buffer.from(`${username}:${password ?? ''}`, 'utf8').toString('base64')}\r\n`
  return Buffer.from(`${head}\r\n`, 'latin1')
}

/**
 * Parses the proxy's response head once it is complete (ends with an empty line). Only the status
 * line matters; headers are skipped. Bytes after the head belong to the tunnel.
 */
export function parseResponseHead(buf: Buffer): { value: HttpResponseHead; length: number } | null {
  const end = buf.indexOf(HEAD_END)
  if (end === -1) return null
  const lineEnd = buf.indexOf('\r\n')
  const statusLine = buf.toString('latin1', 0, lineEnd)
  const match = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine)
  if (match === null) throw new SocksError('ERR_SOCKS_MALFORMED', `not an HTTP/1.x status line: ${JSON.stringify(statusLine.slice(0, 80))}`)
  return { value: { status: Number(match[1]), reason: match[2] ?? '' }, length: end + HEAD_END.length }
}

/**
 * Opens a tunnel with HTTP CONNECT over `socket`. A 2xx answer is success. 407 means our
 * credentials were refused: that is the upstream's problem, not the destination's, so it fails
 * like an unreachable upstream (ERR_SOCKS_AUTH_FAILED, failover in a pool). Any other status is
 * ERR_SOCKS_REPLY with the REP from the table above.
 */
export async function httpConnect(socket: Socket, destination: Address, username: string | null, password: string | null, options: { name: string; signal: AbortSignal }): Promise<void> {
  const request = encodeConnectRequest(destination, username, password)
  const head = await exchange(socket, request, parseResponseHead, { name: options.name, maxLength: MAX_HEAD_LENGTH, signal: options.signal })
  if (head.status >= 200 && head.status < 300) return
  const what = `${options.name} answered CONNECT ${authorityOf(destination)} with ${head.status} ${head.reason}`.trimEnd()
  socket.destroy()
  if (head.status === 407) throw new SocksError('ERR_SOCKS_AUTH_FAILED', `${what}${username === null ? ' (no credentials in the URL)' : ''}`)
  throw new SocksError('ERR_SOCKS_REPLY', what, { reply: STATUS_TO_REPLY[head.status] ?? Reply.GENERAL_FAILURE })
}
