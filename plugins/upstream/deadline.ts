import { SocksError } from 'socksmith'

/**
 * One AbortSignal for a dial: aborts when the connection's own signal does (the client left) or
 * when the current step's time is up. The dial has a budget (the connect timeout); each step is
 * armed with its own bound inside it and its own reason, because who is to blame depends on the
 * step: a hop that does not answer its handshake in time is that hop's failure (`step`), while the
 * last hop's wait for the destination is the destination's (`final`). `restart` sets a bound
 * outside the budget (BIND: the accept timeout).
 */
export class Deadline {
  readonly #controller = new AbortController()
  readonly #parent: AbortSignal
  /** performance.now() at which the budget runs out; Infinity without one. */
  readonly #end: number
  #timer: NodeJS.Timeout | null = null

  /** `budget` in ms; 0 = none. No timer runs until a step is armed. */
  constructor(parent: AbortSignal, budget: number) {
    this.#parent = parent
    this.#end = budget > 0 ? performance.now() + budget : Infinity
    if (parent.aborted) this.#controller.abort(parent.reason)
    else parent.addEventListener('abort', this.#onParentAbort, { once: true })
  }

  get signal(): AbortSignal {
    return this.#controller.signal
  }

  /** Milliseconds left of the budget (Infinity without one). */
  get remaining(): number {
    return this.#end - performance.now()
  }

  /** Arms the timer for one step: `ms`, or what is left of the budget if that is less. */
  step(ms: number, reason: () => SocksError): void {
    this.#arm(Math.min(ms, this.remaining), reason)
  }

  /** Arms the timer for the rest of the budget (none without a budget). */
  final(reason: () => SocksError): void {
    if (this.#end === Infinity) this.restart(0, reason)
    else this.#arm(this.remaining, reason)
  }

  /** A bound that is used up fires at once (setTimeout's 1 ms), never "no deadline". */
  #arm(ms: number, reason: () => SocksError): void {
    this.restart(Math.max(1, ms), reason)
  }

  /** True when the parent signal aborted: nobody is waiting for the result any more. */
  get abandoned(): boolean {
    return this.#parent.aborted
  }

  /** Starts the clock again with `ms` (0 = no deadline). */
  restart(ms: number, reason: () => SocksError): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = ms > 0 && !this.#controller.signal.aborted ? setTimeout(() => this.#controller.abort(reason()), ms) : null
  }

  /** Stops the clock and lets go of the parent signal. */
  clear(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#parent.removeEventListener('abort', this.#onParentAbort)
  }

  readonly #onParentAbort = (): void => {
    this.#controller.abort(this.#parent.reason)
  }
}
