// The CLI's ES entry, loaded by cli/bin.cts (the `socksmith` command).
import { parseArgs } from 'node:util'
import type { AddressInfo } from 'node:net'
import { announceListening, announceReady, isClusterWorker, parseWorkers, runPrimary } from './ops/cluster.js'
import { writePidFile } from './cli/pid-file.js'
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import * as nodeModule from 'node:module'
import { isLogLevel, type Logger } from './ops/logger.js'
import { switchableLogger } from './cli/logger.js'
import { shareMetricsWithPrimary, startClusterMetrics, startMetrics, type MetricsServer } from './ops/metrics.js'
import { isSocksError } from './core/errors.js'
import { keepServingOnUncaught } from './cli/process.js'
import type { SocksServer } from './core/server.js'
import { createServerFromConfig, loadConfig, prepareServer } from './config/load.js'
import { printableConfig } from './config/print.js'
import { reloadFromConfig } from './config/reload.js'
import type { LoadedConfig } from './config/types.js'

const HELP = `Usage: socksmith [options]
       socksmith hash-password

Runs a SOCKS5 proxy (RFC 1928, RFC 1929) described by a config file.

Options:
  -c, --config FILE     config file (default: search the working directory for package.json#socksmith,
                        .socksmithrc[.json|.yaml|.yml|.js|.cjs|.mjs|.ts], socksmith.config.{js,mjs,cjs,ts,yaml,yml,json})
  --host HOST           listen on HOST instead of the config's listeners (default 127.0.0.1)
  --port PORT           listen on PORT instead of the config's listeners (default 1080; 0 = any free port)
  --log-level LEVEL     silent | error | warn | info | debug (default: the config's log.level, else info)
  --allow-open-proxy    allow listening on a non-loopback address without authentication
  --check               validate the config (and load every plugin), then exit 0 or 1
  --print-config        print the effective config as JSON, secrets masked, then exit
  --watch               reload when the config file changes (as SIGHUP does)
  --workers N|auto      run N processes sharing the listeners (node:cluster); auto = one per CPU
  --pid-file FILE       once listening, write the pid of the process to signal to FILE (removed on exit)
  -h, --help            show this help
  -v, --version         print the version

Commands:
  hash-password         read a password from stdin (hidden when typed) and print its hash,
                        for the auth plugin's users or usersFile

Signals: SIGHUP reloads the config (new connections use it; accepted ones are kept).
SIGINT and SIGTERM stop accepting and let live connections finish (drain) before exiting.
Signal this node process (its pid is in --pid-file), not npx or npm start: npm does not pass SIGHUP on.
`

interface Flags {
  config?: string
  host?: string
  port?: string
  'log-level'?: string
  'allow-open-proxy'?: boolean
  check?: boolean
  'print-config'?: boolean
  watch?: boolean
  workers?: string
  'pid-file'?: string
  help?: boolean
  version?: boolean
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

function fail(message: string): void {
  process.stderr.write(`socksmith: ${message}\n`)
}

function errorText(err: unknown): string {
  if (isSocksError(err)) return `${err.message} (${err.code})`
  return err instanceof Error ? err.message : String(err)
}

async function main(argv: string[]): Promise<number> {
  let values: Flags
  let positionals: string[]
  try {
    ;({ values, positionals } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        host: { type: 'string' },
        port: { type: 'string' },
        'log-level': { type: 'string' },
        'allow-open-proxy': { type: 'boolean' },
        check: { type: 'boolean' },
        'print-config': { type: 'boolean' },
        watch: { type: 'boolean' },
        workers: { type: 'string' },
        'pid-file': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      strict: true,
      allowPositionals: true,
    }))
  } catch (err) {
    process.stderr.write(`socksmith: ${(err as Error).message}\n\n${HELP}`)
    return 2
  }
  if (values.help === true) {
    process.stdout.write(HELP)
    return 0
  }
  if (values.version === true) {
    process.stdout.write(`${version()}\n`)
    return 0
  }
  if (positionals[0] === 'hash-password' && positionals.length === 1) return hashPasswordCommand()
  if (positionals.length > 0) {
    process.stderr.write(`socksmith: unknown command "${positionals.join(' ')}"\n\n${HELP}`)
    return 2
  }
  const level = values['log-level']
  if (level !== undefined && !isLogLevel(level)) {
    fail(`--log-level must be one of silent, error, warn, info, debug (got "${level}")`)
    return 2
  }
  let port: number | undefined
  if (values.port !== undefined) {
    port = Number(values.port)
    if (values.port.trim() === '' || !Number.isInteger(port) || port < 0 || port > 65535) {
      fail(`--port must be an integer from 0 to 65535 (got "${values.port}")`)
      return 2
    }
  }
  let workers = 1
  if (values.workers !== undefined) {
    const parsed = parseWorkers(values.workers)
    if (parsed === null) {
      fail(`--workers must be a positive integer or "auto" (got "${values.workers}")`)
      return 2
    }
    workers = parsed
  }
  const pidFile = values['pid-file']
  if (pidFile !== undefined && pidFile.trim() === '') {
    fail('--pid-file needs a file name')
    return 2
  }
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
    const code = await runPrimary(workers, logger, printListening, onReady)
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

