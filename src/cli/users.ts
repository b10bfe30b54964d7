// `socksmith users add|remove|list`: the auth plugin's user table in the shared store of the
// config (`store: { type: redis, url }`), the one every node of the fleet reads with
// `usersInStore: true`.
import { isSocksError } from '../core/errors.js'
import { loadConfig } from '../config/load.js'
import type { LoadedConfig } from '../config/types.js'
import { createStore } from '../store/open.js'
import type { SharedStore } from '../store/store.js'
import { importAuth } from './bundled-auth.js'
import { errorText, fail } from './output.js'
import { readPassword } from './password-input.js'

export const USERS_USAGE = 'socksmith users add NAME | users remove NAME | users list   [--config FILE]'

type Action = 'add' | 'remove' | 'list'

interface UserTable {
  addStoredUser(store: SharedStore, name: string, password: string): Promise<'added' | 'replaced'>
  removeStoredUser(store: SharedStore, name: string): Promise<boolean>
  listStoredUsers(store: SharedStore, limit?: number): Promise<string[]>
}

/** Runs `socksmith users <args>` against the store of the config (`configFile`, else the one found); resolves with the exit code. */
export async function usersCommand(args: readonly string[], configFile: string | undefined): Promise<number> {
  const [action, ...rest] = args
  const wanted = action === 'list' ? 0 : 1
  if ((action !== 'add' && action !== 'remove' && action !== 'list') || rest.length !== wanted) {
    fail(`usage: ${USERS_USAGE}`)
    return 2
  }
  let loaded: LoadedConfig
  let table: UserTable
  try {
    loaded = await loadConfig(configFile === undefined ? {} : { file: configFile })
    table = (await importAuth(['addStoredUser', 'removeStoredUser', 'listStoredUsers'])) as unknown as UserTable
  } catch (err) {
    fail(`users ${action}: ${errorText(err)}`)
    return 1
  }
  const options = loaded.config.store
  if (options.type !== 'redis') {
    // A memory store lives in the socksmith process (under --workers, its primary): nothing outside can write to it.
    fail(
      `users ${action}: ${loaded.filepath === null ? 'no config file found, so' : `${loaded.displayName}:`} the store is ${options.type}, which lives inside a running socksmith (under --workers, in its primary) where this command cannot reach it. ` +
        'Users for `socksmith users` need a shared store: set store: { type: redis, url: redis://HOST:PORT } in the config, and usersInStore: true in the auth plugin\'s options',
    )
    return 1
  }
  const store = createStore(options)
  try {
    return await run(action, rest[0] ?? '', store, table, loaded)
  } catch (err) {
    fail(`users ${action}: ${errorText(err)}`)
    return isSocksError(err) && err.code === 'ERR_SOCKS_INVALID_ARGUMENT' ? 2 : 1
  } finally {
    await store.close()
  }
}

async function run(action: Action, name: string, store: SharedStore, table: UserTable, loaded: LoadedConfig): Promise<number> {
  if (action === 'list') {
    for (const user of await table.listStoredUsers(store)) process.stdout.write(`${user}\n`)
    return 0
  }
  if (action === 'remove') {
    if (!(await table.removeStoredUser(store, name))) {
      fail(`users remove: there is no user ${JSON.stringify(name)} in the store`)
      return 1
    }
    process.stdout.write(`removed user ${JSON.stringify(name)}; its live connections are closed on every node\n`)
    return 0
  }
  if (!readsStoreUsers(loaded)) fail(`note: the auth plugin of ${loaded.displayName} does not have usersInStore: true, so its servers do not read this user`)
  const password = await readPassword()
  if (password === null || password.length === 0) {
    fail(`users add: ${password === null ? 'the passwords do not match' : 'the password is empty'}`)
    return 2
  }
  const outcome = await table.addStoredUser(store, name, password)
  process.stdout.write(
    outcome === 'added'
      ? `added user ${JSON.stringify(name)}\n`
      : `replaced the password of user ${JSON.stringify(name)}; its live connections are closed on every node\n`,
  )
  return 0
}

/** True when some entry of the config's plugins is the bundled auth plugin with usersInStore on. */
function readsStoreUsers(loaded: LoadedConfig): boolean {
  return loaded.config.plugins.some((entry) => {
    const options = entry.options as { usersInStore?: unknown } | null | undefined
    return entry.plugin.name === 'auth' && options != null && options.usersInStore !== undefined && options.usersInStore !== false
  })
}
