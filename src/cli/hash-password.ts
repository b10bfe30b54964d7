import { isSocksError } from '../core/errors.js'
import { errorText, fail } from './output.js'
import { readPassword } from './password-input.js'
import { importAuth } from './bundled-auth.js'

type HashPassword = (password: string) => string | Promise<string>

/** `socksmith hash-password`: a hash for the auth plugin, from a password read on stdin. */
export async function hashPasswordCommand(): Promise<number> {
  let hashPassword: HashPassword
  try {
    hashPassword = (await importAuth(['hashPassword'])).hashPassword as HashPassword
  } catch (err) {
    fail(`hash-password: ${errorText(err)}`)
    return 1
  }
  let password: string
  try {
    const read = await readPassword()
    if (read === null) {
      fail('hash-password: the passwords do not match')
      return 2
    }
    password = read
  } catch (err) {
    fail(`hash-password: ${errorText(err)}`)
    return 1
  }
  if (password.length === 0) {
    fail('hash-password: the password is empty')
    return 2
  }
  let hash: string
  try {
    hash = await hashPassword(password)
  } catch (err) {
    // A password RFC 1929 cannot carry (over 255 bytes) is the user's to fix, not a crash.
    fail(`hash-password: ${errorText(err)}`)
    return isSocksError(err) && err.code === 'ERR_SOCKS_INVALID_ARGUMENT' ? 2 : 1
  }
  process.stdout.write(`${hash}\n`)
  return 0
}
