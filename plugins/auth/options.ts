import { resolve } from 'node:path'
import { inspect } from 'node:util'
import type { AuthContext, OptionPath } from 'socksmith'
import { checkKeys, describe, describeKind, isPlainObject } from 'socksmith/plugin-kit'
import { looksLikeHash, parseHash, type ScryptHash } from './hash.js'
import { DEFAULT_USERS_IN_STORE, type UsersInStoreOptions } from './store-lookup.js'
import { DEFAULT_THROTTLE, type ThrottleOptions } from './throttle.js'
import { checkUserName } from './users-file.js'

/**
 * Decides a login for a user who is not in `users`, `usersFile` or (with `usersInStore`) the store. Only `true` accepts. It runs for
 * every such login, so it must bound its own time (and should take as long for an unknown user as
 * for a wrong password).
 */
export type VerifyFunction = (user: string, password: string, ctx: AuthContext) => boolean | Promise<boolean>

/** Options of the `auth` plugin, as written in a config file or passed to `server.register(auth, ...)`. */
export interface AuthOptions {
  /** User name → password hash (`$scrypt$...`, from `socksmith hash-password`) or a plain-text password (hashed at start-up). */
  users?: Record<string, string>
  /** A file of `user:hash` lines; a relative path is resolved against the working directory. */
  usersFile?: string
  /**
   * Also look users up in the server's shared store (`host.store`: with the config's
   * `store: { type: redis, url }`, one user table for the whole fleet), where `socksmith users add`
   * and `addStoredUser()` put them. A removal or password change there closes the user's live
   * connections on every node at once. `true`, or the lookup cache's settings. When the store does
   * not answer, logins of users not in `users`/`usersFile` are refused (fail closed).
   */
  usersInStore?: boolean | UsersInStoreOptions
  /** Decides logins of users found in none of `users`, `usersFile` and the store. */
  verify?: VerifyFunction
  /** Also accept clients that offer only NO AUTH (0x00). Default false. */
  allowNoAuth?: boolean
  /**
   * SOCKS4 clients (on a listener with `protocols: [socks5, socks4]`) send no password, only a
   * USERID: they are refused, unless this is true, when a USERID naming a user of `users` or
   * `usersFile` logs in as that user, unchecked. Only for networks where the claim is trusted.
   * Default false.
   */
  socks4UserId?: boolean
  /**
   * Mutual TLS as a login: on a TLS listener with `requestCert`, a client whose verified
   * certificate names a user of `users` or `usersFile` (`'cn'`: its subject CN; `'san'`: a DNS or
   * email subjectAltName) and that offers NO AUTH logs in as that user, without a password. A
   * client that sends a password is checked by it. Default: off.
   */
  certificateUser?: 'cn' | 'san' | false
  /** Lock out a client address after repeated failures; `false` turns it off. On by default. */
  throttle?: ThrottleOptions | boolean
  /** Milliseconds a successful login is remembered so the next one skips scrypt; 0 turns it off. Default 60000. */
  cacheTtlMs?: number
  /** scrypt runs at once (each uses a libuv thread-pool thread and 16 MiB); the rest queue. Default 2. */
  maxConcurrentHashes?: number
}

/** A plain-text password from the config, until it is hashed at start-up. Prints as `[secret]`. */
export class PlainPassword {
  readonly #value: string
  constructor(value: string) {
    this.#value = value
  }
  reveal(): string {
    return this.#value
  }
  toJSON(): string {
    return '[secret]'
  }
  toString(): string {
    return '[secret]'
  }
  [inspect.custom](): string {
    return '[secret]'
  }
}

export interface InlineUser {
  readonly name: string
  readonly secret: ScryptHash | PlainPassword
}

