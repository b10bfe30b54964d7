import { Command, Reply, SOCKS_VERSION } from './constants.js'
import { encodedAddressLength, readAddress, writeAddress, type Address, type Decoded } from './address.js'
import { SocksError } from '../core/errors.js'

/**
 * Request (RFC 1928 §4).
 *
 *   +-----+-----+-------+------+----------+----------+
 *   | VER | CMD |  RSV  | ATYP | DST.ADDR | DST.PORT |
 *   +-----+-----+-------+------+----------+----------+
 *   |  1  |  1  | X'00' |  1   | Variable |    2     |
 *   +-----+-----+-------+------+----------+----------+
 *
 * RSV is not checked: clients in the wild send garbage there and every server tolerates it.
 */
export interface SocksRequest {
  readonly command: Command
  readonly destination: Address
}

/**
 * Throws ERR_SOCKS_BAD_REQUEST (VER ≠ 5), ERR_SOCKS_COMMAND_NOT_SUPPORTED (REP 07) or
 * ERR_SOCKS_ADDRESS_TYPE_NOT_SUPPORTED (REP 08) as soon as the offending byte is there, so the
 * client gets its reply without having to send the rest.
 */
export function parseRequest(buf: Buffer): Decoded<SocksRequest> | null {
  if (buf.length < 1) return null
  if (buf[0] !== SOCKS_VERSION) {
    throw new SocksError('ERR_SOCKS_BAD_REQUEST', `unsupported SOCKS version ${buf[0]} in request`)
  }
  if (buf.length < 2) return null
  const command = buf[1]!
  if (command !== Command.CONNECT && command !== Command.BIND && command !== Command.UDP_ASSOCIATE) {
    throw new SocksError('ERR_SOCKS_COMMAND_NOT_SUPPORTED', `unknown command 0x${command.toString(16).padStart(2, '0')}`)
  }
  const address = readAddress(buf, 3)
  if (address === null) return null
  return { value: { command, destination: address.value }, length: 3 + address.length }
}

/** Encodes a client request: `command` to `destination` (ATYP from the address type). */
export function encodeRequest(command: Command, destination: Address): Buffer {
  const buf = Buffer.allocUnsafe(3 + encodedAddressLength(destination))
  buf[0] = SOCKS_VERSION
  buf[1] = command
  buf[2] = 0
  writeAddress(buf, 3, destination)
  return buf
}

/**
 * Reply (RFC 1928 §6).
 *
 *   +-----+-----+-------+------+----------+----------+
 *   | VER | REP |  RSV  | ATYP | BND.ADDR | BND.PORT |
 *   +-----+-----+-------+------+----------+----------+
 *   |  1  |  1  | X'00' |  1   | Variable |    2     |
 *   +-----+-----+-------+------+----------+----------+
 */
export interface SocksReply {
  readonly reply: Reply | number
  readonly bound: Address
}

const UNSPECIFIED: Address = { type: 'ipv4', host: '0.0.0.0', port: 0 }
// Failure replies carry 0.0.0.0:0 and are the same bytes every time: build them once.
const FAILURE_REPLIES: Buffer[] = Array.from({ length: 256 }, (_, rep) => encodeReplyUncached(rep, UNSPECIFIED))

/** Encodes a reply. Without `bound`, BND is 0.0.0.0:0 and a shared preallocated buffer is returned. */
export function encodeReply(reply: Reply | number, bound?: Address | null): Buffer {
  if (bound == null) return FAILURE_REPLIES[reply & 0xff]!
  return encodeReplyUncached(reply, bound)
}

function encodeReplyUncached(reply: number, bound: Address): Buffer {
  const buf = Buffer.allocUnsafe(3 + encodedAddressLength(bound))
  buf[0] = SOCKS_VERSION
  buf[1] = reply
  buf[2] = 0
  writeAddress(buf, 3, bound)
  return buf
}

/** Parses a server reply (client side): REP and BND.ADDR/BND.PORT, or null until complete. */
export function parseReply(buf: Buffer): Decoded<SocksReply> | null {
  if (buf.length < 1) return null
  if (buf[0] !== SOCKS_VERSION) throw new SocksError('ERR_SOCKS_BAD_VERSION', `unsupported SOCKS version ${buf[0]} in reply`)
  const address = readAddress(buf, 3)
  if (address === null) return null
  return { value: { reply: buf[1]!, bound: address.value }, length: 3 + address.length }
}
