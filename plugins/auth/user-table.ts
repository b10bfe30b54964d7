// The user table in the shared store, as the `auth` plugin's `usersInStore` reads it and the
// `socksmith users` commands write it. Its layout is public (docs/plugins/auth.md), since
// operators script it with plain Redis commands:
//
//   record  auth:user:<name>   the user's "$scrypt$..." hash   (Redis: <prefix>record:auth:user:<name>)
//   channel auth:users         a user's name, once its record changed or went
//                              (Redis: PUBLISH <prefix>auth:users <name>)
import { SocksError, type SharedStore } from 'socksmith'
import { hashPassword, type ScryptParams } from './hash.js'
import { checkUserName } from './users-file.js'

/** The store key of a user's hash is this followed by the user name. */
export const STORED_USER_PREFIX = 'auth:user:'

/**
 * The store channel a change of the user table is announced on: the message is the user's name.
 * Every node's auth plugin forgets what it cached about that user and closes its live connections.
 */
export const USERS_CHANNEL = 'auth:users'

/** The store key of `name`'s hash. */
export function storedUserKey(name: string): string {
  return STORED_USER_PREFIX + name
}

function checkName(name: unknown, what: string): asserts name is string {
  const problem = typeof name === 'string' ? checkUserName(name) : `a user name must be a string, found ${typeof name}`
  if (problem !== null) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `${what}: ${problem}`)
}

/**
 * Adds a user to the user table in `store` (the one the `auth` plugin reads with
 * `usersInStore: true`), or gives an existing one a new password: the password is hashed with
 * scrypt (`params` as for `hashPassword`) and only the hash is stored. Then the change is
 * announced on every node: a user whose password changed has its live connections closed and
 * logs in again with the new one. Resolves with `'added'` or `'replaced'`.
 *
 * Rejects with `ERR_SOCKS_INVALID_ARGUMENT` for a name or password RFC 1929 cannot carry, and
 * with `ERR_SOCKS_STORE` when the store does not answer (if the record was written but the
 * announcement failed, nodes notice the new hash once their cache entry ages out, within seconds).
 *
 * @example
 * import { createStore } from 'socksmith'
 * import { addStoredUser } from 'socksmith/plugins/auth'
 *
 * const store = createStore({ type: 'redis', url: 'redis://10.0.0.5:6379' })
 * await addStoredUser(store, 'alice', 'correct horse battery staple')
 * await store.close()
 */
export async function addStoredUser(store: SharedStore, name: string, password: string, params: Partial<ScryptParams> = {}): Promise<'added' | 'replaced'> {
  checkName(name, 'addStoredUser')
  const hash = await hashPassword(password, params)
  const key = storedUserKey(name)
  // Only for the answer: set() replaces either way.
  const before = await store.getRecord(key)
  await store.setRecord(key, hash)
  await store.publish(USERS_CHANNEL, name)
  return before === null ? 'added' : 'replaced'
}

/**
 * Removes a user from the user table in `store`, and has every node close that user's live
 * connections (reason `ERR_SOCKS_AUTH_FAILED`, "user removed") and refuse its logins from then
 * on. Resolves with false when there was no such user (the announcement is sent all the same).
 *
 * @example
 * import { removeStoredUser } from 'socksmith/plugins/auth'
 * if (!(await removeStoredUser(server.store, 'mallory'))) console.log('no such user')
 */
export async function removeStoredUser(store: SharedStore, name: string): Promise<boolean> {
  checkName(name, 'removeStoredUser')
  const removed = await store.removeRecord(storedUserKey(name))
  // Also when nothing was there: a node that missed an earlier announcement catches up.
  await store.publish(USERS_CHANNEL, name)
  return removed
}

/**
 * The names in the user table of `store`, sorted; at most `limit` (default 10 000).
 *
 * @example
 * import { listStoredUsers } from 'socksmith/plugins/auth'
 * console.log((await listStoredUsers(store)).join('\n'))
 */
export async function listStoredUsers(store: SharedStore, limit?: number): Promise<string[]> {
  const keys = await store.recordKeys(STORED_USER_PREFIX, limit)
  return keys.map((key) => key.slice(STORED_USER_PREFIX.length))
}
