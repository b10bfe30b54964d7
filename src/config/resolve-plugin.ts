import { createRequire } from 'node:module'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { dirname, extname, isAbsolute, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { assertPlugin, definePlugin, isPhase, PHASES, type Plugin } from '../core/plugin.js'
import { isSocksError, SocksError } from '../core/errors.js'
import { IssueList } from './validate.js'
import { checkKeys, describe, didYouMean, isPlainObject } from '../plugin-kit/index.js'
import type { LoadedPlugin } from './types.js'

/** Plugins shipped with socksmith, found by these names in a config's `plugins`. */
export const BUNDLED_PLUGINS = ['auth', 'rules', 'dns-cache', 'upstream', 'limits'] as const

const TS_EXTENSIONS = new Set(['.ts', '.mts', '.cts'])
// Tried, in order, when a local plugin path has no extension.
const FILE_CANDIDATES = ['', '.ts', '.mts', '.js', '.mjs', '.cjs', '/index.ts', '/index.js', '/index.mjs']

export interface PluginLoadContext {
  /** Folder of the config file: local paths and npm packages are resolved from here. */
  readonly dir: string
  readonly issues: IssueList
  /** Appended to local file URLs so a reload imports edited files afresh. */
  readonly cacheKey: string
}

/** Resolves and imports every `plugins` entry; problems go to `issues`, with the entry's label. */
export async function loadPlugins(entries: readonly unknown[], context: PluginLoadContext): Promise<LoadedPlugin[]> {
  // Imported concurrently; problems are reported in list order all the same.
  const perEntry = entries.map(() => new IssueList(context.issues.file))
  const loaded = await Promise.all(entries.map((entry, index) => loadEntry(entry, index, { ...context, issues: perEntry[index] as IssueList })))
  for (const list of perEntry) context.issues.issues.push(...list.issues)
  return loaded.filter((entry): entry is LoadedPlugin => entry !== null)
}

async function loadEntry(entry: unknown, index: number, context: PluginLoadContext): Promise<LoadedPlugin | null> {
  const path = `plugins[${index}]`
  let target: unknown = entry
  let options: unknown
  if (Array.isArray(entry)) {
    if (entry.length === 0 || entry.length > 2) {
      context.issues.add(path, `expected [name, options], found a list of ${entry.length}`)
      return null
    }
    target = entry[0]
    options = entry[1]
  }
  if (typeof target === 'string') {
    const spec = target.trim()
    if (spec === '') {
      context.issues.add(path, 'plugin name is empty')
      return null
    }
    const label = `${path} (${spec})`
    try {
      const { plugin, source } = await importPlugin(spec, label, context)
      return { index, label: `${path} (${plugin.name})`, source, plugin, options }
    } catch (err) {
      context.issues.addError(label, err)
      return null
    }
  }
  if (typeof target === 'object' && target !== null && !Array.isArray(target)) {
    const object = target as Record<string, unknown>
    if ('phase' in object && !Array.isArray(entry)) return inlineMiddleware(object, index, context)
    const name = typeof object.name === 'string' ? object.name : '?'
    const label = `${path} (${name})`
    try {
      assertPlugin(target, label)
    } catch (err) {
      context.issues.add(label, messageAfter(err, label), 'ERR_PLUGIN_INVALID')
      return null
    }
    return { index, label, source: 'inline', plugin: target, options }
  }
  context.issues.add(
    path,
    `expected a plugin name or [name, options]${typeof target === 'function' ? ' (a plugin is an object with name and setup; call a plugin factory to get one)' : ''}, found ${describe(target)}`,
    'ERR_PLUGIN_INVALID',
  )
  return null
}

const INLINE_KEYS = ['phase', 'middleware', 'name']

function inlineMiddleware(object: Record<string, unknown>, index: number, context: PluginLoadContext): LoadedPlugin | null {
  const path = `plugins[${index}]`
  const { phase, middleware, name, ...rest } = object
  const label = `${path} (${typeof name === 'string' ? name : `inline ${String(phase)}`})`
  if (Object.keys(rest).length > 0) {
    checkKeys(rest, INLINE_KEYS, context.issues.report, { path: label })
    return null
  }
  if (!isPhase(phase)) {
    const hint = typeof phase === 'string' ? didYouMean(phase, PHASES) : null
    context.issues.add(`${label}.phase`, `expected one of ${PHASES.join(', ')}${hint === null ? '' : ` (did you mean "${hint}"?)`}, found ${describe(phase)}`)
    return null
  }
  const list = Array.isArray(middleware) ? middleware : [middleware]
  const bad = list.findIndex((fn) => typeof fn !== 'function')
  if (list.length === 0 || bad !== -1) {
    context.issues.add(`${label}.middleware`, `expected an async (ctx, next) => {} function or a list of them, found ${describe(list.length === 0 ? [] : list[bad])}`)
    return null
  }
  const pluginName = typeof name === 'string' ? name : `inline-${phase}-${index}`
  let plugin: Plugin<unknown>
  try {
    plugin = definePlugin<unknown>({
      name: pluginName,
      setup(host) {
        host.use(phase, ...(list as never[]))
      },
    })
    assertPlugin(plugin, label)
  } catch (err) {
    context.issues.add(label, messageAfter(err, label), 'ERR_PLUGIN_INVALID')
    return null
  }
  return { index, label: `${path} (${pluginName})`, source: 'inline', plugin, options: undefined }
}

/** design.md §5: a path → a file next to the config; a bundled name; else an npm package. */
async function importPlugin(spec: string, label: string, context: PluginLoadContext): Promise<{ plugin: Plugin<unknown>; source: string }> {
  if (spec.startsWith('./') || spec.startsWith('../') || isAbsolute(spec) || spec.startsWith('file:')) {
    const file = findFile(spec.startsWith('file:') ? fileURLToPath(spec) : resolve(context.dir, spec))
    if (file === null) {
      throw notFound(`plugin file not found: ${resolve(context.dir, spec)} (a path is resolved against the config file's folder, ${context.dir})`)
    }
    const module = await importModule(pathToFileURL(file).href + context.cacheKey, file)
    return { plugin: pickPlugin(module, label), source: file }
  }
  if ((BUNDLED_PLUGINS as readonly string[]).includes(spec)) {
    // A self-reference: resolves through the package's exports map, from dist or (under tests) from source.
    const module = await importModule(`socksmith/plugins/${spec}`, `bundled plugin ${spec}`)
    return { plugin: pickPlugin(module, label), source: 'bundled' }
  }
  const file = resolvePackage(spec, context.dir)
  const module = await importModule(pathToFileURL(file).href, file)
  return { plugin: pickPlugin(module, label), source: spec }
}

function findFile(base: string): string | null {
  for (const suffix of FILE_CANDIDATES) {
    const candidate = base + suffix
    try {
      if (statSync(candidate).isFile()) return candidate
    } catch {
      // try the next one
    }
  }
  return null
}

const PACKAGE_NAME = /^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*(\/.*)?$/i

/** Resolves an npm package (or a subpath of one) from `dir`, as Node would from a file there. */
export function resolvePackage(spec: string, dir: string): string {
  if (!PACKAGE_NAME.test(spec)) {
    throw notFound(`"${spec}" is not a bundled plugin (${BUNDLED_PLUGINS.join(', ')}), a path (./file.js) or an npm package name`)
  }
  const require = createRequire(join(dir, 'noop.js'))
  try {
    return require.resolve(spec)
  } catch (err) {
    const code = (err as { code?: string }).code
    // An ESM-only package exports "import" but not "require": read its exports map for import.
    if (code === 'ERR_PACKAGE_PATH_NOT_EXPORTED') {
      const file = resolveImportExport(spec, dir)
      if (file !== null) return file
    }
    const bundled = didYouMean(spec, BUNDLED_PLUGINS)
    throw notFound(
      `package "${spec}" not found from ${dir}` +
        (bundled !== null ? `; did you mean the bundled plugin "${bundled}"?` : ` (install it there: npm install ${packageNameOf(spec)})`),
    )
  }
}

function packageNameOf(spec: string): string {
  const parts = spec.split('/')
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string)
}

