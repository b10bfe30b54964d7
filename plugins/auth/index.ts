/**
 * The bundled `auth` plugin: username/password authentication (RFC 1929) with scrypt hashes.
 * Exported as `socksmith/plugins/auth`; written against the public API only.
 *
 * @packageDocumentation
 * @module socksmith/plugins/auth
 */
import { randomBytes } from 'node:crypto'
import { definePlugin, Method, SocksError, type AuthContext, type Middleware, type NegotiateContext, type Next } from 'socksmith'
import { clientGroup } from 'socksmith/net'
import { isLogLevelEnabled } from 'socksmith/ops'
import { deriveKey, DEFAULT_SCRYPT_PARAMS, type ScryptHash } from './hash.js'
import { parseAuthOptions, PlainPassword, type AuthOptions, type ParsedAuthOptions, type VerifyFunction } from './options.js'
import { FailureThrottle } from './throttle.js'
import { readUsersFile, UsersFileError } from './users-file.js'
import { PasswordChecker } from './verifier.js'
import { handleUserRemovals } from './reload.js'
import { createCertificateLogin, createCertificateNegotiation } from './certificate-user.js'
import { StoreUserLookup } from './store-lookup.js'
import { followStoreChanges, type StoreChanges } from './store-changes.js'
import { recordStoreLogin, sameHash } from './store-logins.js'

export { hashPassword, verifyPassword, DEFAULT_SCRYPT_PARAMS } from './hash.js'
export type { ScryptParams } from './hash.js'
export type { AuthOptions, VerifyFunction } from './options.js'
export type { ThrottleOptions } from './throttle.js'
export { DEFAULT_THROTTLE } from './throttle.js'
export { addStoredUser, removeStoredUser, listStoredUsers, storedUserKey, STORED_USER_PREFIX, USERS_CHANNEL } from './user-table.js'
export type { UsersInStoreOptions } from './store-lookup.js'
export { DEFAULT_USERS_IN_STORE } from './store-lookup.js'

/**
 * Username/password authentication (RFC 1929). Selects method 0x02 whenever the client offers it;
 * unless `allowNoAuth` is set, a client offering only NO AUTH gets `05 FF`. A successful login sets
 * `ctx.user` for the later phases and plugins; a failed one gets status `01 01` and is closed.
 *
 * @example
 * import { createServer } from 'socksmith'
 * import auth from 'socksmith/plugins/auth'
 *
 * const server = createServer()
 * server.register(auth, {
 *   users: { alice: '$scrypt$N=16384,r=8,p=1$...$...' },   // from `socksmith hash-password`
 *   usersFile: '/etc/socksmith/users',
 * })
 * await server.listen({ host: '0.0.0.0', port: 1080 })
 *
 * @example
 * // One user table for a fleet: every node on this Redis; `socksmith users add alice` fills it.
 * const node = createServer({ store: { type: 'redis', url: 'redis://10.0.0.5:6379' } })
 * node.register(auth, { usersInStore: true })
 */
