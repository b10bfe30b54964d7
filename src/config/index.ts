/**
 * Config files beyond `defineConfig` and `loadConfig` (which the root entry exports): building a
 * server from a loaded config, reloading it, and the pieces the CLI uses. Exported as `socksmith/config`.
 *
 * @packageDocumentation
 * @module socksmith/config
 */
export { defineConfig, loadConfig, createServerFromConfig, prepareServer, SEARCH_PLACES } from './load.js'
export type { LoadConfigOptions, CreateServerFromConfigOptions } from './load.js'
export { BUNDLED_PLUGINS } from './resolve-plugin.js'
export { reloadFromConfig } from './reload.js'
export type { ReloadOptions, ReloadResult } from './reload.js'
export { parseDuration } from './validate.js'
// Every config type (SocksmithConfig, ListenConfig, PluginEntry, LoadedConfig, ...).
export type * from './types.js'