/** The "import" target of a package's exports map, for packages require.resolve cannot see. */
function resolveImportExport(spec: string, dir: string): string | null {
  const name = packageNameOf(spec)
  const subpath = `.${spec.slice(name.length)}`
  for (let folder = dir; ; folder = dirname(folder)) {
    const packageJson = join(folder, 'node_modules', name, 'package.json')
    if (existsSync(packageJson)) {
      const manifest = JSON.parse(readFileSync(packageJson, 'utf8')) as { exports?: unknown }
      const exports = manifest.exports
      const map = typeof exports === 'string' || Array.isArray(exports) || (isPlainObject(exports) && !Object.keys(exports).some((k) => k.startsWith('.')))
        ? { '.': exports }
        : (exports as Record<string, unknown> | undefined)
      const target = pickCondition(map?.[subpath])
      return target === null ? null : join(dirname(packageJson), target)
    }
    if (dirname(folder) === folder) return null
  }
}

function pickCondition(target: unknown): string | null {
  if (typeof target === 'string') return target
  if (Array.isArray(target)) {
    for (const item of target) {
      const found = pickCondition(item)
      if (found !== null) return found
    }
    return null
  }
  if (isPlainObject(target)) {
    for (const condition of ['import', 'node', 'default']) {
      if (condition in target) {
        const found = pickCondition(target[condition])
        if (found !== null) return found
      }
    }
  }
  return null
}

