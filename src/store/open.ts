import { SocksError } from '../core/errors.js'
import { isClusterWorker } from '../ops/cluster.js'
import { checkKeys, describe, isPlainObject } from '../plugin-kit/index.js'
import { ClusterStore } from './cluster.js'
import { MemoryStore } from './memory.js'
import { RedisStore } from './redis.js'
import type { SharedStore, StoreOptions } from './store.js'

/** What `createStore()` may be told besides the options. */
export interface StoreHooks {
  /** A subscriber's listener threw (default: a process warning naming the channel). */
  onListenerError?: (err: unknown, channel: string) => void
}

/**
 * Creates the store `options` describe (default memory). In a `socksmith --workers` worker the
 * memory store is the primary's, shared by every worker: one limit for the server, not one per
 * worker. A Redis store connects on its first operation.
 *
 * @example
 * const store = createStore({ type: 'redis', url: 'redis://127.0.0.1:6379', prefix: 'proxy-eu:' })
 * await store.add('requests', 1, null)
 * await store.close()
 */
export function createStore(options: StoreOptions = { type: 'memory' }, hooks: StoreHooks = {}): SharedStore {
  const checked = checkStoreOptions(options, (at, message) => {
    throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `store${at === '' ? '' : `.${at}`}: ${message}`)
  }) as StoreOptions
  if (checked.type === 'redis') return new RedisStore(checked, hooks)
  if (isClusterWorker()) return new ClusterStore({ ...hooks, timeout: checked.timeout })
  return new MemoryStore(hooks)
}

const MEMORY_KEYS = ['type', 'timeout'] as const
const REDIS_KEYS = ['type', 'url', 'prefix', 'timeout'] as const

/**
 * Checks store options (a program's or the config's `store:`), reporting each problem with the
 * field below `store` it is about (`''` for the whole value); returns them when there was none.
 */
export function checkStoreOptions(value: unknown, report: (at: string, message: string) => void): StoreOptions | null {
  if (!isPlainObject(value)) {
    report('', `expected { type: memory } or { type: redis, url }, found ${describe(value)}`)
    return null
  }
  let ok = true
  const fail = (at: string, message: string): void => {
    ok = false
    report(at, message)
  }
  if (value.type !== 'memory' && value.type !== 'redis') {
    fail('type', `expected memory or redis, found ${describe(value.type)}`)
    return null
  }
  checkKeys(value, value.type === 'memory' ? MEMORY_KEYS : REDIS_KEYS, fail)
  if (value.timeout !== undefined && (typeof value.timeout !== 'number' || !Number.isSafeInteger(value.timeout) || value.timeout < 1)) {
    fail('timeout', `expected a positive number of milliseconds, found ${describe(value.timeout)}`)
  }
  if (value.type === 'redis') {
    if (value.url === undefined) fail('url', 'is required: redis://host:port (or rediss:// for TLS)')
    else {
      const problem = redisUrlProblem(value.url)
      if (problem !== null) fail('url', problem)
    }
    if (value.prefix !== undefined && typeof value.prefix !== 'string') fail('prefix', `expected a string put before every key (default "socksmith:"), found ${describe(value.prefix)}`)
  }
  return ok ? (value as unknown as StoreOptions) : null
}

function redisUrlProblem(url: unknown): string | null {
  if (typeof url !== 'string') return `expected a URL such as redis://127.0.0.1:6379, found ${describe(url)}`
  // The URL may carry a password: messages show it without its user info.
  const shown = JSON.stringify(url.replace(/\/\/[^/?#]*@/, '//***@'))
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return `${shown} is not a URL; expected redis://host:port (or rediss:// for TLS)`
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') return `${shown}: expected the scheme redis:// or rediss://, found ${parsed.protocol}//`
  if (parsed.hostname === '') return `${shown} names no host`
  return null
}
