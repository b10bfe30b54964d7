// The bundled auth plugin's exports, for the CLI's commands that work on passwords and users.

/** What the CLI uses of `socksmith/plugins/auth`. */
export type AuthExports = Record<string, unknown>

/**
 * Imports the bundled auth plugin and checks it exports `names` as functions; throws an Error
 * naming what is missing. A variable specifier: it is resolved through the package's exports
 * map, as a third-party program would (and the CLI does not load the plugin unless asked to).
 */
export async function importAuth<const K extends string>(names: readonly K[]): Promise<Record<K, (...args: never[]) => unknown>> {
  const specifier = 'socksmith/plugins/auth'
  const auth = (await import(specifier)) as AuthExports
  for (const name of names) {
    if (typeof auth[name] !== 'function') throw new Error(`the auth plugin does not export ${name}`)
  }
  return auth as Record<K, (...args: never[]) => unknown>
}
