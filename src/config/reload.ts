import { readFileSync } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import { SocksError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { SocksServer } from '../server.js'
import { createServerFromConfig, loadConfig } from './load.js'
import { isPlainObject } from './validate.js'
import type { LoadedConfig } from './types.js'

export interface ReloadOptions {
  /** The logger the new server gets (keep the running one's, so log lines stay in one place). */
  logger: Logger
  /** Applied to the freshly loaded config before it is used (the CLI's --host/--port/... flags). */
  adjust?: (loaded: LoadedConfig) => LoadedConfig
}

export interface ReloadResult {
  loaded: LoadedConfig
  /** Live connections closed because their user is no longer in the auth plugin's user list. */
  closed: number
  /** Settings that only a restart applies (listeners, the metrics listener). */
  needsRestart: string[]
}

/**
 * Re-reads `current`'s file and, when it is valid, switches `server` to the new pipeline:
 * connections accepted from then on use the new plugins, limits and timeouts; accepted ones are
 * left alone, except those of users that were removed from the auth plugin's users (closed).
 * On any error nothing changes and the error is thrown (the caller logs it).
 */
export async function reloadFromConfig(server: SocksServer, current: LoadedConfig, options: ReloadOptions): Promise<ReloadResult> {
  if (current.filepath === null) throw new SocksError('ERR_CONFIG_NOT_FOUND', 'no config file to reload (socksmith runs on defaults and flags)')
  // Messages name the file as the first load did (relative to the working directory of then).
  const cwd = isAbsolute(current.displayName) ? process.cwd() : current.filepath.slice(0, -current.displayName.length)
  let loaded = await loadConfig({ file: current.filepath, cwd })
  if (options.adjust !== undefined) loaded = options.adjust(loaded)
  const next = createServerFromConfig(loaded, { logger: options.logger })
  try {
    await server.reload(next)
  } catch (err) {
    // Setup may have opened resources (timers, files): release them, the old pipeline stays.
    await next.close({ drainTimeout: 0 }).catch(() => {})
    const message = err instanceof Error ? err.message : String(err)
    throw new SocksError(err instanceof SocksError ? err.code : 'ERR_CONFIG_INVALID', `${loaded.displayName}: ${message}`, { cause: err })
  }
  const before = staticUsers(current)
  const after = staticUsers(loaded)
  let closed = 0
  if (before !== null && after !== null) {
    const removed = new Set([...before].filter((user) => !after.has(user)))
    if (removed.size > 0) closed = server.destroyConnections((ctx) => ctx.user !== null && removed.has(ctx.user), new SocksError('ERR_SOCKS_AUTH_FAILED', 'user removed from the configuration'))
  }
  const needsRestart: string[] = []
  if (JSON.stringify(current.config.listen) !== JSON.stringify(loaded.config.listen)) needsRestart.push('listen')
  if (JSON.stringify(current.config.metrics) !== JSON.stringify(loaded.config.metrics)) needsRestart.push('metrics')
  return { loaded, closed, needsRestart }
}

/**
 * The user names the auth plugin's options list (inline `users` and `usersFile`), or null when
 * they cannot be known: no auth plugin, or a `verify` callback decides.
 */
export function staticUsers(loaded: LoadedConfig): Set<string> | null {
  const entry = loaded.config.plugins.find((p) => p.plugin.name === 'auth')
  if (entry === undefined || !isPlainObject(entry.options)) return null
  const options = entry.options
  if (options.verify !== undefined) return null
  const users = new Set<string>()
  if (isPlainObject(options.users)) for (const name of Object.keys(options.users)) users.add(name)
  if (typeof options.usersFile === 'string') {
    const dir = loaded.filepath === null ? process.cwd() : dirname(loaded.filepath)
    let text: string
    try {
      text = readFileSync(resolve(dir, options.usersFile), 'utf8')
    } catch {
      return null
    }
    for (const line of text.split(/\r?\n/)) {
      const trimmed = line.trim()
      if (trimmed === '' || trimmed.startsWith('#')) continue
      const colon = trimmed.indexOf(':')
      if (colon > 0) users.add(trimmed.slice(0, colon))
    }
  }
  return users
}
