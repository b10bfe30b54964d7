import { createHash } from 'node:crypto'
import type { OptionPath } from 'socksmith'
import { parseDuration } from 'socksmith/config'
import { checkKeys, describe, didYouMean, isPlainObject } from 'socksmith/plugin-kit'
import { compileMatcher, type Matcher, type MatchOptions } from 'socksmith/plugins/rules'
import { parseByteRate, parseByteSize } from './units.js'
import { isTimeZone, type QuotaWindow } from './windows.js'

/**
 * Who shares a limit: each `user` (connections without a user share the empty user's), each
 * `client` (address, grouped by the server's `clientPrefix`), each `user+client` pair, each
 * `listener` (the proxy address the client connected to), each `connection` alone, or everybody
 * (`global`). Always written out: a limit is never silently per rule or per connection.
 */
export type LimitScope = 'user' | 'client' | 'user+client' | 'listener' | 'connection' | 'global'

/** A size as written: bytes, or a string such as `"64KiB"`, `"10GB"`. */
export type ByteSizeOption = number | string
/** A rate as written: bytes per second, or a string such as `"1MiB"`, `"512KiB/s"`, `"8mbit"`. */
export type ByteRateOption = number | string

/** One limit as written in the config: conditions, who shares it, and the limits themselves. */
export interface LimitOptions {
  /** Names the limit in logs, metrics and the store (so renaming it starts its usage anew). Default: derived from `match` and `per`. */
  name?: string
  /** The rules plugin's conditions (`from`, `to`, `domains`, `ports`, `users`, `commands`), and `listener` (a port, or `host:port`, or a list). Default: every connection. */
  match?: MatchOptions & { listener?: number | string | (number | string)[] }
  /** Who shares it (required). */
  per: LimitScope
  /** Live connections at once. */
  maxConnections?: number
  /** New connections per second; with `burst`, how many may come at once (default one second's worth). */
  connectionRate?: number | { rate: number; burst?: number }
  /** Bytes per second each way (`up`: from the client, `down`: to it), token buckets with `burst` (default one second of the rate). */
  bandwidth?: { up?: ByteRateOption; down?: ByteRateOption; burst?: ByteSizeOption }
  /** Payload bytes per window. */
  quota?: {
    bytes: ByteSizeOption
    /** Which bytes count: `up`, `down` or `total` (default). */
    direction?: 'up' | 'down' | 'total'
    /** `day`, `week` (from Monday) or `month` in the plugin's `timeZone`; a rolling `"24h"`, `"7d"`; or `{ from, until }` (ISO dates). */
    window: 'day' | 'week' | 'month' | string | { from: string; until: string }
    /** `refuse` (default): new requests get REP 02 once it is used up; `cut`: live connections are closed too. */
    action?: 'refuse' | 'cut'
  }
  /** Client addresses one subject may be connected from at once (a device limit). */
  maxClientIps?: number
}

/** Options of the limits plugin. */
export interface LimitsOptions {
  /** Checked in order; every limit that matches a connection applies to it. */
  limits: LimitOptions[]
  /** The time zone of `day`/`week`/`month` quota windows (IANA name). Default `UTC`. */
  timeZone?: string
  /** When the store cannot answer: `open` (default) lets the connection through, `closed` refuses it. Either way a warning is logged and counted. */
  failMode?: 'open' | 'closed'
  /** How often quota usage goes to the store and comes back from it (ms or `"1s"`). It bounds the overshoot between processes: one interval of traffic. Default 1 s. */
  flushInterval?: number | string
  /** How long a connection's lease on a `maxConnections` / `maxClientIps` slot lives without a heartbeat (ms or `"15s"`): what a node that dies holds on to. Default 15 s, renewed every third of it. */
  leaseTtl?: number | string
}

/** A quota, parsed. */
export interface CompiledQuota {
  readonly bytes: number
  readonly direction: 'up' | 'down' | 'total'
  readonly window: QuotaWindow
  /** The window as its store keys name it, so a changed window starts a new count. */
  readonly windowId: string
  readonly action: 'refuse' | 'cut'
}

