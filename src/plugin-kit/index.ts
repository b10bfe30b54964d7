/**
 * `socksmith/plugin-kit`: the helpers socksmith checks its own config with, for a plugin's
 * `parseOptions` — so every plugin's messages read alike ("found ...", "did you mean ...").
 * The bundled plugins use them from here, as a third-party plugin does.
 *
 * @example
 * import { checkKeys, describe, isPlainObject } from 'socksmith/plugin-kit'
 *
 * @packageDocumentation
 * @module socksmith/plugin-kit
 */
export { checkKeys } from './check-keys.js'
export type { CheckKeysOptions, KeyReport } from './check-keys.js'
export { describe, describeKind, isPlainObject } from './option-values.js'
export { didYouMean, editDistance } from './suggest.js'
