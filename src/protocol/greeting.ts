import { SOCKS_VERSION } from './constants.js'
import type { Decoded } from './address.js'
import { SocksError } from '../core/errors.js'

/**
 * Client greeting (RFC 1928 §3).
 *
 *   +-----+----------+----------+
 *   | VER | NMETHODS | METHODS  |
 *   +-----+----------+----------+
 *   |  1  |    1     | 1 to 255 |
 *   +-----+----------+----------+
 */
export interface Greeting {
  readonly methods: readonly number[]
}

/** Throws ERR_SOCKS_BAD_VERSION (VER ≠ 5) or ERR_SOCKS_NO_METHODS (NMETHODS = 0): both mean "close". */
export function parseGreeting(buf: Buffer): Decoded<Greeting> | null {
  if (buf.length < 1) return null
  if (buf[0] !== SOCKS_VERSION) throw new SocksError('ERR_SOCKS_BAD_VERSION', `unsupported SOCKS version ${buf[0]}`)
  if (buf.length < 2) return null
  const count = buf[1]!
  if (count === 0) throw new SocksError('ERR_SOCKS_NO_METHODS')
  if (buf.length < 2 + count) return null
  const methods = new Array<number>(count)
  for (let i = 0; i < count; i++) methods[i] = buf[2 + i]!
  return { value: { methods }, length: 2 + count }
}

/** Encodes a client greeting offering `methods` (1 to 255 of them). */
export function encodeGreeting(methods: readonly number[]): Buffer {
  if (methods.length === 0 || methods.length > 255) {
    throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', 'a greeting offers 1 to 255 methods')
  }
  const buf = Buffer.allocUnsafe(2 + methods.length)
  buf[0] = SOCKS_VERSION
  buf[1] = methods.length
  for (let i = 0; i < methods.length; i++) buf[2 + i] = methods[i]!
  return buf
}

/**
 * Method selection, the server's answer to the greeting (RFC 1928 §3).
 *
 *   +-----+--------+
 *   | VER | METHOD |
 *   +-----+--------+
 *   |  1  |   1    |
 *   +-----+--------+
 */
const METHOD_SELECTIONS: Buffer[] = Array.from({ length: 256 }, (_, method) => Buffer.from([SOCKS_VERSION, method]))

/** Returns a shared, preallocated buffer: do not modify it. */
export function encodeMethodSelection(method: number): Buffer {
  return METHOD_SELECTIONS[method & 0xff]!
}

/**
 * Parses the server's method selection (client side): the chosen method, or null until 2 bytes are there.
 */
export function parseMethodSelection(buf: Buffer): Decoded<number> | null {
  if (buf.length < 2) return null
  if (buf[0] !== SOCKS_VERSION) throw new SocksError('ERR_SOCKS_BAD_VERSION', `unsupported SOCKS version ${buf[0]} in method selection`)
  return { value: buf[1]!, length: 2 }
}