/** One limit, parsed and compiled. */
export interface CompiledLimit {
  /** Stable across reloads while `name` (or `match` and `per`) stay: the key of its state. */
  readonly id: string
  /** How logs and the refusal metric name it: `name`, or `limits[i]`. */
  readonly label: string
  /** `id` with the direction, for the runtime's bucket maps (made once here, not per connection). */
  readonly upKey: string
  readonly downKey: string
  readonly match: Matcher | null
  /** Listener conditions: ports, and `host:port` strings. */
  readonly listener: { readonly ports: ReadonlySet<number>; readonly endpoints: ReadonlySet<string> } | null
  readonly per: LimitScope
  readonly maxConnections: number | null
  readonly connectionRate: { readonly rate: number; readonly burst: number } | null
  readonly bandwidth: { readonly up: number | null; readonly down: number | null; readonly burst: number | null } | null
  readonly quota: CompiledQuota | null
  readonly maxClientIps: number | null
}

/** The options after parsing: what setup gets. */
export interface ParsedLimitsOptions {
  readonly limits: readonly CompiledLimit[]
  readonly timeZone: string
  readonly failMode: 'open' | 'closed'
  readonly flushInterval: number
  readonly leaseTtl: number
}

const TOP_KEYS = ['limits', 'timeZone', 'failMode', 'flushInterval', 'leaseTtl']
const LIMIT_KEYS = ['name', 'match', 'per', 'maxConnections', 'connectionRate', 'bandwidth', 'quota', 'maxClientIps']
const ENFORCED = ['maxConnections', 'connectionRate', 'bandwidth', 'quota', 'maxClientIps']
const SCOPES: readonly LimitScope[] = ['user', 'client', 'user+client', 'listener', 'connection', 'global']
const ROLLING = /^(\d+)\s*(m|h|d)$/
const ROLLING_MS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 }

/** Validates and compiles the plugin's options, reporting every problem in one pass. */
export function parseLimitsOptions(raw: unknown, at: OptionPath): ParsedLimitsOptions {
  if (!isPlainObject(raw)) at.fail('', `expected { limits: [...], timeZone?, failMode?, flushInterval?, leaseTtl? }, found ${describe(raw)}`)
  attempt(at, () => checkKeys(raw, TOP_KEYS, at))
  const timeZone = raw.timeZone === undefined ? 'UTC' : attempt(at, () => parseTimeZone(raw.timeZone, at))
  const failMode = raw.failMode === undefined ? 'open' : attempt(at, () => oneOf(raw.failMode, ['open', 'closed'] as const, at, 'failMode'))
  const flushInterval = raw.flushInterval === undefined ? 1000 : attempt(at, () => duration(raw.flushInterval, at, 'flushInterval', 10))
  const leaseTtl = raw.leaseTtl === undefined ? 15_000 : attempt(at, () => duration(raw.leaseTtl, at, 'leaseTtl', 300))
  if (!Array.isArray(raw.limits)) at.fail('limits', `expected a list of limits, found ${describe(raw.limits)}`)
  const zone = timeZone ?? 'UTC'
  const limits = raw.limits.map((entry: unknown, i: number) => attempt(at, () => parseLimit(entry, i, zone, at))).filter((limit): limit is CompiledLimit => limit !== undefined)
  // Two limits with the same identity would share their state: make each unique, in order.
  const seen = new Map<string, number>()
  const unique = limits.map((limit) => {
    const n = seen.get(limit.id) ?? 0
    seen.set(limit.id, n + 1)
    if (n === 0) return limit
    const id = `${limit.id}#${n}`
    return { ...limit, id, upKey: `${id}\nup`, downKey: `${id}\ndown` }
  })
  return { limits: unique, timeZone: zone, failMode: failMode ?? 'open', flushInterval: flushInterval ?? 1000, leaseTtl: leaseTtl ?? 15_000 }
}

