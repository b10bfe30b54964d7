import type { Socket } from 'node:net'
import { isIP } from 'node:net'
import { Reply, SocksError, type Address } from 'socksmith'
import { exchange } from './exchange.js'

/** SOCKS4 reply codes (CD of the reply). */
export const Socks4Status = {
  GRANTED: 90,
  REJECTED: 91,
  NO_IDENTD: 92,
  IDENTD_MISMATCH: 93,
} as const

/**
 * What a SOCKS4 refusal means for our client. SOCKS4 has one code for "refused by rules" and "the
 * connect failed", so 91 can only be a general failure; the identd codes are refusals.
 */
const STATUS_TO_REPLY: Readonly<Record<number, Reply>> = {
  [Socks4Status.REJECTED]: Reply.GENERAL_FAILURE,
  [Socks4Status.NO_IDENTD]: Reply.NOT_ALLOWED,
  [Socks4Status.IDENTD_MISMATCH]: Reply.NOT_ALLOWED,
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  [Socks4Status.REJECTED]: 'request rejected or failed',
  [Socks4Status.NO_IDENTD]: 'no identd reachable on the client',
  [Socks4Status.IDENTD_MISMATCH]: 'identd reports a different user id',
}

/**
 * Encodes a SOCKS4 CONNECT request, or a SOCKS4a one when `destination` is a domain.
 *
 *   +----+----+----+----+----+----+----+----+----+----+....+----+....+----+
 *   | VN | CD | DSTPORT |      DSTIP        | USERID       |NULL| HOST |NULL|
 *   +----+----+----+----+----+----+----+----+----+----+....+----+....+----+
 *      1    1      2              4           variable       1   (4a only)
 *
 * VN = 4, CD = 1 (CONNECT). SOCKS4a marks a name with DSTIP 0.0.0.1 (0.0.0.x, x ≠ 0) and appends it.
 */
export function encodeSocks4Request(destination: Address, userId: string): Buffer {
  const domain = destination.type === 'domain'
  if (!domain && isIP(destination.host) !== 4) {
    throw new SocksError('ERR_SOCKS_ADDRESS_TYPE_NOT_SUPPORTED', `SOCKS4 carries IPv4 destinations only, not ${destination.host}`)
  }
  if (domain && (destination.host.includes('\0') || destination.host.length === 0)) throw new SocksError('ERR_SOCKS_BAD_ADDRESS', 'invalid domain name')
  const user = Buffer.from(userId, 'utf8')
  const name = domain ? Buffer.from(destination.host, 'utf8') : null
  const request = Buffer.alloc(8 + user.length + 1 + (name === null ? 0 : name.length + 1))
  request[0] = 4
  request[1] = 1
  request.writeUInt16BE(destination.port, 2)
  if (name === null) {
    const octets = destination.host.split('.')
    for (let i = 0; i < 4; i++) request[4 + i] = Number(octets[i])
  } else {
    request[7] = 1
  }
  user.copy(request, 8)
  if (name !== null) name.copy(request, 8 + user.length + 1)
  return request
}

/**
 * Parses the 8-byte SOCKS4 reply.
 *
 *   +----+----+----+----+----+----+----+----+
 *   | VN | CD | DSTPORT |      DSTIP        |
 *   +----+----+----+----+----+----+----+----+
 *      1    1      2              4
 *
 * VN is 0 by the protocol; a few servers echo 4, which is accepted. DSTPORT/DSTIP are meaningful for
 * BIND only; for CONNECT most servers send zeros.
 */
export function parseSocks4Reply(buf: Buffer): { value: { status: number; bound: Address }; length: number } | null {
  if (buf.length < 8) return null
  if (buf[0] !== 0 && buf[0] !== 4) throw new SocksError('ERR_SOCKS_MALFORMED', `reply version ${buf[0]} is not a SOCKS4 reply`)
  const host = `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`
  return { value: { status: buf[1]!, bound: { type: 'ipv4', host, port: buf.readUInt16BE(2) } }, length: 8 }
}

/**
 * Runs a SOCKS4/4a CONNECT over `socket`. Resolves with the reply's address when it names one
 * (not 0.0.0.0), else null. A refusal is ERR_SOCKS_REPLY with the matching SOCKS5 REP.
 */
export async function socks4Connect(socket: Socket, destination: Address, userId: string, options: { name: string; signal: AbortSignal }): Promise<Address | null> {
  const request = encodeSocks4Request(destination, userId)
  const { status, bound } = await exchange(socket, request, parseSocks4Reply, { name: options.name, maxLength: 8, signal: options.signal })
  if (status !== Socks4Status.GRANTED) {
    const text = STATUS_TEXT[status] ?? `unknown status ${status}`
    throw new SocksError('ERR_SOCKS_REPLY', `${options.name} refused CONNECT: ${text} (${status})`, { reply: STATUS_TO_REPLY[status] ?? Reply.GENERAL_FAILURE })
  }
  return bound.host === '0.0.0.0' ? null : bound
}
