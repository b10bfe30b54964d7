import { isAbsolute } from 'node:path'
import { SocksError } from '../core/errors.js'
import type { Logger } from '../ops/logger.js'
import type { SocksServer } from '../core/server.js'
import { createServerFromConfig, loadConfig } from './load.js'
import type { LoadedConfig } from './types.js'

/** Options of `reloadFromConfig()`. */
export interface ReloadOptions {
  /** The logger the new server gets (keep the running one's, so log lines stay in one place). */
  logger: Logger
  /** Applied to the freshly loaded config before it is used (the CLI's --host/--port/... flags). */
  adjust?: (loaded: LoadedConfig) => LoadedConfig
}

/** What `reloadFromConfig()` resolves with after a reload that took effect. */
export interface ReloadResult {
  loaded: LoadedConfig
  /**
   * Live connections the new plugins closed in their reload hooks (the `auth` plugin: those of
   * users it no longer has).
   */
  closed: number
  /** Settings that only a restart applies (listeners, the metrics listener, the store). */
  needsRestart: string[]
}

/**
 * Re-reads `current`'s file and, when it is valid, switches `server` to the new pipeline:
 * connections accepted from then on use the new plugins, limits and timeouts; accepted ones are
 * left alone, except what the new plugins' reload hooks end (the `auth` plugin closes connections
 * of users it no longer has: it read its own users, so there is one parser of users files).
 * On any error nothing changes and the error is thrown (the caller logs it).
 */
export async function reloadFromConfig(server: SocksServer, current: LoadedConfig, options: ReloadOptions): Promise<ReloadResult> {
  if (current.filepath === null) throw new SocksError('ERR_CONFIG_NOT_FOUND', 'no config file to reload (socksmith runs on defaults and flags)')
  // Messages name the file as the first load did (relative to the working directory of then).
  const cwd = isAbsolute(current.displayName) ? process.cwd() : current.filepath.slice(0, -current.displayName.length)
  let loaded = await loadConfig({ file: current.filepath, cwd })
  if (options.adjust !== undefined) loaded = options.adjust(loaded)
  const next = createServerFromConfig(loaded, { logger: options.logger })
  let switched: { closed: number }
  try {
    switched = await server.reload(next)
  } catch (err) {
    // Setup may have opened resources (timers, files): release them, the old pipeline stays.
    await next.close({ drainTimeout: 0 }).catch(() => {})
    const message = err instanceof Error ? err.message : String(err)
    throw new SocksError(err instanceof SocksError ? err.code : 'ERR_CONFIG_INVALID', `${loaded.displayName}: ${message}`, { cause: err })
  }
  const needsRestart: string[] = []
  if (JSON.stringify(current.config.listen) !== JSON.stringify(loaded.config.listen)) needsRestart.push('listen')
  if (JSON.stringify(current.config.metrics) !== JSON.stringify(loaded.config.metrics)) needsRestart.push('metrics')
  // The reloaded server kept the store it had (see SocksServer.reload): counters and leases live on.
  if (JSON.stringify(current.config.store) !== JSON.stringify(loaded.config.store)) needsRestart.push('store')
  return { loaded, closed: switched.closed, needsRestart }
}
