// The windows a quota counts in, as the counter keys of the store: one key per calendar period
// (aligned to a time zone), a ring of slots for a rolling window, one key for an absolute one.

/** A quota's window, parsed. */
export type QuotaWindow =
  | { readonly kind: 'calendar'; readonly unit: 'day' | 'week' | 'month'; readonly timeZone: string }
  | { readonly kind: 'rolling'; readonly ms: number }
  | { readonly kind: 'absolute'; readonly from: number; readonly until: number }

/** The counters that make up a window at some moment; `current` takes new bytes. */
export interface WindowSlots {
  /** Keys (relative to the quota's own key) of every counter whose sum is the usage. */
  readonly keys: readonly string[]
  /** The key new bytes are added to (one of `keys`). */
  readonly current: string
  /** When the counters may be forgotten by the store (ms since the epoch). */
  readonly expiresAt: number
}

/** Slots a rolling window is cut into: its usage is exact to 1/ROLLING_SLOTS of its length. */
export const ROLLING_SLOTS = 24
const DAY = 86_400_000

/**
 * The counters of `window` at `now` (ms since the epoch), or null when an absolute window is not
 * open (before `from`, from `until` on): the quota does not apply then.
 */
export function windowSlots(window: QuotaWindow, now: number): WindowSlots | null {
  if (window.kind === 'absolute') {
    if (now < window.from || now >= window.until) return null
    const key = `a${window.from}-${window.until}`
    return { keys: [key], current: key, expiresAt: window.until + DAY }
  }
  if (window.kind === 'rolling') {
    const slot = Math.max(1000, Math.floor(window.ms / ROLLING_SLOTS))
    const index = Math.floor(now / slot)
    const keys: string[] = []
    for (let i = index - ROLLING_SLOTS + 1; i <= index; i++) keys.push(`r${slot}:${i}`)
    return { keys, current: keys[keys.length - 1]!, expiresAt: (index + 1) * slot + window.ms }
  }
  const key = calendarKey(window.unit, window.timeZone, now)
  // Only for forgetting: a period ends within this, in any zone.
  const span = window.unit === 'day' ? 2 * DAY : window.unit === 'week' ? 8 * DAY : 32 * DAY
  return { keys: [key], current: key, expiresAt: now + span }
}

const formatters = new Map<string, Intl.DateTimeFormat>()

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone)
  if (formatter === undefined) {
    formatter = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: 'numeric', day: 'numeric', weekday: 'short' })
    formatters.set(timeZone, formatter)
  }
  return formatter
}

/** True if `timeZone` is an IANA zone (or UTC) this Node knows. */
export function isTimeZone(timeZone: string): boolean {
  try {
    formatterFor(timeZone)
    return true
  } catch {
    return false
  }
}

const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun']

/** `d2026-12-03`, `w2026-11-30` (the Monday the ISO week starts on), `m2026-12`: the period `now` is in, in `timeZone`. */
export function calendarKey(unit: 'day' | 'week' | 'month', timeZone: string, now: number): string {
  const parts = formatterFor(timeZone).formatToParts(now)
  const get = (type: string): string => parts.find((part) => part.type === type)?.value ?? ''
  const year = Number(get('year'))
  const month = Number(get('month'))
  const day = Number(get('day'))
  if (unit === 'month') return `m${year}-${pad(month)}`
  if (unit === 'day') return `d${year}-${pad(month)}-${pad(day)}`
  // The date arithmetic is on the zone's calendar date, so UTC does it without daylight saving.
  const monday = new Date(Date.UTC(year, month - 1, day - WEEKDAYS.indexOf(get('weekday'))))
  return `w${monday.getUTCFullYear()}-${pad(monday.getUTCMonth() + 1)}-${pad(monday.getUTCDate())}`
}

function pad(n: number): string {
  return n < 10 ? `0${n}` : String(n)
}
