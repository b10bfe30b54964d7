import { didYouMean } from './suggest.js'

/**
 * Where `checkKeys()` reports an unknown key: a plugin's `OptionPath` (`at`; the shape is spelled
 * out so this module needs nothing of the core), or a function that records it (the config
 * validator's issue list).
 */
export type KeyReport =
  | {
      /** Throws, naming `field` (an `OptionPath`'s `fail`). */
      fail(field: string, message: string): never
      /** Runs `check`, recording a failure in it instead of ending the parse (an `OptionPath`'s `collect`). */
      collect?<T>(check: () => T): T | undefined
    }
  | ((field: string, message: string) => void)

/** The fourth argument of `checkKeys()`. */
export interface CheckKeysOptions {
  /** Where the object sits: with `'throttle'` a bad key is reported as `throttle.<key>`. Default `''`. */
  readonly path?: string
  /** Keys users are known to write for a real one (`passwordFile` → `usersFile`), suggested before a guess. */
  readonly aliases?: Readonly<Record<string, string>>
}

/**
 * Reports each key of `object` that is not in `known`, at `<path>.<key>`: with a hint when one is
 * close (`throttle.maxFailure: unknown key; did you mean "maxFailures"?`), else with the known
 * keys (`size: unknown key (known keys: max, minTtl, maxTtl)`).
 *
 * With an `OptionPath`, every unknown key is reported (through `at.collect`) and then parsing
 * stops, as at `at.fail`: what a misspelt key meant is missing, and the checks after it would
 * only report that again ("give an upstream" after `proxi`). A parser that checks independent
 * parts can go on anyway: `at.collect?.(() => checkKeys(raw, KEYS, at))`. A reporting function
 * gets every unknown key and checkKeys returns.
 *
 * @example
 * import { checkKeys, describe, isPlainObject } from 'socksmith/plugin-kit'
 *
 * parseOptions(raw: unknown, at: OptionPath): DenyPortsOptions {
 *   if (!isPlainObject(raw)) at.fail('', `expected an object { ports }, found ${describe(raw)}`)
 *   checkKeys(raw, ['ports', 'message'], at)
 *   // ...
 * }
 */
export function checkKeys(object: Readonly<Record<string, unknown>>, known: readonly string[], report: KeyReport, options: CheckKeysOptions = {}): void {
  const { path = '', aliases } = options
  const unknown = Object.keys(object).filter((key) => !known.includes(key))
  unknown.forEach((key, i) => {
    const hint = (aliases !== undefined && Object.hasOwn(aliases, key) ? aliases[key] : undefined) ?? didYouMean(key, known)
    const field = path === '' ? key : `${path}.${key}`
    const message = `unknown key${hint === null ? ` (known keys: ${known.join(', ')})` : `; did you mean "${hint}"?`}`
    if (typeof report === 'function') report(field, message)
    // All but the last are recorded; the last one throws and ends the parse.
    else if (i < unknown.length - 1 && report.collect !== undefined) report.collect(() => report.fail(field, message))
    else report.fail(field, message)
  })
}
