import { SocksError, type PluginHost, type ServerHandle } from 'socksmith'
import { isLogLevelEnabled } from 'socksmith/ops'
import type { StoreUserLookup } from './store-lookup.js'
import { StoreReconciler } from './store-reconcile.js'

/** What a setup following the store's user changes does with them. */
export interface StoreChanges {
  /** This setup was replaced by a reload: it only forgets from now on, the live setup closes. */
  retire(): void
}

/**
 * Makes one setup act on the store's announcements of changed users (removed, or a new
 * password): `forget(name)` drops what this setup cached (the lookup is dropped by `lookup`
 * itself), and the live setup closes the user's live connections on the live server, whichever
 * pipeline they started on, within the time the announcement takes to arrive. A user of the
 * inline `users` or `usersFile` is looked up there and never in the store, so a change of the
 * same name in the store does not concern this node.
 *
 * Announcements are not stored: those sent while the subscription was not in place are never
 * heard. When it is in place again, the live setup checks its store users' live connections
 * against the store instead (store-reconcile.ts), and closes those of changed users the same way.
 *
 * Each setup keeps its subscription until the server closes, retired ones included: connections
 * accepted before a reload still log in through the old setup, and its caches must not outlive a
 * removal either.
 */
export async function followStoreChanges(host: PluginHost, lookup: StoreUserLookup, staticUsers: ReadonlySet<string>, forget: (name: string) => void): Promise<StoreChanges> {
  // During a reload host.server is the server the new pipeline was built on, which never
  // listens: the live one is what the reload hands in.
  let live: ServerHandle = host.server
  let retired = false
  host.onReload(({ server }) => {
    live = server
  })
  const closeUser = (name: string, select: (ctx: { readonly user: string | null }) => boolean, how: string): number => {
    forget(name)
    const reason = new SocksError('ERR_SOCKS_AUTH_FAILED', `user ${JSON.stringify(name)} was removed or its password changed`, { reason: 'auth:userChanged' })
    const closed = live.destroyConnections(select, reason)
    if (closed > 0) host.log.info(`auth: user ${JSON.stringify(name)} changed in the store${how}; closed ${closed} of its connection(s)`)
    else if (isLogLevelEnabled(host.log, 'debug')) host.log.debug(`auth: user ${JSON.stringify(name)} changed in the store${how}; no live connections of it here`)
    return closed
  }
  const reconciler = new StoreReconciler({
    server: () => live,
    read: (name) => lookup.read(name),
    close: (name, select) => {
      // As the announcement would have: its logins under way are refused too.
      lookup.forget(name)
      return closeUser(name, select, ' (found after missed announcements)')
    },
    ignored: staticUsers,
    log: host.log,
    storeKind: host.store.kind,
  })
  host.onClose(() => {
    reconciler.close()
    return lookup.close()
  })
  await lookup.listen(
    (name) => {
      if (staticUsers.has(name)) return
      if (retired) return forget(name)
      // Every add is announced too (a new user has nothing to close): only closings are news.
      closeUser(name, (ctx) => ctx.user === name, '')
    },
    () => {
      // A retired setup's caches were dropped with the gap; the live setup checks every pipeline's connections.
      if (!retired) reconciler.gap()
    },
  )
  return {
    retire() {
      // A check under way goes on (it closes on the live server): the new setup has not seen its gap.
      retired = true
    },
  }
}
