import { SocksError, type PluginHost, type PluginReload } from 'socksmith'

/**
 * What one setup of the plugin leaves for the next after a reload (`host.handOver`). A plain
 * object checked by shape: a plugin loaded from a file is a new module instance at every reload,
 * so `instanceof` would not hold.
 */
interface UsersHandover {
  /** The user names of that setup's tables (inline `users` and `usersFile`, as it parsed them). */
  readonly users: ReadonlySet<string>
  /** Makes that setup's pipeline refuse these users from now on (connections accepted before the reload log in there). */
  revoke(users: readonly string[]): void
  /** Tells that setup it is no longer the live one (absent from setups of older versions). */
  retire?(): void
}

function isUsersHandover(value: unknown): value is UsersHandover {
  return typeof value === 'object' && value !== null && (value as UsersHandover).users instanceof Set && typeof (value as UsersHandover).revoke === 'function'
}

/**
 * Wires the reload behaviour of one setup: it hands its user names on, and once a reload has made
 * it the live pipeline, it ends what the previous setup still allowed to users it no longer has:
 * their live connections are closed, and the old pipeline (still driving connections accepted
 * before the reload) refuses their logins. With a `verify` function nobody is known to be gone
 * (it may accept a user the tables dropped), so nothing is closed.
 *
 * `retire` runs once a later reload has replaced this setup.
 *
 * Returns the set of users this setup's own pipeline must refuse after a later reload removes them.
 */
export function handleUserRemovals(host: PluginHost, users: ReadonlySet<string>, hasVerify: boolean, retire: () => void = () => {}): ReadonlySet<string> {
  const revoked = new Set<string>()
  host.handOver({ users, revoke: (names) => names.forEach((name) => revoked.add(name)), retire } satisfies UsersHandover)
  host.onReload(({ previous, destroyConnections }: PluginReload) => {
    if (!isUsersHandover(previous)) return
    previous.retire?.()
    if (hasVerify) return
    const removed = [...previous.users].filter((name) => !users.has(name))
    if (removed.length === 0) return
    previous.revoke(removed)
    const gone = new Set(removed)
    const closed = destroyConnections((ctx) => ctx.user !== null && gone.has(ctx.user), new SocksError('ERR_SOCKS_AUTH_FAILED', 'user removed from the configuration'))
    host.log.info(`auth: reload removed ${removed.length} user(s); closed ${closed} of their connection(s)`)
  })
  return revoked
}
