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

/**
 * What can have a deadline: a subclass is its own list node (these fields are this module's, set
 * before the subclass's own, so every instance keeps one shape); `onDeadline` runs when it passes.
 */
export abstract class DeadlineEntry {
  /** @internal */ deadlineAt = 0
  /** @internal */ deadlineList: DeadlineList | null = null
  /** @internal */ deadlinePrev: DeadlineEntry | null = null
  /** @internal */ deadlineNext: DeadlineEntry | null = null
  /** Runs once when the deadline passes (the entry is disarmed first; it may arm itself again). */
  abstract onDeadline(): void
}

/** Node's timers may run up to a millisecond before performance.now() reaches the time asked for. */
const EARLY_MS = 1

/** The armed deadlines of one duration, earliest first. */
export class DeadlineList {
  readonly ms: number
  #head: DeadlineEntry | null = null
  #tail: DeadlineEntry | null = null
  #timer: NodeJS.Timeout | null = null
  #firing = false

  constructor(ms: number) {
    this.ms = ms
  }

  append(entry: DeadlineEntry, now: number): void {
    entry.deadlineAt = now + this.ms
    entry.deadlineList = this
    entry.deadlinePrev = this.#tail
    entry.deadlineNext = null
    if (this.#tail === null) this.#head = entry
    else this.#tail.deadlineNext = entry
    this.#tail = entry
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
    // The timer stays: it fires early at worst, and an empty list then lets it go.
  }

  #schedule(at: number, now: number): void {
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
