import type { OptionPath } from 'socksmith'
import { checkKeys, describe, isPlainObject } from 'socksmith/plugin-kit'

/** Options of the dns-cache plugin and of `DnsCache`. Times are in seconds (fractions allowed). */
export interface DnsCacheOptions {
  /** Names held at most; the least recently used one is evicted first. Default 10000. */
  max?: number
  /** Answers are kept at least this long, whatever their TTL says. Default 5. */
  minTtl?: number
  /** Answers are kept at most this long, whatever their TTL says. Default 3600. */
  maxTtl?: number
  /** How long "no such name" / "no address" answers are kept; 0 turns negative caching off. Default 5. */
  negativeTtl?: number
  /** TTL for answers that carry none (the system resolver's never do), then clamped. Default 60. */
  defaultTtl?: number
  /**
   * When the wrapped resolver is the system resolver, also ask DNS (A and AAAA with TTLs) in
   * parallel, and use the DNS TTL when DNS agrees with the system's answer. Default false.
   */
  useDnsTtl?: boolean
  /** Monotonic milliseconds (like `performance`); for tests that move time by hand. */
  clock?: {
    /** Milliseconds from a monotonic clock. */
    now(): number
  } | null
}

/** Options after validation: every field set. */
export interface ResolvedDnsCacheOptions {
  readonly max: number
  readonly minTtl: number
  readonly maxTtl: number
  readonly negativeTtl: number
  readonly defaultTtl: number
  readonly useDnsTtl: boolean
  readonly clock: {
    /** Milliseconds from a monotonic clock. */
    now(): number
  } | null
}

/** The dns-cache plugin's options when none are given (times in seconds). */
export const DEFAULT_DNS_CACHE_OPTIONS: Readonly<Omit<ResolvedDnsCacheOptions, 'clock'>> = Object.freeze({
  max: 10_000,
  minTtl: 5,
  maxTtl: 3600,
  negativeTtl: 5,
  defaultTtl: 60,
  useDnsTtl: false,
})

const KNOWN_KEYS = ['max', 'minTtl', 'maxTtl', 'negativeTtl', 'defaultTtl', 'useDnsTtl', 'clock'] as const

/** Validates raw options (from a config file or a program) and fills in the defaults. */
export function parseDnsCacheOptions(raw: unknown, at: OptionPath): ResolvedDnsCacheOptions {
  if (raw === undefined || raw === null) return { ...DEFAULT_DNS_CACHE_OPTIONS, clock: null }
  if (!isPlainObject(raw)) at.fail('', `options must be an object like { max: 10000, minTtl: 5 }, found ${describe(raw)}`)
  const options = raw
  checkKeys(options, KNOWN_KEYS, at)
  const max = options.max ?? DEFAULT_DNS_CACHE_OPTIONS.max
  if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 1) at.fail('max', `must be a positive whole number of entries, found ${describe(max)}`)
  const seconds = (field: 'minTtl' | 'maxTtl' | 'negativeTtl' | 'defaultTtl'): number => {
    const value = options[field] ?? DEFAULT_DNS_CACHE_OPTIONS[field]
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) at.fail(field, `must be a non-negative number of seconds, found ${describe(value)}`)
    return value
  }
  const minTtl = seconds('minTtl')
  const maxTtl = seconds('maxTtl')
  const negativeTtl = seconds('negativeTtl')
  const defaultTtl = seconds('defaultTtl')
  if (minTtl > maxTtl) at.fail('minTtl', `must not exceed maxTtl (${minTtl} > ${maxTtl})`)
  const useDnsTtl = options.useDnsTtl ?? DEFAULT_DNS_CACHE_OPTIONS.useDnsTtl
  if (typeof useDnsTtl !== 'boolean') at.fail('useDnsTtl', `must be true or false, found ${describe(useDnsTtl)}`)
  const clock = options.clock ?? null
  if (clock !== null && (typeof clock !== 'object' || typeof (clock as { now?: unknown }).now !== 'function')) {
    at.fail('clock', `must be an object with a now() method returning milliseconds, found ${describe(clock)}`)
  }
  return { max, minTtl, maxTtl, negativeTtl, defaultTtl, useDnsTtl, clock: clock as { now(): number } | null }
}

