import type { LoadedConfig } from './types.js'

const MASK = '********'
// An option is a secret when a word of its name (camelCase, snake_case, kebab-case, any case) is one of these.
const SECRET_WORDS = new Set([
  'password', 'passwords', 'passwd', 'passphrase', 'pass', 'pwd', 'secret', 'secrets', 'token', 'tokens',
  'credential', 'credentials', 'authorization', 'bearer', 'cookie', 'cookies', 'apikey', 'privatekey',
])
// ...or when it is `key` alone or `<one of these> key` (apiKey, private_key, accessKey...).
const KEY_QUALIFIERS = new Set(['api', 'private', 'access', 'secret', 'signing', 'encryption', 'client'])
// scheme://userinfo@ anywhere in a string. The userinfo runs to the LAST "@" before the authority
// ends (/ ? # or whitespace), as the WHATWG URL parser splits it: `socks5://carol:p@ss@host` has
// the password `p@ss`. Greedy `[^...]*` followed by `@` backtracks to exactly that "@".
const URL_USERINFO = /([a-z][a-z0-9+.-]*:\/\/)([^/?#\s]*)@/gi

/**
 * The effective config as plain data for `socksmith --print-config`: defaults filled in, plugins
 * with where they came from, secrets masked (passwords in URLs, any option named like a password,
 * secret or token, and the option paths a plugin declares in `secretOptions`, such as auth's
 * `users`), functions shown by name.
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
    store: maskSecrets(config.store),
    plugins: config.plugins.map((entry) => ({
      name: entry.plugin.name,
      from: entry.source,
      ...(entry.options === undefined ? {} : { options: maskSecrets(entry.options, entry.plugin.secretOptions) }),
    })),
  }
}

/**
 * A deep copy of `value` with secrets replaced by a mask: every string or number under a key named
 * like a secret or under one of `secretPaths` (dotted, arrays transparent: `users`, `tls.key`), and
 * the password of any `scheme://user:password@host` in a string.
 */
export function maskSecrets(value: unknown, secretPaths: readonly string[] = []): unknown {
  return mask(value, '', false, new Set(secretPaths), new WeakSet())
}

function mask(value: unknown, path: string, secret: boolean, secretPaths: ReadonlySet<string>, ancestors: WeakSet<object>): unknown {
  if (typeof value === 'string') return secret ? MASK : maskUrlPasswords(value)
  // YAML reads `password: 123456` as a number.
  if (typeof value === 'number' || typeof value === 'bigint') return secret ? MASK : value
  if (typeof value === 'function') return `[function ${value.name === '' ? 'anonymous' : value.name}]`
  if (typeof value !== 'object' || value === null) return value
  if (ancestors.has(value)) return '[circular]'
  if (value instanceof RegExp || value instanceof Date || value instanceof URL) return mask(String(value), path, secret, secretPaths, ancestors)
  ancestors.add(value)
  let out: unknown
  if (Array.isArray(value)) {
    out = value.map((item) => mask(item, path, secret, secretPaths, ancestors))
  } else {
    const object: Record<string, unknown> = {}
    for (const [key, item] of Object.entries(value)) {
      const itemPath = path === '' ? key : `${path}.${key}`
      object[key] = mask(item, itemPath, secret || secretPaths.has(itemPath) || isSecretKey(key), secretPaths, ancestors)
    }
    out = object
  }
  ancestors.delete(value)
  return out
}

/** True for option names such as `password`, `passwd`, `PWD`, `client_secret`, `apiKey`, `Authorization`. */
export function isSecretKey(key: string): boolean {
  const words = key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((word) => word !== '')
  if (words.length === 1 && words[0] === 'key') return true
  return words.some((word, i) => SECRET_WORDS.has(word) || (word === 'key' && i > 0 && KEY_QUALIFIERS.has(words[i - 1] as string)))
}

/** `scheme://user:password@host` → `scheme://user:********@host`, for every URL in the string. */
function maskUrlPasswords(text: string): string {
  return text.replace(URL_USERINFO, (match, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':')
    return colon === -1 ? match : `${scheme}${userinfo.slice(0, colon)}:${MASK}@`
  })
}
