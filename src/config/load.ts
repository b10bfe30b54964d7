import type { Loader } from 'cosmiconfig'
import { existsSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, isAbsolute, relative, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { SocksError, isSocksError } from '../core/errors.js'
import { createLogger, type Logger } from '../ops/logger.js'
import { createServer, isLoopback, type SocksServer } from '../core/server.js'
import { canImportTypeScript, importModule, loadPlugins } from './resolve-plugin.js'
import { parsePluginOptions, type Plugin } from '../core/plugin.js'
import { checkPluginOrder, IssueList, validateBase } from './validate.js'
import { isPlainObject } from '../plugin-kit/index.js'
import type { LoadedConfig, PluginEntry, SocksmithConfig } from './types.js'

const MODULE_NAME = 'socksmith'

/** Where cosmiconfig looks, in order (in the search folder only). */
export const SEARCH_PLACES = [
  'package.json',
  `.${MODULE_NAME}rc`,
  `.${MODULE_NAME}rc.json`,
  `.${MODULE_NAME}rc.yaml`,
  `.${MODULE_NAME}rc.yml`,
  `.${MODULE_NAME}rc.js`,
  `.${MODULE_NAME}rc.cjs`,
  `.${MODULE_NAME}rc.mjs`,
  `.${MODULE_NAME}rc.ts`,
  `${MODULE_NAME}.config.js`,
  `${MODULE_NAME}.config.mjs`,
  `${MODULE_NAME}.config.cjs`,
  `${MODULE_NAME}.config.ts`,
  // Not in the issue's list, but a YAML/JSON file with the obvious name is what people write first.
  `${MODULE_NAME}.config.yaml`,
  `${MODULE_NAME}.config.yml`,
  `${MODULE_NAME}.config.json`,
]

/**
 * Gives a config object its type in a JS/TS config file.
 *
 * @example
 * // socksmith.config.ts
 * import { defineConfig } from 'socksmith'
 * export default defineConfig({
 *   listen: { host: '127.0.0.1', port: 1080 },
 *   plugins: [['auth', { users: { alice: 'secret' } }], 'dns-cache'],
 * })
 */
export function defineConfig<P extends readonly PluginEntry[] = PluginEntry[]>(config: Omit<SocksmithConfig, 'plugins'> & { plugins?: CheckedPluginEntries<P> }): SocksmithConfig {
  return config
}

/**
 * `plugins` as `defineConfig` checks it: in each `[plugin, options]` entry whose plugin is an
 * object, `options` must be that plugin's input option type (`Plugin<O, In>`'s `In`). Entries
 * that name a plugin by string are checked when the config loads.
 *
 * A mapped tuple, so the compiler infers each entry's plugin from the entry itself and then
 * checks the options object literal against its `In` as it checks `register(plugin, options)`:
 * a misspelt key gets TypeScript's own "did you mean" at that key.
 */
export type CheckedPluginEntries<P extends readonly unknown[]> = [
  ...{
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    [K in keyof P]: P[K] extends readonly [infer Entry extends Plugin<any, any>, ...unknown[]] ? readonly [plugin: Entry, options?: OptionsInput<Entry>] : P[K]
  },
]

/** What a plugin's users write as its options (`In` of `Plugin<O, In>`). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type OptionsInput<T> = T extends Plugin<any, infer In> ? In : never

/** What `loadConfig()` loads: a file, a config object, or the config found in a folder. */
export interface LoadConfigOptions {
  /** A config file to load (relative to `cwd`) instead of searching. */
  file?: string
  /** A config object to use instead of a file (a program's own settings, tests). */
  config?: SocksmithConfig
  /** Where to search and what messages name files relative to. Default `process.cwd()`. */
  cwd?: string
}

let loadCount = 0
const requireCache = createRequire(import.meta.url).cache

/**
 * Finds (or loads) the config file, checks every key and loads the plugins it lists, in order.
 * Each plugin's options are checked by `createServerFromConfig()` (the plugin's parseOptions).
 * Throws a SocksError (`ERR_CONFIG_*`, `ERR_PLUGIN_*`) whose message names the file, the entry
 * and the field, one line per problem. With no file found, the defaults are returned.
 *
 * @example
 * const loaded = await loadConfig({ file: 'socksmith.config.yaml' })
 * const server = createServerFromConfig(loaded)
 * for (const listen of loaded.config.listen) await server.listen(listen)
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<LoadedConfig> {
  const cwd = resolve(options.cwd ?? process.cwd())
  // Each load imports JS/TS configs and local plugin files afresh, so a reload sees edits.
  const cacheKey = `?socksmith-load=${++loadCount}`
  let raw: unknown
  let filepath: string | null = null
  if (options.config !== undefined) {
    raw = options.config
  } else {
    // Loaded on use: programs that never read a config file do not pay for cosmiconfig.
    const { cosmiconfig, defaultLoaders } = await import('cosmiconfig')
    const explorer = cosmiconfig(MODULE_NAME, {
      searchPlaces: SEARCH_PLACES,
      searchStrategy: 'none',
      cache: false,
      loaders: moduleLoaders(cacheKey, defaultLoaders['.ts']),
    })
    if (options.file !== undefined) {
      filepath = resolve(cwd, options.file)
      if (!existsSync(filepath) || !statSync(filepath).isFile()) throw new SocksError('ERR_CONFIG_NOT_FOUND', `config file not found: ${filepath}`)
      const result = await explore(() => explorer.load(filepath as string), displayName(filepath, cwd))
      raw = result?.config
    } else {
      const result = await explore(() => explorer.search(cwd), 'config')
      if (result !== null) {
        filepath = result.filepath
        raw = result.config
      }
    }
  }
  const display = filepath === null ? 'config' : displayName(filepath, cwd)
  const issues = new IssueList(display)
  const { config: base, plugins: entries } = validateBase(raw, issues, filepath === null ? cwd : dirname(filepath))
  const plugins = await loadPlugins(entries, { dir: filepath === null ? cwd : dirname(filepath), issues, cacheKey })
  checkPluginOrder(plugins, issues)
  // createServerFromConfig checks the plugins' options; when this load fails already, check them
  // now, so that one run reports every problem.
  if (!issues.empty) {
    const dir = filepath === null ? cwd : dirname(filepath)
    for (const entry of plugins) {
      try {
        parsePluginOptions(entry.plugin, entry.options, `${entry.label}: `, dir)
      } catch (err) {
        issues.addError(entry.label, err, `${entry.label}: `)
      }
    }
  }
  issues.throwIfAny()
  return { filepath, displayName: display, config: { ...base, plugins } }
}

async function explore<T>(run: () => Promise<T>, display: string): Promise<T> {
  try {
    return await run()
  } catch (err) {
    if (isSocksError(err)) throw err
    // cosmiconfig's parse errors start with "JSON Error in /abs/path:\n"; the file is named once, in front.
    const message = (err instanceof Error ? err.message : String(err)).replace(/^(JSON|YAML|TypeScript) Error in [^\n]*:\n/, '$1: ')
    throw new SocksError('ERR_CONFIG_INVALID', `${display}: ${message}`, { cause: err })
  }
}

/** `socksmith.config.yaml` for a file in the working directory, `conf/x.yaml` below it, else absolute. */
export function displayName(filepath: string, cwd: string = process.cwd()): string {
  const rel = relative(cwd, filepath)
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : filepath
}

/**
 * JS and TS configs are imported (not required), freshly on each load; TypeScript goes through tsx
 * when it is installed, else through cosmiconfig's loader, which needs the typescript package.
 */
function moduleLoaders(cacheKey: string, typescriptLoader: Loader): Record<string, Loader> {
  // Loaders throw plain Errors: explore() turns them into ERR_CONFIG_INVALID naming the file once.
  const loadModule: Loader = async (filepath) => {
    // CommonJS is cached by file name whatever the URL's query says.
    delete requireCache[filepath]
    let module: Record<string, unknown>
    try {
      module = await importModule(pathToFileURL(filepath).href + cacheKey, 'the config')
    } catch (err) {
      throw new Error(err instanceof Error ? err.message : String(err), { cause: err })
    }
    return configExport(module)
  }
  const loadTypeScript: Loader = async (filepath, content) => {
    if (!(await canImportTypeScript())) {
      try {
        return await typescriptLoader(filepath, content)
      } catch (err) {
        if ((err as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' || /Cannot find (module|package) 'typescript'/.test(String(err))) {
          throw new Error('a TypeScript config needs tsx or typescript installed (npm install --save-dev tsx), or write it as .mjs', { cause: err })
        }
        throw err
      }
    }
    return loadModule(filepath, content)
  }
  return { '.js': loadModule, '.mjs': loadModule, '.cjs': loadModule, '.ts': loadTypeScript, '.mts': loadTypeScript, '.cts': loadTypeScript }
}

function configExport(module: Record<string, unknown>): unknown {
  let value = module.default
  if (isPlainObject(value) && value.__esModule === true && 'default' in value) value = value.default
  if (value === undefined) throw new Error('a JS/TS config must export the config as default (export default defineConfig({ ... }))')
  return value
}

/** Options of `createServerFromConfig()`. */
export interface CreateServerFromConfigOptions {
  /** Default: the built-in stderr logger at the config's `log.level`. */
  logger?: Logger
}

/**
 * Builds a SocksServer from a loaded config: limits, timeouts and every plugin with its options
 * (each plugin's parseOptions checks them now; errors name the file, the entry and the field).
 * The server is not listening yet: listen on `loaded.config.listen`.
 */
export function createServerFromConfig(loaded: LoadedConfig, options: CreateServerFromConfigOptions = {}): SocksServer {
  const { config } = loaded
  const server = createServer({
    timeouts: config.timeouts,
    maxConnections: config.limits.maxConnections,
    maxConnectionsPerClient: config.limits.perClient,
    clientPrefix: config.limits.clientPrefix,
    logger: options.logger ?? createLogger(config.log.level),
    accessLog: config.log.access,
    allowOpenProxy: config.allowOpenProxy,
    udp: config.udp,
    store: config.store,
  })
  const issues = new IssueList(loaded.displayName)
  const dir = loaded.filepath === null ? process.cwd() : dirname(loaded.filepath)
  for (const entry of config.plugins) {
    // The file is named by the issue list here and by prepareServer() for setup errors.
    const at = `${entry.label}: `
    try {
      server.register(entry.plugin, entry.options, { at, dir })
    } catch (err) {
      issues.addError(entry.label, err, at)
    }
  }
  issues.throwIfAny()
  return server
}

/**
 * Runs plugin setup and checks that no listener would be an open proxy, without opening a port
 * (`socksmith --check`, and the CLI before its first listen).
 */
export async function prepareServer(server: SocksServer, loaded: LoadedConfig): Promise<void> {
  try {
    await server.prepare()
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err)
    throw new SocksError(isSocksError(err) ? err.code : 'ERR_CONFIG_INVALID', `${loaded.displayName}: ${message}`, { cause: err })
  }
  if (server.authRequired || loaded.config.allowOpenProxy) return
  const open = loaded.config.listen.find((listen) => !isLoopback(listen.host))
  if (open !== undefined) {
    throw new SocksError(
      'ERR_SOCKS_OPEN_PROXY',
      `${loaded.displayName}: listen: refusing to listen on ${open.host} without authentication: add the auth plugin, or set allowOpenProxy: true (CLI: --allow-open-proxy) if an open proxy is really what you want`,
    )
  }
}
