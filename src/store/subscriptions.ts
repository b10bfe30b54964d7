/**
 * The listeners of a store's channels, and the one subscription per channel the backend needs for
 * them (a SUBSCRIBE to Redis, a request to the --workers primary): the first listener of a channel
 * subscribes, the last one to go unsubscribes, and every subscribe() of a channel resolves only
 * once the backend confirmed it.
 */
export class Subscriptions {
  readonly #channels = new Map<string, { readonly listeners: Set<(message: string) => void>; readonly subscribed: Promise<unknown> }>()
  readonly #subscribe: (channel: string) => Promise<unknown>
  readonly #unsubscribe: (channel: string) => Promise<unknown>

  constructor(subscribe: (channel: string) => Promise<unknown>, unsubscribe: (channel: string) => Promise<unknown>) {
    this.#subscribe = subscribe
    this.#unsubscribe = unsubscribe
  }

  /** Adds `listener` to `channel`; resolves with its unsubscribe function once the backend subscribed. */
  async add(channel: string, listener: (message: string) => void): Promise<() => Promise<void>> {
    let entry = this.#channels.get(channel)
    if (entry === undefined) {
      const created = { listeners: new Set<(message: string) => void>(), subscribed: this.#subscribe(channel) }
      // A failed subscribe leaves nothing behind: the next add() asks the backend again.
      created.subscribed.catch(() => {
        if (this.#channels.get(channel) === created) this.#channels.delete(channel)
      })
      this.#channels.set(channel, (entry = created))
    }
    const { listeners, subscribed } = entry
    const channelEntry = entry
    // Each add() is its own subscription, even for a listener that is there already.
    const subscription = (message: string): void => listener(message)
    listeners.add(subscription)
    try {
      await subscribed
    } catch (err) {
      listeners.delete(subscription)
      throw err
    }
    return async () => {
      if (!listeners.delete(subscription)) return
      if (listeners.size > 0 || this.#channels.get(channel) !== channelEntry) return
      this.#channels.delete(channel)
      await this.#unsubscribe(channel)
    }
  }

  /** Calls every listener of `channel` with `message`. */
  deliver(channel: string, message: string): void {
    const entry = this.#channels.get(channel)
    if (entry === undefined) return
    // A copy: a listener may unsubscribe (itself or others) while the message is delivered.
    for (const listener of [...entry.listeners]) listener(message)
  }

  /** True when `channel` has a listener. */
  has(channel: string): boolean {
    return this.#channels.has(channel)
  }

  clear(): void {
    this.#channels.clear()
  }
}

/** A listener that never throws into the backend's event loop: `onError` gets what it threw. */
export function guardListener(channel: string, listener: (message: string) => void, onError: (err: unknown, channel: string) => void): (message: string) => void {
  return (message) => {
    try {
      listener(message)
    } catch (err) {
      onError(err, channel)
    }
  }
}

/** The default of `onListenerError`: a process warning naming the channel. */
export function warnListenerError(err: unknown, channel: string): void {
  process.emitWarning(`socksmith store: a listener of channel ${JSON.stringify(channel)} threw: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
}