const auth = definePlugin<ParsedAuthOptions, AuthOptions>({
  name: 'auth',
  parseOptions: parseAuthOptions,
  // `users` maps names to passwords or hashes: --print-config masks every value.
  secretOptions: ['users'],
  // Setup errors need not name the plugin: the server prefixes `plugins[0] (auth): setup failed: `.
  async setup(host, options) {
    const hashes = await loadUsers(options)
    const inStore = options.usersInStore
    if (hashes.size === 0 && options.verify === null && inStore === null) {
      throw new SocksError('ERR_PLUGIN_OPTIONS', `usersFile: ${options.usersFile ?? ''}: the file defines no users`)
    }
    const checker = await PasswordChecker.create(hashes, {
      cacheTtlMs: options.cacheTtlMs,
      maxConcurrentHashes: options.maxConcurrentHashes,
      // Store users are not known in advance: their cached logins are bounded like their lookups.
      ...(inStore === null ? {} : { maxCachedLogins: hashes.size + inStore.lookupCacheSize }),
    })
    const throttle = options.throttle === null ? null : new FailureThrottle(options.throttle)
    let lookup: StoreUserLookup | null = null
    let changes: StoreChanges | null = null
    if (inStore !== null) {
      lookup = new StoreUserLookup(host.store, host.log, inStore)
      changes = await followStoreChanges(host, lookup, new Set(hashes.keys()), (name) => checker.forget(name))
    }
    if (!options.allowNoAuth) host.requireAuth()
    host.use('negotiate', selectUsernamePassword)
    if (options.socks4UserId) {
      host.use('negotiate', acceptSocks4)
      host.use('auth', createSocks4UserIdCheck(hashes))
    }
    const revoked = handleUserRemovals(host, new Set(hashes.keys()), options.verify !== null, () => changes?.retire())
    if (options.certificateUser !== null) {
      host.use('negotiate', createCertificateNegotiation(options.certificateUser, hashes))
      host.use('auth', createCertificateLogin(options.certificateUser, hashes, revoked))
    }
    host.use('auth', createAuthenticator(checker, lookup, options.verify, throttle, options.throttle?.lockoutMs ?? 0, revoked))
    const sources = [`${hashes.size} user(s)`, ...(inStore === null ? [] : [`users in the ${host.store.kind} store`]), ...(options.verify === null ? [] : ['a verify function'])]
    host.log.info(`auth: ${sources.join(', ')}${options.allowNoAuth ? ', NO AUTH still allowed' : ''}${options.certificateUser === null ? '' : `, client certificates (${options.certificateUser}) as users`}`)
    // Only code in this server's processes can reach such a store: no `socksmith users add`.
    if (inStore !== null && host.store.kind !== 'redis') host.log.info(`auth: usersInStore with the ${host.store.kind} store: users can be added only by this server's own code (addStoredUser(server.store, ...)); for \`socksmith users\` configure store: { type: redis, url }`)
  },
})
export default auth

/** Builds the name → hash table: inline users (plain text hashed now, once) and the users file. */
async function loadUsers(options: ParsedAuthOptions): Promise<Map<string, ScryptHash>> {
  const hashes = new Map<string, ScryptHash>()
  const plain: Promise<void>[] = []
  for (const { name, secret } of options.users) {
    if (secret instanceof PlainPassword) {
      plain.push(hashPlain(secret).then((hash) => void hashes.set(name, hash)))
    } else {
      hashes.set(name, secret)
    }
  }
  await Promise.all(plain)
  if (options.usersFile !== null) {
    let entries
    try {
      entries = await readUsersFile(options.usersFile)
    } catch (err) {
      if (err instanceof UsersFileError) throw new SocksError('ERR_PLUGIN_OPTIONS', `usersFile: ${err.message}`)
      throw err
    }
    for (const entry of entries) {
      if (hashes.has(entry.name)) {
        throw new SocksError('ERR_PLUGIN_OPTIONS', `usersFile: ${options.usersFile}:${entry.line}: user "${entry.name}" is also defined in users`)
      }
      hashes.set(entry.name, entry.hash)
    }
  }
  return hashes
}

async function hashPlain(password: PlainPassword): Promise<ScryptHash> {
  const salt = randomBytes(16)
  const key = await deriveKey(password.reveal(), salt, DEFAULT_SCRYPT_PARAMS, 32)
  return { params: DEFAULT_SCRYPT_PARAMS, salt, key }
}

/** Prefers username/password whenever the client offers it, even when NO AUTH is allowed too. */
async function selectUsernamePassword(ctx: NegotiateContext, next: Next): Promise<void> {
  if (ctx.method === null && ctx.offeredMethods.includes(Method.USERNAME_PASSWORD)) ctx.method = Method.USERNAME_PASSWORD
  await next()
}

/** `socks4UserId`: a SOCKS4 client goes on to the auth phase, where its USERID is checked. */
async function acceptSocks4(ctx: NegotiateContext, next: Next): Promise<void> {
  if (ctx.method === null && ctx.protocol === 'socks4') ctx.method = Method.NO_AUTH
  await next()
}

/** `socks4UserId`: a SOCKS4 USERID naming a user of the tables logs in as that user; any other is refused. */
function createSocks4UserIdCheck(hashes: ReadonlyMap<string, unknown>): Middleware<AuthContext> {
  return async function checkSocks4UserId(ctx, next) {
    if (ctx.protocol === 'socks4') {
      const userId = ctx.userId ?? ''
      if (!hashes.has(userId)) throw new SocksError('ERR_SOCKS_AUTH_FAILED', `SOCKS4 USERID ${JSON.stringify(userId)} is not a user`)
      ctx.user = userId
    }
    await next()
  }
}

