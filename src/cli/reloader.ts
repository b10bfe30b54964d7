import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import type { SocksServer } from '../core/server.js'
import { reloadFromConfig } from '../config/reload.js'
import type { LoadedConfig } from '../config/types.js'
import type { switchableLogger } from './logger.js'
import { errorText } from './output.js'

export /** SIGHUP (and with --watch, changes to the file) reload the config; one reload at a time. */
function startReloader(server: SocksServer, initial: LoadedConfig, logger: ReturnType<typeof switchableLogger>, adjust: (loaded: LoadedConfig) => LoadedConfig, watchFile: boolean): { stop(): void } {
  let current = initial
  let running = false
  let again = false
  let lastContent = initial.filepath === null ? null : readOrNull(initial.filepath)

  const reload = async (why: string): Promise<void> => {
    if (running) {
      again = true
      return
    }
    running = true
    try {
      do {
        again = false
        if (current.filepath === null) {
          logger.warn(`${why}: no config file to reload`)
          break
        }
        lastContent = readOrNull(current.filepath)
        logger.info(`${why}: reloading ${current.displayName}`)
        try {
          const result = await reloadFromConfig(server, current, { logger, adjust })
          current = result.loaded
          logger.setLevel(current.config.log.level)
          for (const key of result.needsRestart) logger.warn(`${current.displayName}: ${key} changed; restart socksmith to apply it`)
          const names = current.config.plugins.map((p) => p.plugin.name)
          logger.info(`reloaded ${current.displayName}${names.length > 0 ? ` (plugins: ${names.join(', ')})` : ''}${result.closed > 0 ? `; closed ${result.closed} connection(s) the new configuration no longer allows` : ''}`)
          process.stdout.write(`socksmith reloaded ${current.displayName}\n`)
        } catch (err) {
          logger.error(`reload failed; the running configuration stays: ${errorText(err)}`)
        }
      } while (again)
    } finally {
      running = false
    }
  }

  const onHangup = (): void => void reload('SIGHUP')
  process.on('SIGHUP', onHangup)

  let watcher: FSWatcher | null = null
  let debounce: NodeJS.Timeout | null = null
  const filepath = initial.filepath
  if (watchFile && filepath === null) logger.warn('--watch: no config file to watch')
  if (watchFile && filepath !== null) {
    // The folder, not the file: editors save by writing a new file and renaming it over the old one.
    watcher = watch(dirname(filepath), (_event, name) => {
      if (name !== null && name.toString() !== basename(filepath)) return
      if (debounce !== null) clearTimeout(debounce)
      // Editors write in several steps; act once they are done.
      debounce = setTimeout(() => {
        debounce = null
        const content = readOrNull(filepath)
        if (content === null || content === lastContent) return
        void reload('config file changed')
      }, 100)
    })
    watcher.on('error', (err) => logger.warn(`--watch: ${err.message}`))
  }
  return {
    stop() {
      process.removeListener('SIGHUP', onHangup)
      // A later SIGHUP while draining must not kill the process (the default action).
      process.on('SIGHUP', () => {})
      watcher?.close()
      if (debounce !== null) clearTimeout(debounce)
    },
  }
}

function readOrNull(file: string): string | null {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return null
  }
}
