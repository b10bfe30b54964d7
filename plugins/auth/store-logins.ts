// Which connections logged in as a user of the store, and with which hash: what a node checks
// against the store after announcements may have been missed (store-reconcile.ts).
//
// A WeakMap keyed by the connection's context rather than a field of ctx.state: the hash stays
// private to this plugin (ctx.state is typed public API, seen and writable by every plugin and
// easily logged whole); connections that are not store logins carry nothing (a declared state
// field would be on every connection's state); and an entry goes with its connection, with no
// close hook to forget. Module-wide, not per setup: after a reload the live setup checks the
// connections that logged in through older pipelines too, as it closes them on an announcement.
import { timingSafeEqual } from 'node:crypto'
import type { ScryptHash } from './hash.js'

/** One connection's login as a store user. */
export interface StoreLoginRecord {
  readonly name: string
  /** The hash its password was checked against. */
  readonly hash: ScryptHash
  /** Logins recorded before it, plus one: a gap concerns the logins recorded up to it. */
  readonly sequence: number
}

const logins = new WeakMap<object, StoreLoginRecord>()
let recorded = 0

/** `ctx` logged in as store user `name`, its password checked against `hash`. */
export function recordStoreLogin(ctx: object, name: string, hash: ScryptHash): void {
  logins.set(ctx, { name, hash, sequence: ++recorded })
}

/** How `ctx` logged in, if as a user of the store. */
export function storeLoginOf(ctx: object): StoreLoginRecord | undefined {
  return logins.get(ctx)
}

/** The sequence of the latest login recorded (0: none yet). */
export function storeLoginsSoFar(): number {
  return recorded
}

/** True when `current` (the store's record now; null: no such user) is the hash `hash` is. */
export function sameHash(hash: ScryptHash, current: ScryptHash | null): boolean {
  if (current === null) return false
  const { params } = hash
  if (params.N !== current.params.N || params.r !== current.params.r || params.p !== current.params.p) return false
  if (!hash.salt.equals(current.salt) || hash.key.length !== current.key.length) return false
  // Derived keys: compared in constant time like every secret, though neither side is the client's.
  return timingSafeEqual(hash.key, current.key)
}