type TsImport = (specifier: string, parentURL: string) => Promise<unknown>
let tsxImport: Promise<TsImport | null> | null = null

/**
 * tsx's scoped import, if tsx is installed (it is a devDependency, so a clone has it). Each call
 * evaluates the file afresh, which a reload needs, and works whatever the folder's module type.
 */
function loadTsx(): Promise<TsImport | null> {
  tsxImport ??= (async () => {
    try {
      // A variable specifier: tsx is optional, so its types must not be required to build.
      const specifier = 'tsx/esm/api'
      const api = (await import(specifier)) as { tsImport?: TsImport }
      return typeof api.tsImport === 'function' ? api.tsImport : null
    } catch {
      return null
    }
  })()
  return tsxImport
}

/** True when .ts files can be imported: through tsx, or a loader the process started with. */
export async function canImportTypeScript(): Promise<boolean> {
  return (await loadTsx()) !== null || hasTypeScriptLoader()
}

/** True when the process was started with a TypeScript loader (node --import tsx, ts-node, type stripping). */
function hasTypeScriptLoader(): boolean {
  if ((process.features as { typescript?: unknown }).typescript) return true
  const flags = `${process.env.NODE_OPTIONS ?? ''} ${process.execArgv.join(' ')}`
  return /\btsx\b|ts-node|--experimental-(strip|transform)-types/.test(flags)
}

/**
 * Imports a module. `url` may carry a cache-busting query, so a reload evaluates edited files
 * again; TypeScript goes through tsx's scoped import, which is fresh on each call anyway.
 */
export async function importModule(url: string, what: string): Promise<Record<string, unknown>> {
  const bare = url.replace(/[?#].*$/, '')
  try {
    if (bare.startsWith('file:') && TS_EXTENSIONS.has(extname(fileURLToPath(bare)))) {
      const tsImport = await loadTsx()
      if (tsImport !== null) return (await tsImport(bare, import.meta.url)) as Record<string, unknown>
      if (!hasTypeScriptLoader()) {
        throw new SocksError('ERR_PLUGIN_INVALID', `cannot load ${what}: loading TypeScript needs tsx (npm install --save-dev tsx), or compile it to .js`)
      }
    }
    return (await import(url)) as Record<string, unknown>
  } catch (err) {
    failedToLoad(what, err)
  }
}

function failedToLoad(what: string, err: unknown): never {
  if (isSocksError(err)) throw err
  const message = err instanceof Error ? err.message : String(err)
  throw new SocksError('ERR_PLUGIN_INVALID', `${what} failed to load: ${message}`, { cause: err })
}

/** The module's default export, which must be a Plugin. */
function pickPlugin(module: Record<string, unknown>, label: string): Plugin<unknown> {
  let value = module.default
  // A CommonJS module compiled from ESM: module.exports = { __esModule: true, default: plugin }.
  if (isPlainObject(value) && value.__esModule === true && 'default' in value) value = value.default
  if (value === undefined) {
    const names = Object.keys(module).filter((k) => k !== 'default')
    throw invalid(`the module has no default export${names.length > 0 ? ` (it exports ${names.slice(0, 5).join(', ')}); export the plugin as default` : ''}`)
  }
  if (typeof value === 'function') {
    throw invalid(`the default export is ${describe(value)}, not a plugin object ({ name, setup }); if it is a factory, call it in a JS/TS config: plugins: [factory(options)]`)
  }
  try {
    assertPlugin(value, label)
  } catch (err) {
    throw invalid(messageAfter(err, label))
  }
  return value
}

function messageAfter(err: unknown, label: string): string {
  const message = err instanceof Error ? err.message : String(err)
  return message.startsWith(`${label}: `) ? message.slice(label.length + 2) : message
}

function notFound(message: string): SocksError {
  return new SocksError('ERR_PLUGIN_NOT_FOUND', message)
}

function invalid(message: string): SocksError {
  return new SocksError('ERR_PLUGIN_INVALID', message)
}
