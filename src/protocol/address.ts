import ipaddr from 'ipaddr.js'
import { AddressType } from './constants.js'
import { SocksError } from '../core/errors.js'
import { toAsciiDomainName } from './domain-name.js'
import { ipFamily } from './ip-family.js'

/** A SOCKS address: what DST.ADDR/DST.PORT or BND.ADDR/BND.PORT carry. */
export interface Address {
  readonly type: 'ipv4' | 'ipv6' | 'domain'
  /** Dotted IPv4, compressed IPv6 (no brackets), or a domain name as sent. */
  readonly host: string
  readonly port: number
}

/** Result of a decoder: the value and how many bytes it used. */
export interface Decoded<T> {
  readonly value: T
  readonly length: number
}

/** Builds an Address from a host string, classifying IP literals. IPv4-mapped IPv6 stays IPv6. */
export function toAddress(host: string, port: number): Address {
  const family = ipFamily(host)
  return { type: family === 4 ? 'ipv4' : family === 6 ? 'ipv6' : 'domain', host, port }
}

/** `::ffff:1.2.3.4` → `1.2.3.4`; anything else unchanged. Node reports IPv4 peers of dual-stack sockets this way. */
export function unmapIPv4(host: string): string {
  return host.length > 7 && host.charCodeAt(0) === 58 /* : */ && host.startsWith('::ffff:') && ipFamily(host.slice(7)) === 4
    ? host.slice(7)
    : host
}

/** "host:port" with IPv6 in brackets, for logs and error messages. */
export function formatAddress(address: { host: string; port: number }): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`
}

/** Byte length of an encoded ATYP + ADDR + PORT. */
export function encodedAddressLength(address: Address): number {
  if (address.type === 'ipv4') return 1 + 4 + 2
  if (address.type === 'ipv6') return 1 + 16 + 2
  return 1 + 1 + wireName(address.host).length + 2
}

/**
 * Writes ATYP, ADDR and PORT (RFC 1928 §4/§5) at `offset`; returns the offset after it.
 *
 *   +------+----------+----------+
 *   | ATYP |   ADDR   |   PORT   |
 *   +------+----------+----------+
 *   |  1   | Variable |    2     |
 *   +------+----------+----------+
 *   ATYP 01: 4 bytes; 03: one length byte then the name, no NUL; 04: 16 bytes.
 *   A name goes out as toAsciiDomainName gives it (an IDN as its A-label, so its length in bytes is
 *   its length in characters); one that is not a host name is refused (ERR_SOCKS_BAD_ADDRESS).
 */
export function writeAddress(buf: Buffer, offset: number, address: Address): number {
  if (!Number.isInteger(address.port) || address.port < 0 || address.port > 0xffff) {
    throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `port out of range: ${address.port}`)
  }
  if (address.type === 'ipv4') {
    buf[offset++] = AddressType.IPV4
    offset = writeIPv4(buf, offset, address.host)
  } else if (address.type === 'ipv6') {
    buf[offset++] = AddressType.IPV6
    const bytes = parseIPv6(address.host)
    for (let i = 0; i < 16; i++) buf[offset++] = bytes[i]!
  } else {
    // A name that is not one (NUL, whitespace, control characters...) is never forwarded: the next
    // hop would resolve something other than what was checked here. See domain-name.ts.
    const host = wireName(address.host)
    const length = host.length
    buf[offset++] = AddressType.DOMAIN
    buf[offset++] = length
    offset += buf.write(host, offset, 'latin1')
  }
  buf[offset++] = address.port >>> 8
  buf[offset++] = address.port & 0xff
  return offset
}

/** A domain name as it goes on the wire, or ERR_SOCKS_BAD_ADDRESS. */
function wireName(name: string): string {
  const host = toAsciiDomainName(name)
  if (host === null) throw new SocksError('ERR_SOCKS_BAD_ADDRESS', `not a valid domain name: ${JSON.stringify(name)}`)
  return host
}

/** Encodes ATYP + ADDR + PORT into a new buffer. */
export function encodeAddress(address: Address): Buffer {
  const buf = Buffer.allocUnsafe(encodedAddressLength(address))
  writeAddress(buf, 0, address)
  return buf
}

/**
 * Reads ATYP + ADDR + PORT at `offset`. Returns null when more bytes are needed.
 * Throws ERR_SOCKS_ADDRESS_TYPE_NOT_SUPPORTED for an unknown ATYP.
 */
export function readAddress(buf: Buffer, offset: number): Decoded<Address> | null {
  if (buf.length < offset + 1) return null
  const atyp = buf[offset]!
  if (atyp === AddressType.IPV4) {
    if (buf.length < offset + 7) return null
    const host = `${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}.${buf[offset + 4]}`
    return { value: { type: 'ipv4', host, port: buf.readUInt16BE(offset + 5) }, length: 7 }
  }
  if (atyp === AddressType.IPV6) {
    if (buf.length < offset + 19) return null
    const host = formatIPv6(buf, offset + 1)
    return { value: { type: 'ipv6', host, port: buf.readUInt16BE(offset + 17) }, length: 19 }
  }
  if (atyp === AddressType.DOMAIN) {
    if (buf.length < offset + 2) return null
    const nameLength = buf[offset + 1]!
    if (buf.length < offset + 2 + nameLength + 2) return null
    const host = buf.toString('utf8', offset + 2, offset + 2 + nameLength)
    return { value: { type: 'domain', host, port: buf.readUInt16BE(offset + 2 + nameLength) }, length: 2 + nameLength + 2 }
  }
  throw new SocksError('ERR_SOCKS_ADDRESS_TYPE_NOT_SUPPORTED', `unknown address type 0x${atyp.toString(16).padStart(2, '0')}`)
}

function writeIPv4(buf: Buffer, offset: number, host: string): number {
  let part = 0
  let digits = 0
  let parts = 0
  for (let i = 0; i <= host.length; i++) {
    const c = i === host.length ? 46 : host.charCodeAt(i)
    if (c === 46 /* . */) {
      if (digits === 0 || part > 255) break
      buf[offset + parts++] = part
      part = 0
      digits = 0
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48)
      digits++
    } else break
  }
  if (parts !== 4) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `not an IPv4 address: ${host}`)
  return offset + 4
}

function parseIPv6(host: string): number[] {
  try {
    return ipaddr.IPv6.parse(host).toByteArray()
  } catch (err) {
    throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `not an IPv6 address: ${host}`, { cause: err })
  }
}

/** RFC 5952 text form of 16 bytes: lower-case hex, longest run of zero groups (≥ 2) compressed. */
export function formatIPv6(buf: Buffer, offset: number): string {
  const groups = new Array<number>(8)
  for (let i = 0; i < 8; i++) groups[i] = buf.readUInt16BE(offset + i * 2)
  // IPv4-mapped addresses keep their dotted tail so they read (and compare) like Node prints them.
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) {
    return `::ffff:${buf[offset + 12]}.${buf[offset + 13]}.${buf[offset + 14]}.${buf[offset + 15]}`
  }
  let bestStart = -1
  let bestLength = 1
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLength) {
      bestStart = i
      bestLength = j - i
    }
    i = j
  }
  if (bestStart < 0) return groups.map(hex).join(':')
  const head = groups.slice(0, bestStart).map(hex).join(':')
  const tail = groups.slice(bestStart + bestLength).map(hex).join(':')
  return `${head}::${tail}`
}

function hex(n: number): string {
  return n.toString(16)
}
