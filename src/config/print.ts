import type { LoadedConfig } from './types.js'

const MASK = '********'
// Keys whose string values are secrets wherever they appear in plugin options.
const SECRET_KEY = /pass(word|phrase)?$|secret|token|credential|api[-_]?key|private[-_]?key/i
// scheme://user:password@host — the password part is masked, the user kept (it helps debugging).
const URL_USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)([^@/?#]*)@/i

/**
 * The effective config as plain data for `socksmith --print-config`: defaults filled in, plugins
 * with where they came from, secrets masked (auth passwords and hashes, passwords in URLs, any
 * option named like a password, secret or token), functions shown by name.
 */
export function printableConfig(loaded: LoadedConfig): Record<string, unknown> {
  const { config } = loaded
  return {
    file: loaded.filepath,
    listen: config.listen,
    limits: config.limits,
    timeouts: config.timeouts,
    log: config.log,
    metrics: config.metrics,
    allowOpenProxy: config.allowOpenProxy,
    udp: config.udp,
    plugins: config.plugins.map((entry) => ({
      name: entry.plugin.name,
      from: entry.source,
      ...(entry.options === undefined ? {} : { options: maskSecrets(entry.options, entry.plugin.name === 'auth' ? 'auth' : '') }),
    })),
  }
}

/** A deep copy of `value` with secrets replaced by a mask. */
export function maskSecrets(value: unknown, key = '', seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') {
    if (key !== '' && SECRET_KEY.test(key)) return MASK
    return value.replace(URL_USERINFO, (_, scheme: string, userinfo: string) => {
      const colon = userinfo.indexOf(':')
      return colon === -1 ? `${scheme}${userinfo}@` : `${scheme}${userinfo.slice(0, colon)}:${MASK}@`
    })
  }
  if (typeof value === 'function') return `[function ${value.name === '' ? 'anonymous' : value.name}]`
  if (typeof value !== 'object' || value === null) return value
  if (seen.has(value)) return '[circular]'
  seen.add(value)
  if (Array.isArray(value)) return value.map((item) => maskSecrets(item, key, seen))
  if (value instanceof RegExp || value instanceof Date || value instanceof URL) return maskSecrets(String(value), key, seen)
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) {
    // auth's `users` maps names to passwords or hashes: every value is secret.
    out[k] = key === 'auth' && k === 'users' && typeof v === 'object' && v !== null
      ? Object.fromEntries(Object.keys(v).map((name) => [name, MASK]))
      : maskSecrets(v, k, seen)
  }
  return out
}
