/**
 * Helpers for messages about option values: the config validator, the server's own option checks
 * (which cannot import the config modules: those import the server) and every plugin (through
 * `socksmith/plugin-kit`) use these, so "found ..." reads the same everywhere.
 */

/** Describes a value for "found ..." messages without dumping large objects. */
export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'function') return `a function${value.name === '' ? '' : ` (${value.name})`}`
  if (typeof value === 'object') return 'an object'
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value)
  return `${typeof value} ${String(value)}`
}

/**
 * Says what kind of value it is without showing it (`a string`, `a number`), for options that may
 * hold a secret: a password in YAML that looks like a number is still a password.
 */
export function describeKind(value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'an object'
  return `a ${typeof value}`
}

/** True for `{}`-style objects (what YAML and JSON give): not a list, a class instance or null. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === Object.prototype || proto === null
}
