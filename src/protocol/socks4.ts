// SOCKS4 and SOCKS4a, both sides: the server reads requests and writes replies, the upstream
// plugin writes requests and reads replies. SOCKS4 has no RFC; the references are the protocol
// descriptions of the NEC socks package: "SOCKS: A protocol for TCP proxy across firewalls"
// (SOCKS4.protocol) and "SOCKS 4A: A Simple Extension to SOCKS 4 Protocol" (SOCKS4A.protocol).
import { ipFamily } from './ip-family.js'
import { SocksError } from '../core/errors.js'
import type { Address } from './address.js'
import { Command } from './constants.js'
import type { Decoded } from './address.js'

/** SOCKS4 reply codes (CD of the reply). */
export const Socks4Status = {
  GRANTED: 90,
  REJECTED: 91,
  NO_IDENTD: 92,
  IDENTD_MISMATCH: 93,
} as const

/** The version byte of a SOCKS4 request. */
export const SOCKS4_VERSION = 4

/** A SOCKS4 request: CONNECT or BIND, an IPv4 address or (SOCKS4a) a name, and the USERID field. */
export interface Socks4Request {
  readonly command: typeof Command.CONNECT | typeof Command.BIND
  readonly destination: Address
  /** The USERID field (may be empty). SOCKS4 has no password: it says who the client claims to be. */
  readonly userId: string
}

/** Longest USERID and SOCKS4a name accepted (a name has at most 255 bytes, as in SOCKS5). */
const MAX_FIELD = 255

/**
 * Parses a SOCKS4 or SOCKS4a request, or returns null while incomplete.
 *
 *   +----+----+----+----+----+----+----+----+----+----+....+----+....+----+
 *   | VN | CD | DSTPORT |      DSTIP        | USERID       |NULL| HOST |NULL|
 *   +----+----+----+----+----+----+----+----+----+----+....+----+....+----+
 *      1    1      2              4           variable       1   (4a only)
 *
 * VN = 4; CD = 1 (CONNECT) or 2 (BIND), anything else is ERR_SOCKS_COMMAND_NOT_SUPPORTED. A DSTIP
 * of 0.0.0.x with x ≠ 0 marks SOCKS4a: the name follows the USERID. A USERID or name past 255 bytes
 * without its NUL is ERR_SOCKS_MALFORMED.
 */
export function parseSocks4Request(buf: Buffer): Decoded<Socks4Request> | null {
  if (buf.length < 1) return null
  if (buf[0] !== SOCKS4_VERSION) throw new SocksError('ERR_SOCKS_BAD_VERSION', `unsupported SOCKS version ${buf[0]}`)
  if (buf.length < 8) return null
  const command = buf[1]!
  const port = buf.readUInt16BE(2)
  const socks4a = buf[4] === 0 && buf[5] === 0 && buf[6] === 0 && buf[7] !== 0
  const userEnd = buf.indexOf(0, 8)
  if (userEnd < 0) {
    if (buf.length - 8 > MAX_FIELD) throw new SocksError('ERR_SOCKS_MALFORMED', 'SOCKS4 USERID longer than 255 bytes')
    return null
  }
  if (userEnd - 8 > MAX_FIELD) throw new SocksError('ERR_SOCKS_MALFORMED', 'SOCKS4 USERID longer than 255 bytes')
  const userId = buf.toString('utf8', 8, userEnd)
  let destination: Address
  let length = userEnd + 1
  if (socks4a) {
    const nameEnd = buf.indexOf(0, length)
    if (nameEnd < 0) {
      if (buf.length - length > MAX_FIELD) throw new SocksError('ERR_SOCKS_MALFORMED', 'SOCKS4a name longer than 255 bytes')
      return null
    }
    if (nameEnd - length > MAX_FIELD) throw new SocksError('ERR_SOCKS_MALFORMED', 'SOCKS4a name longer than 255 bytes')
    // latin1 keeps every byte as one character, so the core's name vetting sees what was sent.
    destination = { type: 'domain', host: buf.toString('latin1', length, nameEnd), port }
    length = nameEnd + 1
  } else {
    destination = { type: 'ipv4', host: `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`, port }
  }
  if (command !== Command.CONNECT && command !== Command.BIND) throw new SocksError('ERR_SOCKS_COMMAND_NOT_SUPPORTED', `SOCKS4 command ${command} is not CONNECT (1) or BIND (2)`)
  return { value: { command, destination, userId }, length }
}

/**
 * Encodes a SOCKS4 reply: 90 granted or 91 rejected, with the bound address (BIND's first reply
 * names where the peer should connect; CONNECT's is informational). A bound address that is not
 * IPv4 is sent as 0.0.0.0:0.
 *
 *   +----+----+----+----+----+----+----+----+
 *   | VN | CD | DSTPORT |      DSTIP        |
 *   +----+----+----+----+----+----+----+----+
 *      1    1      2              4
 *
 * VN is 0.
 */
export function encodeSocks4Reply(status: number, bound?: Address | null): Buffer {
  const reply = Buffer.alloc(8)
  reply[1] = status
  if (bound !== null && bound !== undefined && bound.type === 'ipv4' && ipFamily(bound.host) === 4) {
    reply.writeUInt16BE(bound.port, 2)
    const octets = bound.host.split('.')
    for (let i = 0; i < 4; i++) reply[4 + i] = Number(octets[i])
  }
  return reply
}

/**
 * Encodes a SOCKS4 CONNECT request, or a SOCKS4a one when `destination` is a domain (layout as
 * for parseSocks4Request; SOCKS4a sends DSTIP 0.0.0.1 and the name after the USERID).
 */
export function encodeSocks4Request(destination: Address, userId: string): Buffer {
  const domain = destination.type === 'domain'
  if (!domain && ipFamily(destination.host) !== 4) {
    throw new SocksError('ERR_SOCKS_ADDRESS_TYPE_NOT_SUPPORTED', `SOCKS4 carries IPv4 destinations only, not ${destination.host}`)
  }
  if (domain && (destination.host.includes('\0') || destination.host.length === 0)) throw new SocksError('ERR_SOCKS_BAD_ADDRESS', 'invalid domain name')
  const user = Buffer.from(userId, 'utf8')
  const name = domain ? Buffer.from(destination.host, 'utf8') : null
  const request = Buffer.alloc(8 + user.length + 1 + (name === null ? 0 : name.length + 1))
  request[0] = SOCKS4_VERSION
  request[1] = Command.CONNECT
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
 * Parses the 8-byte SOCKS4 reply (layout as for encodeSocks4Reply). VN is 0 by the protocol; a few
 * servers echo 4, which is accepted.
 */
export function parseSocks4Reply(buf: Buffer): Decoded<{ status: number; bound: Address }> | null {
  if (buf.length < 8) return null
  if (buf[0] !== 0 && buf[0] !== SOCKS4_VERSION) throw new SocksError('ERR_SOCKS_MALFORMED', `reply version ${buf[0]} is not a SOCKS4 reply`)
  const host = `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`
  return { value: { status: buf[1]!, bound: { type: 'ipv4', host, port: buf.readUInt16BE(2) } }, length: 8 }
}