function refuseLockedOut(ctx: AuthContext, client: string, user: string): never {
  if (isLogLevelEnabled(ctx.log, 'debug')) ctx.log.debug('auth: login refused, client is locked out', { id: ctx.id, client, user })
  throw new SocksError('ERR_SOCKS_AUTH_FAILED', `too many failed logins from ${client}`)
}

function createAuthenticator(checker: PasswordChecker, lookup: StoreUserLookup | null, verify: VerifyFunction | null, throttle: FailureThrottle | null, lockoutMs: number, revoked: ReadonlySet<string>): Middleware<AuthContext> {
  /** Whether the password is right: the inline tables first, then the store, then verify. */
  async function decide(ctx: AuthContext, user: string, password: string, signal: () => AbortSignal, group: string, mac: Buffer): Promise<boolean> {
    if (checker.has(user) || (lookup === null && verify === null)) return checker.check(user, password, signal, group, mac)
    if (lookup === null) return (await verify!(user, password, ctx)) === true
    const login = lookup.begin(user)
    try {
      // Rejects when the store does not answer: refused, fail closed, whatever verify would say.
      const hash = await lookup.lookup(user)
      const accepted = hash === null && verify !== null ? (await verify(user, password, ctx)) === true : await checker.checkHash(user, password, hash, signal, group, mac)
      // Announcements may have been missed while this login was checked (a gap of the
      // subscription), and the check of the live connections that follows cannot see it yet:
      // the user is looked up afresh, and refused if the store has another hash now.
      while (accepted && hash !== null && lookup.missedChanges(login)) {
        if (!sameHash(hash, await lookup.lookup(user))) login.stale = true
      }
      // Removed (or given a new password) while this login was checked: the closing of the
      // user's connections has already run, and must not miss this one.
      if (login.stale) throw new SocksError('ERR_SOCKS_AUTH_FAILED', `user ${JSON.stringify(user)} changed in the store during the login`, { reason: 'auth:userChanged' })
      // Recorded with no await since the last look: a gap after it finds this connection.
      if (accepted && hash !== null) recordStoreLogin(ctx, user, hash)
      return accepted
    } finally {
      lookup.end(login)
    }
  }

  return async function authenticateUsernamePassword(ctx, next) {
    const credentials = ctx.credentials
    if (ctx.method !== Method.USERNAME_PASSWORD || ctx.user !== null || credentials === null) return next()
    const user = credentials.username
    const password = credentials.password
    const client = ctx.client.address
    // The server's notion of one client (an IPv6 /64 by default), the same its connection limits use.
    const group = clientGroup(client, ctx.settings.clientPrefix)
    // Made once for the throttle and the login cache; the signal only if something has to wait.
    const mac = checker.mac(user, password)
    const guess = throttle === null ? '' : mac.toString('base64')
    const signal = (): AbortSignal => ctx.signal
    if (throttle !== null) {
      // Usually a plain boolean (no wait, no extra tick); a promise while the client's earlier guesses are out.
      const admitted = throttle.admit(group, guess, signal)
      // Refused before hashing: during a lockout even the right password is turned away, so guessing learns nothing.
      if (admitted === false || (admitted !== true && !(await admitted))) refuseLockedOut(ctx, client, user)
    }
    let accepted: boolean
    try {
      accepted = await decide(ctx, user, password, signal, group, mac)
    } catch (err) {
      // Not counted as a failure: the password was never found wrong.
      throttle?.end(group, guess, false)
      throw err
    }
    if (throttle !== null) {
      if (throttle.end(group, guess, !accepted)) ctx.log.warn('auth: too many failed logins, locking out client', { client: group, lockoutMs })
      // The client's other attempts may have locked it out while this password was being checked.
      if (accepted && throttle.isLocked(group)) refuseLockedOut(ctx, client, user)
    }
    if (!accepted) {
      ctx.log.info('auth: login failed', { id: ctx.id, client, user })
      throw new SocksError('ERR_SOCKS_AUTH_FAILED', `login failed for user ${JSON.stringify(user)}`)
    }
    // This pipeline outlived a reload that removed the user (the connection was accepted before it).
    if (revoked.size > 0 && revoked.has(user)) {
      ctx.log.info('auth: login refused, user removed by a reload', { id: ctx.id, client, user })
      throw new SocksError('ERR_SOCKS_AUTH_FAILED', `user ${JSON.stringify(user)} was removed from the configuration`)
    }
    ctx.user = user
    if (isLogLevelEnabled(ctx.log, 'debug')) ctx.log.debug('auth: login', { id: ctx.id, client, user })
    await next()
  }
}
