import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import { SocksError } from 'socksmith'

/**
 * scrypt cost parameters. Memory per hash is about `128 * N * r` bytes (16 MiB for the defaults),
 * time grows with `N * r * p`.
 */
export interface ScryptParams {
  /** CPU/memory cost, a power of two. Default 16384 (2^14). */
  N: number
  /** Block size. Default 8. */
  r: number
  /** Parallelism. Default 1. */
  p: number
}

/** The parameters `hashPassword` uses unless told otherwise (the ones RFC 7914 and OWASP suggest for interactive logins). */
export const DEFAULT_SCRYPT_PARAMS: Readonly<ScryptParams> = Object.freeze({ N: 16384, r: 8, p: 1 })

/** A parsed `$scrypt$` hash string. */
export interface ScryptHash {
  readonly params: Readonly<ScryptParams>
  readonly salt: Buffer
  readonly key: Buffer
}

const PREFIX = '$scrypt$'
const SALT_BYTES = 16
const KEY_BYTES = 32
// Bounds keep a typo (or a hostile users file) from turning every login into a gigabyte allocation.
const MIN_N = 1024
const MAX_N = 1 << 20
const MAX_R = 32
const MAX_P = 16
const MAX_MEMORY = 256 * 1024 * 1024
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/
const DECIMAL = /^[1-9][0-9]{0,9}$/

/** True when `value` claims to be a socksmith password hash (it may still be malformed). */
export function looksLikeHash(value: string): boolean {
  return value.startsWith(PREFIX)
}

/** Why `params` are unusable, or null when they are fine. */
function checkParams(params: ScryptParams): string | null {
  const { N, r, p } = params
  if (!Number.isInteger(N) || N < MIN_N || N > MAX_N || (N & (N - 1)) !== 0) return `N must be a power of two from ${MIN_N} to ${MAX_N}, found ${N}`
  if (!Number.isInteger(r) || r < 1 || r > MAX_R) return `r must be an integer from 1 to ${MAX_R}, found ${r}`
  if (!Number.isInteger(p) || p < 1 || p > MAX_P) return `p must be an integer from 1 to ${MAX_P}, found ${p}`
  if (128 * N * r > MAX_MEMORY) return `N=${N},r=${r} needs ${(128 * N * r) / 2 ** 20} MiB per hash; the limit is ${MAX_MEMORY / 2 ** 20} MiB`
  return null
}

/**
 * Parses `$scrypt$N=<n>,r=<r>,p=<p>$<salt base64>$<key base64>`. Throws an Error whose message
 * says what is wrong (never echoing the input, which might be a mistyped password).
 */
export function parseHash(value: string): ScryptHash {
  if (!looksLikeHash(value)) throw new Error('not a scrypt hash (expected "$scrypt$N=...,r=...,p=...$<salt>$<hash>")')
  const parts = value.slice(PREFIX.length).split('$')
  if (parts.length !== 3) throw new Error('a scrypt hash has three "$"-separated fields after "$scrypt$": parameters, salt and hash')
  const [paramText, saltText, keyText] = parts as [string, string, string]
  const found: Partial<Record<keyof ScryptParams, number>> = {}
  for (const pair of paramText.split(',')) {
    const eq = pair.indexOf('=')
    const name = pair.slice(0, eq)
    const digits = pair.slice(eq + 1)
    if (eq < 0 || (name !== 'N' && name !== 'r' && name !== 'p')) throw new Error('scrypt parameters must be N=<n>,r=<r>,p=<p>')
    if (found[name] !== undefined) throw new Error(`scrypt parameter ${name} is given twice`)
    if (!DECIMAL.test(digits)) throw new Error(`scrypt parameter ${name} must be a positive integer`)
    found[name] = Number(digits)
  }
  if (found.N === undefined || found.r === undefined || found.p === undefined) throw new Error('scrypt parameters must include N, r and p')
  const params = { N: found.N, r: found.r, p: found.p }
  const problem = checkParams(params)
  if (problem !== null) throw new Error(problem)
  const salt = decodeBase64(saltText, 'salt')
  const key = decodeBase64(keyText, 'hash')
  if (salt.length < 8 || salt.length > 64) throw new Error(`the salt must be 8 to 64 bytes, found ${salt.length}`)
  if (key.length < 16 || key.length > 64) throw new Error(`the hash must be 16 to 64 bytes, found ${key.length}`)
  return { params: Object.freeze(params), salt, key }
}