function printMetricsAddress(address: AddressInfo | null): void {
  if (address !== null) process.stdout.write(`socksmith metrics on http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}/metrics\n`)
}

/** One line per listener on stdout that scripts (and tests) can wait for. */
function printListening(address: AddressInfo): void {
  process.stdout.write(`socksmith listening on ${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}\n`)
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

/**
 * Lets a config or plugin file outside any project that has socksmith installed still import
 * 'socksmith': it gets the running copy. For ESM through a resolve hook (module.register, Node
 * 20.6+; see config/self-resolve.ts); for CommonJS (a .ts file in a folder without
 * "type": "module" is compiled to require() calls) by a fallback in Module._resolveFilename, as
 * tsx does for its own needs. Anything resolvable the normal way is left alone.
 */
function registerSelfResolve(): void {
  const register = (nodeModule as { register?: (specifier: URL, options: { data: unknown }) => void }).register
  if (typeof register === 'function') {
    try {
      register(new URL('./config/self-resolve.js', import.meta.url), { data: { selfURL: import.meta.url } })
    } catch {
      // Without the hook, such files need socksmith installed next to them, as any package would.
    }
  }
  const Module = nodeModule.Module as unknown as { _resolveFilename?: (request: string, ...rest: unknown[]) => string }
  const original = Module._resolveFilename
  if (typeof original !== 'function') return
  const selfRequire = nodeModule.createRequire(import.meta.url)
  Module._resolveFilename = function resolveSocksmithFallback(this: unknown, request: string, ...rest: unknown[]): string {
    try {
      return original.call(this, request, ...rest)
    } catch (err) {
      if ((request === 'socksmith' || request.startsWith('socksmith/')) && (err as { code?: string }).code === 'MODULE_NOT_FOUND') return selfRequire.resolve(request)
      throw err
    }
  }
}

/** SIGHUP (and with --watch, changes to the file) reload the config; one reload at a time. */
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

type HashPassword = (password: string) => string | Promise<string>

/** `socksmith hash-password`: a hash for the auth plugin, from a password read on stdin. */
async function hashPasswordCommand(): Promise<number> {
  let hashPassword: HashPassword
  try {
    // A variable specifier: the bundled auth plugin is resolved through the package's exports map.
    const specifier = 'socksmith/plugins/auth'
    const auth = (await import(specifier)) as { hashPassword?: unknown }
    if (typeof auth.hashPassword !== 'function') throw new Error('the auth plugin does not export hashPassword')
    hashPassword = auth.hashPassword as HashPassword
  } catch (err) {
    fail(`hash-password: ${errorText(err)}`)
    return 1
  }
  let password: string
  try {
    if (process.stdin.isTTY) {
      password = await promptHidden('Password: ')
      const again = await promptHidden('Repeat password: ')
      if (again !== password) {
        fail('hash-password: the passwords do not match')
        return 2
      }
    } else {
      password = await readStdin()
    }
  } catch (err) {
    fail(`hash-password: ${errorText(err)}`)
    return 1
  }
  if (password.length === 0) {
    fail('hash-password: the password is empty')
    return 2
  }
  let hash: string
  try {
    hash = await hashPassword(password)
  } catch (err) {
    // A password RFC 1929 cannot carry (over 255 bytes) is the user's to fix, not a crash.
    fail(`hash-password: ${errorText(err)}`)
    return isSocksError(err) && err.code === 'ERR_SOCKS_INVALID_ARGUMENT' ? 2 : 1
  }
  process.stdout.write(`${hash}\n`)
  return 0
}

/** All of stdin, minus one trailing line break (`echo secret | socksmith hash-password`). */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
}

/** Reads one line from the terminal without echoing it. */
function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin
  // Echo off before the prompt shows: whatever is typed once it is visible must not echo.
  stdin.setRawMode(true)
  process.stderr.write(prompt)
  return new Promise<string>((resolve, reject) => {
    let chars: string[] = []
    const finish = (): void => {
      stdin.removeListener('data', onData)
      stdin.setRawMode(false)
      stdin.pause()
      process.stderr.write('\n')
    }
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          finish()
          resolve(chars.join(''))
          return
        }
        if (ch === '\u0003') {
          finish()
          reject(new Error('cancelled'))
          return
        }
        if (ch === '\u007f' || ch === '\b') chars = chars.slice(0, -1)
        else chars.push(ch)
      }
    }
    stdin.setEncoding('utf8')
    stdin.on('data', onData)
    stdin.resume()
  })
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
    // A cluster worker's IPC channel would keep it alive after its drain.
    if (isClusterWorker()) process.exit(code)
  },
  (err: unknown) => {
    process.stderr.write(`socksmith: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exitCode = 1
  },
)
