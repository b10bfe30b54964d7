/**
 * Deadlines without a Node timer each.
 *
 * Every connection has a deadline while it shakes hands, another while it connects, and an idle
 * check while it relays. One `setTimeout`/`clearTimeout` pair (or a socket's `setTimeout`) per
 * deadline cost a short connection about a fifth of its CPU (measured with callgrind, bench/README.md
 * "Connection setup"): Node allocates a Timeout, keeps async-hooks ids for it, and switches the
 * loop's timer handle on and off through native calls as the count of pending timers crosses zero.
 *
 * Here the object with the deadline is itself the list node (no allocation to arm one): deadlines
 * of one duration sit in one list in the order they were armed, which is also the order they
 * expire in, so arming is an append, disarming an unlink, and each list needs only one Node timer,
 * set for its head. A disarmed head leaves that timer early, not wrong: when it fires, the list
 * fires what is due and sets the timer again for the new head. Times are `performance.now()`:
 * a wall-clock step does not fire or delay anything.
 */

/** What can have a deadline: the fields are this module's, `onDeadline` runs when it passes. */
export interface DeadlineEntry {
  /** @internal */ deadlineAt: number
  /** @internal */ deadlineList: DeadlineList | null
  /** @internal */ deadlinePrev: DeadlineEntry | null
  /** @internal */ deadlineNext: DeadlineEntry | null
  /** Runs once when the deadline passes (the entry is disarmed first; it may arm itself again). */
  onDeadline(): void
}

/** The fields a DeadlineEntry starts with (spread or assign them in the constructor, so the shape stays one). */
export const NO_DEADLINE = { deadlineAt: 0, deadlineList: null, deadlinePrev: null, deadlineNext: null } as const

/** Node's timers may run up to a millisecond before performance.now() reaches the time asked for. */
const EARLY_MS = 1

/** The armed deadlines of one duration, earliest first. */
export class DeadlineList {
  readonly ms: number
  #head: DeadlineEntry | null = null
  #tail: DeadlineEntry | null = null
  #timer: NodeJS.Timeout | null = null
  /** When the timer fires (performance.now() time), if it is set. */
  #timerAt = 0
  #size = 0
  #firing = false

  constructor(ms: number) {
    this.ms = ms
  }

  /** Deadlines armed in this list. */
  get size(): number {
    return this.#size
  }

  append(entry: DeadlineEntry, now: number): void {
    entry.deadlineAt = now + this.ms
    entry.deadlineList = this
    entry.deadlinePrev = this.#tail
    entry.deadlineNext = null
    if (this.#tail === null) this.#head = entry
    else this.#tail.deadlineNext = entry
    this.#tail = entry
    this.#size++
    // While firing, the timer is set for the head once the due entries are done.
    if (this.#timer === null && !this.#firing) this.#schedule(this.#head!.deadlineAt, now)
  }

  remove(entry: DeadlineEntry): void {
    const prev = entry.deadlinePrev
    const next = entry.deadlineNext
    if (prev === null) this.#head = next
    else prev.deadlineNext = next
    if (next === null) this.#tail = prev
    else next.deadlinePrev = prev
    entry.deadlineList = null
    entry.deadlinePrev = null
    entry.deadlineNext = null
    this.#size--
    // The timer stays: it fires early at worst, and an empty list then lets it go.
  }

  #schedule(at: number, now: number): void {
    this.#timerAt = at
    // Unref'd: a deadline never keeps the process alive (its socket does, while it is open).
    this.#timer = setTimeout(DeadlineList.#onTimer, Math.max(1, Math.ceil(at - now)), this)
    this.#timer.unref()
  }

  static readonly #onTimer = (list: DeadlineList): void => list.#fire()

  #fire(): void {
    this.#timer = null
    this.#firing = true
    const now = performance.now()
    try {
      for (let entry = this.#head; entry !== null && entry.deadlineAt <= now + EARLY_MS; entry = this.#head) {
        this.remove(entry)
        entry.onDeadline()
      }
    } finally {
      this.#firing = false
      const head = this.#head
      if (head !== null && this.#timer === null) this.#schedule(head.deadlineAt, performance.now())
    }
  }

  /** @internal for tests: when the list's timer is set to fire, or null. */
  get timerAt(): number | null {
    return this.#timer === null ? null : this.#timerAt
  }
}

const lists = new Map<number, DeadlineList>()

/**
 * Arms `entry` to run `onDeadline()` in `ms` milliseconds (an armed entry is moved); `ms` <= 0
 * disarms it. Entries armed with the same `ms` share one list and one Node timer.
 */
export function armDeadline(entry: DeadlineEntry, ms: number): void {
  if (entry.deadlineList !== null) entry.deadlineList.remove(entry)
  if (!(ms > 0)) return
  let list = lists.get(ms)
  if (list === undefined) lists.set(ms, (list = new DeadlineList(ms)))
  list.append(entry, performance.now())
}

/** Disarms `entry` if it is armed. */
export function disarmDeadline(entry: DeadlineEntry): void {
  if (entry.deadlineList !== null) entry.deadlineList.remove(entry)
}

/** True while `entry` is armed. */
export function isArmed(entry: DeadlineEntry): boolean {
  return entry.deadlineList !== null
}
