import { SocksError } from 'socksmith'

/**
 * One AbortSignal for a dial: aborts when the connection's own signal does (the client left) or
 * when the time is up. `restart` moves the deadline (BIND: connect timeout, then accept timeout).
 */
export class Deadline {
  readonly #controller = new AbortController()
  readonly #parent: AbortSignal
  #timer: NodeJS.Timeout | null = null

  constructor(parent: AbortSignal, ms: number, reason: () => SocksError) {
    this.#parent = parent
    if (parent.aborted) this.#controller.abort(parent.reason)
    else parent.addEventListener('abort', this.#onParentAbort, { once: true })
    this.restart(ms, reason)
  }

  get signal(): AbortSignal {
    return this.#controller.signal
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