function parseLimit(entry: unknown, i: number, timeZone: string, at: OptionPath): CompiledLimit {
  const field = `limits[${i}]`
  if (!isPlainObject(entry)) at.fail(field, `expected an object { per, match?, maxConnections?, connectionRate?, bandwidth?, quota?, maxClientIps? }, found ${describe(entry)}`)
  checkKeys(entry, LIMIT_KEYS, at, { path: field })
  if (entry.per === undefined) at.fail(`${field}.per`, `is required: who shares this limit (${SCOPES.join(', ')})`)
  const per = oneOf(entry.per, SCOPES, at, `${field}.per`)
  if (!ENFORCED.some((key) => entry[key] !== undefined)) at.fail(field, `limits nothing: give at least one of ${ENFORCED.join(', ')}`)
  if (entry.name !== undefined && (typeof entry.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(entry.name))) {
    at.fail(`${field}.name`, `expected a short name (letters, digits, _.-), found ${describe(entry.name)}`)
  }
  let match: Matcher | null = null
  let listener: CompiledLimit['listener'] = null
  if (entry.match !== undefined) {
    match = compileMatcher(entry.match, at, `${field}.match`, ['listener'])
    const rawListener = (entry.match as Record<string, unknown>)['listener']
    if (rawListener !== undefined) listener = parseListener(rawListener, at, `${field}.match.listener`)
    if (match.fields.length === 0) match = null
  }
  const name = entry.name as string | undefined
  const id = name ?? `${per}-${createHash('sha256').update(JSON.stringify(entry.match ?? {})).digest('hex').slice(0, 10)}`
  return {
    id,
    label: name ?? field,
    upKey: `${id}\nup`,
    downKey: `${id}\ndown`,
    match,
    listener,
    per,
    maxConnections: entry.maxConnections === undefined ? null : count(entry.maxConnections, at, `${field}.maxConnections`),
    connectionRate: entry.connectionRate === undefined ? null : parseConnectionRate(entry.connectionRate, at, `${field}.connectionRate`),
    bandwidth: entry.bandwidth === undefined ? null : parseBandwidth(entry.bandwidth, at, `${field}.bandwidth`),
    quota: entry.quota === undefined ? null : parseQuota(entry.quota, timeZone, at, `${field}.quota`),
    maxClientIps: entry.maxClientIps === undefined ? null : count(entry.maxClientIps, at, `${field}.maxClientIps`),
  }
}

function parseListener(raw: unknown, at: OptionPath, field: string): NonNullable<CompiledLimit['listener']> {
  const ports = new Set<number>()
  const endpoints = new Set<string>()
  const list = Array.isArray(raw) ? raw : [raw]
  list.forEach((item: unknown, i) => {
    const path = Array.isArray(raw) ? `${field}[${i}]` : field
    if (typeof item === 'number' && Number.isInteger(item) && item > 0 && item < 65536) ports.add(item)
    else if (typeof item === 'string' && /^\d+$/.test(item) && Number(item) > 0 && Number(item) < 65536) ports.add(Number(item))
    else if (typeof item === 'string' && /^(\[[^\]]+\]|[^:]+):\d+$/.test(item)) endpoints.add(item.replace(/^\[(.*)\]/, '$1'))
    else at.fail(path, `expected a port or "host:port", found ${describe(item)}`)
  })
  return { ports, endpoints }
}

function parseConnectionRate(raw: unknown, at: OptionPath, field: string): { rate: number; burst: number } {
  if (typeof raw === 'number') return { rate: positive(raw, at, field), burst: Math.max(1, raw) }
  if (!isPlainObject(raw)) at.fail(field, `expected connections per second, or { rate, burst? }, found ${describe(raw)}`)
  checkKeys(raw, ['rate', 'burst'], at, { path: field })
  const rate = positive(raw.rate, at, `${field}.rate`)
  const burst = raw.burst === undefined ? Math.max(1, rate) : positive(raw.burst, at, `${field}.burst`)
  return { rate, burst: Math.max(1, burst) }
}

function parseBandwidth(raw: unknown, at: OptionPath, field: string): NonNullable<CompiledLimit['bandwidth']> {
  if (!isPlainObject(raw)) at.fail(field, `expected { up?, down?, burst? } in bytes per second ("8mbit", "1MiB"), found ${describe(raw)}`)
  checkKeys(raw, ['up', 'down', 'burst'], at, { path: field })
  if (raw.up === undefined && raw.down === undefined) at.fail(field, 'limits nothing: give up, down or both')
  const rate = (key: 'up' | 'down'): number | null => {
    if (raw[key] === undefined) return null
    const n = parseByteRate(raw[key])
    if (n === null) at.fail(`${field}.${key}`, `expected bytes per second (a number, "512KiB", "8mbit", "100Mbps"), found ${describe(raw[key])}`)
    return n
  }
  const up = rate('up')
  const down = rate('down')
  let burst: number | null = null
  if (raw.burst !== undefined) {
    burst = parseByteSize(raw.burst)
    if (burst === null) at.fail(`${field}.burst`, `expected a size in bytes (a number, "32KiB"), found ${describe(raw.burst)}`)
  }
  return { up, down, burst }
}