/** Options after validation. */
export interface ParsedAuthOptions {
  readonly users: readonly InlineUser[]
  /** Absolute path, or null. */
  readonly usersFile: string | null
  /** The lookup cache's settings; null: the store is not asked. */
  readonly usersInStore: Readonly<Required<UsersInStoreOptions>> | null
  readonly verify: VerifyFunction | null
  readonly allowNoAuth: boolean
  readonly socks4UserId: boolean
  readonly certificateUser: 'cn' | 'san' | null
  readonly throttle: Readonly<Required<ThrottleOptions>> | null
  readonly cacheTtlMs: number
  readonly maxConcurrentHashes: number
}

const KEYS = ['users', 'usersFile', 'usersInStore', 'verify', 'allowNoAuth', 'socks4UserId', 'certificateUser', 'throttle', 'cacheTtlMs', 'maxConcurrentHashes'] as const
const THROTTLE_KEYS = ['maxFailures', 'windowMs', 'lockoutMs', 'maxClients'] as const
const STORE_KEYS = ['lookupCacheMs', 'lookupCacheSize'] as const
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/
// Names people reach for that edit distance would not connect to ours.
const ALIASES: Readonly<Record<string, string>> = {
  password: 'users',
  passwords: 'users',
  accounts: 'users',
  file: 'usersFile',
  passwordFile: 'usersFile',
  passwdFile: 'usersFile',
  htpasswd: 'usersFile',
  usersFrom: 'usersInStore',
  storeUsers: 'usersInStore',
  redisUsers: 'usersInStore',
  sharedUsers: 'usersInStore',
  verifyUser: 'verify',
  authenticate: 'verify',
  noAuth: 'allowNoAuth',
  optional: 'allowNoAuth',
}

/** Validates the `auth` options; every failure names the field. */
export function parseAuthOptions(raw: unknown, at: OptionPath): ParsedAuthOptions {
  if (raw === undefined || raw === null) at.fail('', 'needs options: at least one of users, usersFile, usersInStore or verify')
  if (!isPlainObject(raw)) at.fail('', `options must be an object, found ${describeKind(raw)}`)
  checkKeys(raw, KEYS, at, { aliases: ALIASES })

  const users: InlineUser[] = []
  if (raw.users !== undefined) {
    if (!isPlainObject(raw.users)) at.fail('users', `must be an object of user name → password or hash, found ${describeKind(raw.users)}`)
    for (const [name, value] of Object.entries(raw.users)) {
      const field = `users${IDENTIFIER.test(name) ? `.${name}` : `[${JSON.stringify(name)}]`}`
      const nameProblem = checkUserName(name)
      if (nameProblem !== null) at.fail(field, nameProblem)
      if (typeof value !== 'string') at.fail(field, `must be a password or a "$scrypt$..." hash string, found ${describeKind(value)} (in YAML, quote a password that looks like a number)`)
      if (looksLikeHash(value)) {
        try {
          users.push({ name, secret: parseHash(value) })
        } catch (err) {
          at.fail(field, `invalid hash: ${(err as Error).message}`)
        }
        continue
      }
      const length = Buffer.byteLength(value, 'utf8')
      if (length < 1 || length > 255) at.fail(field, `a password must be 1 to 255 bytes (RFC 1929), found ${length}`)
      users.push({ name, secret: new PlainPassword(value) })
    }
  }

  let usersFile: string | null = null
  if (raw.usersFile !== undefined) {
    if (typeof raw.usersFile !== 'string' || raw.usersFile.trim() === '') at.fail('usersFile', `must be a file path, found ${describeKind(raw.usersFile)}`)
    usersFile = resolve(at.dir ?? process.cwd(), raw.usersFile)
  }

  let verify: VerifyFunction | null = null
  if (raw.verify !== undefined) {
    if (typeof raw.verify !== 'function') at.fail('verify', `must be a function (user, password, ctx) => boolean | Promise<boolean>, found ${describeKind(raw.verify)}; it can only be given in a JS/TS config or a program`)
    verify = raw.verify as VerifyFunction
  }

  const usersInStore = parseUsersInStore(raw.usersInStore, at)
  if (users.length === 0 && usersFile === null && usersInStore === null && verify === null) {
    at.fail(raw.users === undefined ? '' : 'users', 'no users: give at least one user in users, a usersFile, usersInStore: true, or a verify function')
  }

  let allowNoAuth = false
  if (raw.allowNoAuth !== undefined) {
    if (typeof raw.allowNoAuth !== 'boolean') at.fail('allowNoAuth', `must be true or false, found ${describeKind(raw.allowNoAuth)}`)
    allowNoAuth = raw.allowNoAuth
  }
  if (raw.socks4UserId !== undefined && typeof raw.socks4UserId !== 'boolean') at.fail('socks4UserId', `must be true or false, found ${describeKind(raw.socks4UserId)}`)
  const certificateUser = raw.certificateUser === undefined || raw.certificateUser === false ? null : raw.certificateUser
  if (certificateUser !== null && certificateUser !== 'cn' && certificateUser !== 'san') at.fail('certificateUser', `must be "cn", "san" or false, found ${describeKind(raw.certificateUser)}`)

  return {
    users,
    usersFile,
    usersInStore,
    verify,
    allowNoAuth,
    socks4UserId: raw.socks4UserId === true,
    certificateUser,
    throttle: parseThrottle(raw.throttle, at),
    cacheTtlMs: raw.cacheTtlMs === undefined ? 60_000 : integer(raw.cacheTtlMs, 'cacheTtlMs', 0, 86_400_000, at),
    maxConcurrentHashes: raw.maxConcurrentHashes === undefined ? 2 : integer(raw.maxConcurrentHashes, 'maxConcurrentHashes', 1, 64, at),
  }
}

