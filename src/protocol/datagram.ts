import { readAddress, encodedAddressLength, writeAddress, type Address } from './address.js'
import { isSocksError } from '../core/errors.js'

/**
 * UDP request header (RFC 1928 §7).
 *
 *   +-----+------+------+----------+----------+----------+
 *   | RSV | FRAG | ATYP | DST.ADDR | DST.PORT |   DATA   |
 *   +-----+------+------+----------+----------+----------+
 *   |  2  |  1   |  1   | Variable |    2     | Variable |
 *   +-----+------+------+----------+----------+----------+
 */
export interface DatagramHeader {
  readonly frag: number
  readonly address: Address
  /** Offset of DATA in the packet (from its start, whatever the `offset` the header was read at). */
  readonly headerLength: number
}

/**
 * Parses the header of a UDP packet; null for anything malformed or truncated (such packets are
 * dropped silently). `offset`: where the header starts, for a header wrapped inside another one
 * (a chain of relays), read without a copy; `headerLength` then counts from the packet's start.
 */
export function parseDatagramHeader(packet: Buffer, offset = 0): DatagramHeader | null {
  if (packet.length < offset + 4) return null
  let address
  try {
    address = readAddress(packet, offset + 3)
  } catch (err) {
    if (isSocksError(err)) return null
    throw err
  }
  if (address === null) return null
  return { frag: packet[offset + 2]!, address: address.value, headerLength: offset + 3 + address.length }
}

/** Encodes RSV, FRAG = 0 and the address; the payload is sent after it as a separate buffer. */
export function encodeDatagramHeader(address: Address): Buffer {
  const buf = Buffer.allocUnsafe(3 + encodedAddressLength(address))
  buf[0] = 0
  buf[1] = 0
  buf[2] = 0
  writeAddress(buf, 3, address)
  return buf
}