function parseQuota(raw: unknown, timeZone: string, at: OptionPath, field: string): CompiledQuota {
  if (!isPlainObject(raw)) at.fail(field, `expected { bytes, window, direction?, action? }, found ${describe(raw)}`)
  checkKeys(raw, ['bytes', 'window', 'direction', 'action'], at, { path: field })
  const bytes = parseByteSize(raw.bytes)
  if (bytes === null) at.fail(`${field}.bytes`, `expected a size in bytes (a number, "10GiB"), found ${describe(raw.bytes)}`)
  const direction = raw.direction === undefined ? 'total' : oneOf(raw.direction, ['up', 'down', 'total'] as const, at, `${field}.direction`)
  const action = raw.action === undefined ? 'refuse' : oneOf(raw.action, ['refuse', 'cut'] as const, at, `${field}.action`)
  if (raw.window === undefined) at.fail(`${field}.window`, 'is required: day, week, month, a rolling "24h", or { from, until }')
  const window = parseWindow(raw.window, timeZone, at, `${field}.window`)
  const windowId = window.kind === 'calendar' ? `${window.unit}@${window.timeZone}` : window.kind === 'rolling' ? `rolling${window.ms}` : `abs${window.from}-${window.until}`
  return { bytes, direction, window, windowId, action }
}

function parseWindow(raw: unknown, timeZone: string, at: OptionPath, field: string): QuotaWindow {
  if (raw === 'day' || raw === 'week' || raw === 'month') return { kind: 'calendar', unit: raw, timeZone }
  if (typeof raw === 'string') {
    const match = ROLLING.exec(raw.trim())
    if (match !== null && Number(match[1]) > 0) return { kind: 'rolling', ms: Number(match[1]) * (ROLLING_MS[match[2]!] as number) }
    at.fail(field, `expected day, week, month, a rolling window such as "24h" or "7d", or { from, until }, found ${describe(raw)}${hintFor(raw, ['day', 'week', 'month'])}`)
  }
  if (!isPlainObject(raw)) at.fail(field, `expected day, week, month, a rolling window such as "24h", or { from, until }, found ${describe(raw)}`)
  checkKeys(raw, ['from', 'until'], at, { path: field })
  const date = (key: 'from' | 'until'): number => {
    const value = raw[key]
    const ms = typeof value === 'string' ? Date.parse(value) : value instanceof Date ? value.getTime() : Number.NaN
    if (!Number.isFinite(ms)) at.fail(`${field}.${key}`, `expected a date ("2026-12-01" or an ISO date and time), found ${describe(value)}`)
    return ms
  }
  const from = date('from')
  const until = date('until')
  if (until <= from) at.fail(`${field}.until`, 'must be after from')
  return { kind: 'absolute', from, until }
}

function parseTimeZone(raw: unknown, at: OptionPath): string {
  if (typeof raw !== 'string' || !isTimeZone(raw)) at.fail('timeZone', `expected an IANA time zone such as "UTC" or "Europe/Berlin", found ${describe(raw)}`)
  return raw
}

function duration(raw: unknown, at: OptionPath, field: string, min: number): number {
  const ms = parseDuration(raw)
  if (ms === null || ms < min) at.fail(field, `expected a duration of at least ${min} ms (a number of ms, or "1s", "500ms"), found ${describe(raw)}`)
  return ms
}

function count(raw: unknown, at: OptionPath, field: string): number {
  if (typeof raw !== 'number' || !Number.isSafeInteger(raw) || raw < 0) at.fail(field, `expected a whole number (0 or more), found ${describe(raw)}`)
  return raw
}

function positive(raw: unknown, at: OptionPath, field: string): number {
  if (typeof raw !== 'number' || !Number.isFinite(raw) || raw <= 0) at.fail(field, `expected a positive number, found ${describe(raw)}`)
  return raw
}

function oneOf<T extends string>(raw: unknown, values: readonly T[], at: OptionPath, field: string): T {
  if (typeof raw === 'string' && (values as readonly string[]).includes(raw)) return raw as T
  at.fail(field, `expected one of ${values.join(', ')}, found ${describe(raw)}${typeof raw === 'string' ? hintFor(raw, values) : ''}`)
}

function hintFor(word: string, candidates: readonly string[]): string {
  const suggestion = didYouMean(word, candidates)
  return suggestion === null ? '' : ` (did you mean ${JSON.stringify(suggestion)}?)`
}

/** `at.collect(check)`, or just `check()` with a hand-made OptionPath that cannot collect. */
function attempt<T>(at: OptionPath, check: () => T): T | undefined {
  return at.collect === undefined ? check() : at.collect(check)
}