function parseUsersInStore(raw: unknown, at: OptionPath): Readonly<Required<UsersInStoreOptions>> | null {
  if (raw === undefined || raw === false) return null
  if (raw === true) return DEFAULT_USERS_IN_STORE
  if (!isPlainObject(raw)) at.fail('usersInStore', `must be true, false or { lookupCacheMs, lookupCacheSize }, found ${describeKind(raw)}`)
  checkKeys(raw, STORE_KEYS, at, { path: 'usersInStore' })
  return Object.freeze({
    lookupCacheMs: raw.lookupCacheMs === undefined ? DEFAULT_USERS_IN_STORE.lookupCacheMs : integer(raw.lookupCacheMs, 'usersInStore.lookupCacheMs', 0, 3_600_000, at),
    lookupCacheSize: raw.lookupCacheSize === undefined ? DEFAULT_USERS_IN_STORE.lookupCacheSize : integer(raw.lookupCacheSize, 'usersInStore.lookupCacheSize', 1, 10_000_000, at),
  })
}

function parseThrottle(raw: unknown, at: OptionPath): Readonly<Required<ThrottleOptions>> | null {
  if (raw === undefined || raw === true) return DEFAULT_THROTTLE
  if (raw === false) return null
  if (!isPlainObject(raw)) at.fail('throttle', `must be an object or false, found ${describeKind(raw)}`)
  checkKeys(raw, THROTTLE_KEYS, at, { path: 'throttle' })
  const pick = (key: (typeof THROTTLE_KEYS)[number], max: number): number =>
    raw[key] === undefined ? DEFAULT_THROTTLE[key] : integer(raw[key], `throttle.${key}`, 1, max, at)
  return Object.freeze({
    maxFailures: pick('maxFailures', 1_000_000),
    windowMs: pick('windowMs', 86_400_000),
    lockoutMs: pick('lockoutMs', 86_400_000),
    maxClients: pick('maxClients', 10_000_000),
  })
}

function integer(value: unknown, field: string, min: number, max: number, at: OptionPath): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    at.fail(field, `must be an integer from ${min} to ${max}, found ${describe(value)}`)
  }
  return value
}