function decodeBase64(text: string, what: string): Buffer {
  // Buffer.from(..., 'base64') skips junk silently; insist on canonical text so typos are caught.
  const bytes = BASE64.test(text) ? Buffer.from(text, 'base64') : null
  if (bytes === null || bytes.length === 0 || unpadded(bytes) !== text.replace(/=+$/, '')) throw new Error(`the ${what} is not valid base64`)
  return bytes
}

function unpadded(bytes: Buffer): string {
  return bytes.toString('base64').replace(/=+$/, '')
}

/** Formats a hash the way `hashPassword` writes it (base64 without padding, as in the PHC string format). */
export function formatHash(hash: ScryptHash): string {
  const { N, r, p } = hash.params
  return `${PREFIX}N=${N},r=${r},p=${p}$${unpadded(hash.salt)}$${unpadded(hash.key)}`
}

/** Runs scrypt on the libuv thread pool (never the blocking scryptSync: logins must not stall the event loop). */
export function deriveKey(password: string, salt: Buffer, params: Readonly<ScryptParams>, keyLength: number): Promise<Buffer> {
  const { N, r, p } = params
  // OpenSSL needs 128·r·(N + p + 2) bytes; the slack covers its bookkeeping.
  const maxmem = 128 * r * (N + p + 2) + 1024 * 1024
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keyLength, { N, r, p, maxmem }, (err, key) => (err === null ? resolve(key) : reject(err)))
  })
}

/** Hashes `password` against a parsed hash and compares in constant time. */
export async function verifyAgainst(password: string, hash: ScryptHash): Promise<boolean> {
  const attempt = await deriveKey(password, hash.salt, hash.params, hash.key.length)
  return timingSafeEqual(attempt, hash.key)
}

/**
 * Hashes a password with scrypt and a random 16-byte salt, in the self-describing format the auth
 * plugin's `users` and `usersFile` accept:
 * `$scrypt$N=16384,r=8,p=1$<salt base64>$<hash base64>`.
 *
 * Rejects with `ERR_SOCKS_INVALID_ARGUMENT` when the password is not 1 to 255 bytes of UTF-8
 * (RFC 1929 cannot carry anything else) or the parameters are out of bounds.
 *
 * @example
 * import { hashPassword } from 'socksmith/plugins/auth'
 * const hash = await hashPassword('correct horse battery staple')
 * // users.txt:  alice:$scrypt$N=16384,r=8,p=1$...$...
 */
export async function hashPassword(password: string, params: Partial<ScryptParams> = {}): Promise<string> {
  if (typeof password !== 'string') throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', 'password must be a string')
  const length = Buffer.byteLength(password, 'utf8')
  if (length < 1 || length > 255) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `a password must be 1 to 255 bytes of UTF-8 (RFC 1929), found ${length}`)
  const full: ScryptParams = { ...DEFAULT_SCRYPT_PARAMS, ...params }
  const problem = checkParams(full)
  if (problem !== null) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', problem)
  const salt = randomBytes(SALT_BYTES)
  const key = await deriveKey(password, salt, full, KEY_BYTES)
  return formatHash({ params: full, salt, key })
}

/**
 * Checks a password against a hash made by `hashPassword`, in constant time for a given hash.
 * Rejects with `ERR_SOCKS_INVALID_ARGUMENT` when `hash` is malformed (a configuration error, not a
 * wrong password).
 *
 * @example
 * if (await verifyPassword(attempt, storedHash)) console.log('welcome')
 */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  let parsed: ScryptHash
  try {
    parsed = parseHash(hash)
  } catch (err) {
    throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `invalid password hash: ${(err as Error).message}`)
  }
  return verifyAgainst(password, parsed)
}
