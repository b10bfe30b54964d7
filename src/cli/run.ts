// The CLI: loads the config, starts the server (or the cluster), reloads on SIGHUP, drains on SIGTERM.
import type { AddressInfo } from 'node:net'
import { announceListening, announceReady, isClusterWorker, runPrimary } from '../ops/cluster.js'
import { isLogLevel, type Logger } from '../ops/logger.js'
import { shareMetricsWithPrimary, startClusterMetrics, startMetrics, type MetricsServer } from '../ops/metrics.js'
import type { SocksServer } from '../core/server.js'
import { createServerFromConfig, loadConfig, prepareServer } from '../config/load.js'
import { printableConfig } from '../config/print.js'
import type { LoadedConfig } from '../config/types.js'
import { parseCommandLine, type Flags } from './args.js'
import { switchableLogger } from './logger.js'
import { errorText, fail, printListening, printMetricsAddress } from './output.js'
import { writePidFile } from './pid-file.js'
import { keepServingOnUncaught } from './process.js'
import { startReloader } from './reloader.js'
import { registerSelfResolve } from './self-resolve.js'
import { serveClusterStore } from '../store/cluster.js'

/** Runs the CLI with `argv` (without node and the script); resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  const parsed = await parseCommandLine(argv)
  if (typeof parsed === 'number') return parsed
  const { values, port, workers, pidFile } = parsed
  const adjust = (loaded: LoadedConfig): LoadedConfig => applyFlags(loaded, values, port)

  registerSelfResolve()
  let loaded: LoadedConfig
  try {
    loaded = adjust(await loadConfig(values.config === undefined ? {} : { file: values.config }))
  } catch (err) {
    fail(errorText(err))
    return 1
  }
  const logger = switchableLogger(loaded.config.log.level)
  let server: SocksServer
  try {
    server = createServerFromConfig(loaded, { logger })
  } catch (err) {
    fail(errorText(err))
    return 1
  }
  if (values['print-config'] === true) {
    process.stdout.write(`${JSON.stringify(printableConfig(loaded), null, 2)}\n`)
    await server.close({ drainTimeout: 0 })
    return 0
  }
  try {
    await prepareServer(server, loaded)
  } catch (err) {
    fail(errorText(err))
    await server.close({ drainTimeout: 0 })
    return 1
  }
  if (values.check === true) {
    const names = loaded.config.plugins.map((p) => p.plugin.name)
    process.stdout.write(`${loaded.filepath === null ? 'no config file found; the defaults' : loaded.displayName} OK${names.length > 0 ? ` (plugins: ${names.join(', ')})` : ''}\n`)
    await server.close({ drainTimeout: 0 })
    return 0
  }
  if (workers > 1 && !isClusterWorker()) {
    // The config was checked above, once; each worker loads it again and listens on the shared sockets.
    await server.close({ drainTimeout: 0 })
    let clusterMetrics: Awaited<ReturnType<typeof startClusterMetrics>> | null = null
    const metricsOptions = loaded.config.metrics
    if (metricsOptions !== null) {
      try {
        clusterMetrics = await startClusterMetrics(metricsOptions)
      } catch (err) {
        fail(`metrics: cannot listen on ${metricsOptions.host}:${metricsOptions.port}: ${(err as NodeJS.ErrnoException).code ?? errorText(err)}`)
        return 1
      }
      printMetricsAddress(clusterMetrics.address())
    }
    const onReady = (): boolean => {
      if (pidFile === undefined) return true
      try {
        announcePidFile(pidFile, logger)
        return true
      } catch (err) {
        fail(errorText(err))
        return false
      }
    }
    // The workers' memory store lives here, so a limit is one limit for all of them.
    const store = loaded.config.store.type === 'memory' ? serveClusterStore() : null
    const code = await runPrimary(workers, logger, printListening, onReady)
    await store?.close()
    await clusterMetrics?.close()
    return code
  }
  keepServingOnUncaught(logger)
  // Before the first "listening" line: once a script sees it, SIGHUP and --watch must work.
  const reloader = startReloader(server, loaded, logger, adjust, values.watch === true)
  let metrics: MetricsServer | null = null
  try {
    // First: once a "listening" line is out, every port is open.
    metrics = await startConfiguredMetrics(server, loaded, logger)
    for (const listen of loaded.config.listen) {
      const address = await server.listen(listen)
      if (isClusterWorker()) announceListening(address)
      else printListening(address)
    }
    // In a cluster the primary writes it, once every worker is ready.
    if (isClusterWorker()) announceReady()
    else if (pidFile !== undefined) announcePidFile(pidFile, logger)
  } catch (err) {
    reloader.stop()
    await metrics?.close()
    fail(errorText(err))
    await server.close({ drainTimeout: 0 })
    return 1
  }
  await new Promise<void>((resolve) => {
    let stopping = false
    const stop = (signal: string): void => {
      if (stopping) {
        // In a cluster the primary forwards the signal, and a supervisor may signal the whole
        // process group as well: only the primary decides to cut the drain short.
        if (isClusterWorker()) return
        logger.warn(`${signal} again: closing now`)
        process.exit(1)
      }
      stopping = true
      reloader.stop()
      logger.info(`${signal}: draining`)
      // The metrics listener stays up while connections drain: that is when they are watched.
      server.close().then(() => metrics?.close()).then(resolve, resolve)
    }
    process.on('SIGINT', () => stop('SIGINT'))
    process.on('SIGTERM', () => stop('SIGTERM'))
  })
  return 0
}

/** Writes --pid-file (see pid-file.ts) and says so; throws when it cannot. */
function announcePidFile(file: string, logger: Logger): void {
  logger.info(`pid ${process.pid} written to ${writePidFile(file)}`)
}

/** The config's `metrics` listener, announced on stdout like the SOCKS listeners. */
async function startConfiguredMetrics(server: SocksServer, loaded: LoadedConfig, logger: Logger): Promise<MetricsServer | null> {
  const options = loaded.config.metrics
  if (options === null) return null
  if (isClusterWorker()) {
    // The primary serves the sum of every worker's metrics; a worker only answers its questions.
    const shared = await shareMetricsWithPrimary(server, options)
    return { registry: shared.registry, address: () => null, close: async () => shared.detach() }
  }
  let metrics: MetricsServer
  try {
    metrics = await startMetrics(server, options)
  } catch (err) {
    throw new Error(`metrics: cannot listen on ${options.host}:${options.port}: ${(err as NodeJS.ErrnoException).code ?? errorText(err)}`, { cause: err })
  }
  printMetricsAddress(metrics.address())
  return metrics
}

/** --host/--port replace the config's listeners with one; the other flags override their key. */
function applyFlags(loaded: LoadedConfig, values: Flags, port: number | undefined): LoadedConfig {
  const config = { ...loaded.config }
  if (values.host !== undefined || port !== undefined) {
    const first = config.listen[0] ?? { host: '127.0.0.1', port: 1080 }
    config.listen = [{ ...first, host: values.host ?? first.host, port: port ?? first.port }]
  }
  const level = values['log-level']
  if (level !== undefined && isLogLevel(level)) config.log = { ...config.log, level }
  if (values['allow-open-proxy'] === true) config.allowOpenProxy = true
  return { ...loaded, config }
}
