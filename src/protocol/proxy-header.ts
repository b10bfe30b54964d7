import { formatIPv6, type Decoded } from './address.js'
import { ipFamily } from './ip-family.js'
import { SocksError } from '../core/errors.js'

/**
 * The PROXY protocol header a load balancer (haproxy, AWS NLB, ...) puts in front of a connection
 * to pass on the real client address (haproxy's proxy-protocol.txt, versions 1 and 2).
 *
 * Version 1, text, at most 107 bytes:  `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`, `PROXY TCP6 ...`,
 * or `PROXY UNKNOWN ...\r\n`.
 *
 * Version 2, binary:
 *
 *   +--------------------------+---------+-----+--------+-----------------+------+
 *   | signature (12)           | ver|cmd | fam | len(2) | addresses       | TLVs |
 *   | 0D0A0D0A000D0A515549540A | 0x20/21 |     |        | 12 (v4), 36 (v6)|      |
 *   +--------------------------+---------+-----+--------+-----------------+------+
 *   cmd 0 = LOCAL (health check: use the socket's own addresses), 1 = PROXY; fam 0x11 TCP/IPv4,
 *   0x21 TCP/IPv6, 0x00 unspecified. TLVs are skipped.
 */
export interface ProxyHeader {
  /** `proxy`: `source` is the real client. `local`: a health check or unknown: keep the socket's addresses. */
  readonly command: 'proxy' | 'local'
  readonly source: { readonly address: string; readonly port: number } | null
  readonly destination: { readonly address: string; readonly port: number } | null
}

const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex')
const V1_PREFIX = Buffer.from('PROXY ')
const V1_MAX = 107
const LOCAL: ProxyHeader = Object.freeze({ command: 'local', source: null, destination: null })

function malformed(why: string): SocksError {
  return new SocksError('ERR_SOCKS_PROXY_HEADER', `PROXY protocol header: ${why}`)
}

/** Parses a v1 or v2 header at the start of `buf`; null while incomplete; throws ERR_SOCKS_PROXY_HEADER. */
export function parseProxyHeader(buf: Buffer): Decoded<ProxyHeader> | null {
  const first = buf[0]
  if (first === undefined) return null
  if (first === 0x0d) return parseV2(buf)
  if (first === 0x50 /* P */) return parseV1(buf)
  throw malformed('missing (the listener expects one before the SOCKS greeting)')
}

function parseV1(buf: Buffer): Decoded<ProxyHeader> | null {
  const prefix = Math.min(buf.length, V1_PREFIX.length)
  if (!buf.subarray(0, prefix).equals(V1_PREFIX.subarray(0, prefix))) throw malformed('missing')
  const end = buf.indexOf('\r\n', 0, 'latin1')
  if (end < 0) {
    if (buf.length >= V1_MAX) throw malformed('v1 line longer than 107 bytes')
    return null
  }
  if (end + 2 > V1_MAX) throw malformed('v1 line longer than 107 bytes')
  const parts = buf.toString('latin1', 0, end).split(' ')
  const length = end + 2
  if (parts[1] === 'UNKNOWN') return { value: LOCAL, length }
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) throw malformed('bad v1 line')
  const family = parts[1] === 'TCP4' ? 4 : 6
  const [src, dst, sport, dport] = [parts[2]!, parts[3]!, parts[4]!, parts[5]!]
  if (ipFamily(src) !== family || ipFamily(dst) !== family) throw malformed('bad v1 address')
  const source = { address: src, port: parsePort(sport) }
  const destination = { address: dst, port: parsePort(dport) }
  return { value: { command: 'proxy', source, destination }, length }
}

function parsePort(text: string): number {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text) || Number(text) > 65535) throw malformed(`bad v1 port "${text}"`)
  return Number(text)
}

function parseV2(buf: Buffer): Decoded<ProxyHeader> | null {
  const prefix = Math.min(buf.length, V2_SIGNATURE.length)
  if (!buf.subarray(0, prefix).equals(V2_SIGNATURE.subarray(0, prefix))) throw malformed('bad v2 signature')
  if (buf.length < 16) return null
  const versionCommand = buf[12]!
  if (versionCommand >> 4 !== 2) throw malformed(`unsupported v2 version ${versionCommand >> 4}`)
  const command = versionCommand & 0x0f
  if (command > 1) throw malformed(`unsupported v2 command ${command}`)
  const length = 16 + buf.readUInt16BE(14)
  if (buf.length < length) return null
  if (command === 0) return { value: LOCAL, length }
  const family = buf[13]!
  if (family === 0x11 || family === 0x12) {
    if (length < 16 + 12) throw malformed('v2 IPv4 block too short')
    const source = { address: ipv4At(buf, 16), port: buf.readUInt16BE(24) }
    const destination = { address: ipv4At(buf, 20), port: buf.readUInt16BE(26) }
    return { value: { command: 'proxy', source, destination }, length }
  }
  if (family === 0x21 || family === 0x22) {
    if (length < 16 + 36) throw malformed('v2 IPv6 block too short')
    const source = { address: formatIPv6(buf, 16), port: buf.readUInt16BE(48) }
    const destination = { address: formatIPv6(buf, 32), port: buf.readUInt16BE(50) }
    return { value: { command: 'proxy', source, destination }, length }
  }
  // UNSPEC or UNIX sockets: nothing usable; keep the socket's own addresses (as the spec says).
  return { value: LOCAL, length }
}

function ipv4At(buf: Buffer, offset: number): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`
}

/** Encodes a v1 header (used by tests and by clients speaking to a PROXY-protocol listener). */
export function encodeProxyHeaderV1(source: { address: string; port: number }, destination: { address: string; port: number }): Buffer {
  const family = ipFamily(source.address) === 6 ? 'TCP6' : 'TCP4'
  return Buffer.from(`PROXY ${family} ${source.address} ${destination.address} ${source.port} ${destination.port}\r\n`, 'latin1')
}
