import { PASSWORD_AUTH_VERSION } from './constants.js'
import type { Decoded } from './address.js'
import { SocksError } from '../core/errors.js'

/**
 * Username/password request (RFC 1929 §2).
 *
 *   +-----+------+----------+------+----------+
 *   | VER | ULEN |  UNAME   | PLEN |  PASSWD  |
 *   +-----+------+----------+------+----------+
 *   |  1  |  1   | 1 to 255 |  1   | 1 to 255 |
 *   +-----+------+----------+------+----------+
 *
 * Names and passwords are kept as UTF-8 text; the RFC leaves the encoding open.
 */
export interface PasswordRequest {
  readonly username: string
  readonly password: string
}

/** Parses the client's username/password request, or returns null until it is complete. */
export function parsePasswordRequest(buf: Buffer): Decoded<PasswordRequest> | null {
  if (buf.length < 1) return null
  if (buf[0] !== PASSWORD_AUTH_VERSION) {
    throw new SocksError('ERR_SOCKS_BAD_AUTH_VERSION', `unsupported username/password version ${buf[0]}`)
  }
  if (buf.length < 2) return null
  const ulen = buf[1]!
  if (buf.length < 2 + ulen + 1) return null
  const plen = buf[2 + ulen]!
  const length = 3 + ulen + plen
  if (buf.length < length) return null
  const username = buf.toString('utf8', 2, 2 + ulen)
  const password = buf.toString('utf8', 3 + ulen, length)
  return { value: { username, password }, length }
}

/** Encodes the client's username/password request (each 1 to 255 bytes of UTF-8). */
export function encodePasswordRequest(username: string, password: string): Buffer {
  const user = Buffer.from(username, 'utf8')
  const pass = Buffer.from(password, 'utf8')
  if (user.length < 1 || user.length > 255 || pass.length < 1 || pass.length > 255) {
    throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', 'username and password must each be 1 to 255 bytes')
  }
  const buf = Buffer.allocUnsafe(3 + user.length + pass.length)
  buf[0] = PASSWORD_AUTH_VERSION
  buf[1] = user.length
  user.copy(buf, 2)
  buf[2 + user.length] = pass.length
  pass.copy(buf, 3 + user.length)
  return buf
}

/**
 * Username/password status (RFC 1929 §2): STATUS 0 is success, anything else failure.
 *
 *   +-----+--------+
 *   | VER | STATUS |
 *   +-----+--------+
 *   |  1  |   1    |
 *   +-----+--------+
 */
const STATUS_SUCCESS = Buffer.from([PASSWORD_AUTH_VERSION, 0x00])
const STATUS_FAILURE = Buffer.from([PASSWORD_AUTH_VERSION, 0x01])

/** Returns a shared, preallocated buffer: do not modify it. */
export function encodePasswordStatus(success: boolean): Buffer {
  return success ? STATUS_SUCCESS : STATUS_FAILURE
}

/** Parses the server's username/password status (client side): 0 is success. */
export function parsePasswordStatus(buf: Buffer): Decoded<number> | null {
  if (buf.length < 2) return null
  if (buf[0] !== PASSWORD_AUTH_VERSION) {
    throw new SocksError('ERR_SOCKS_BAD_AUTH_VERSION', `unsupported username/password version ${buf[0]} in status`)
  }
  return { value: buf[1]!, length: 2 }
}
