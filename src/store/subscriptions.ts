/** One subscribe() of a channel: its listener, and what it is told when messages may have been missed. */
interface Subscription {
  readonly listener: (message: string) => void
  readonly onGap: (() => void) | null
  /** Its subscribe() resolved: a gap after that is one it must hear of. */
  inPlace: boolean
}

interface Channel {
  readonly subscriptions: Set<Subscription>
  readonly subscribed: Promise<unknown>
  /** The backend confirmed the subscription (and had not lost it since, as far as this set knows). */
  confirmed: boolean
}

/**
 * The listeners of a store's channels, and the one subscription per channel the backend needs for
 * them (a SUBSCRIBE to Redis, a request to the --workers primary): the first listener of a channel
 * subscribes, the last one to go unsubscribes, and every subscribe() of a channel resolves only
 * once the backend confirmed it. A backend that can lose its subscriptions (Redis, when its
 * connection drops) subscribes again to `confirmed()` and then reports the gap with `gap()`.
 */
export class Subscriptions {
  readonly #channels = new Map<string, Channel>()
  readonly #subscribe: (channel: string) => Promise<unknown>
  readonly #unsubscribe: (channel: string) => Promise<unknown>

  constructor(subscribe: (channel: string) => Promise<unknown>, unsubscribe: (channel: string) => Promise<unknown>) {
    this.#subscribe = subscribe
    this.#unsubscribe = unsubscribe
  }

  /**
   * Adds `listener` to `channel`; resolves with its unsubscribe function once the backend
   * subscribed. `onGap` is called by gap() for this subscription, once it is in place.
   */
  async add(channel: string, listener: (message: string) => void, onGap: (() => void) | null = null): Promise<() => Promise<void>> {
    let entry = this.#channels.get(channel)
    if (entry === undefined) {
      const created: Channel = { subscriptions: new Set(), subscribed: this.#subscribe(channel), confirmed: false }
      created.subscribed.then(
        () => {
          created.confirmed = true
        },
        // A failed subscribe leaves nothing behind: the next add() asks the backend again.
        () => {
          if (this.#channels.get(channel) === created) this.#channels.delete(channel)
        },
      )
      this.#channels.set(channel, (entry = created))
    }
    const { subscriptions, subscribed } = entry
    const channelEntry = entry
    // Each add() is its own subscription, even for a listener that is there already.
    const subscription: Subscription = { listener, onGap, inPlace: false }
    subscriptions.add(subscription)
    try {
      await subscribed
    } catch (err) {
      subscriptions.delete(subscription)
      throw err
    }
    subscription.inPlace = true
    return async () => {
      if (!subscriptions.delete(subscription)) return
      if (subscriptions.size > 0 || this.#channels.get(channel) !== channelEntry) return
      this.#channels.delete(channel)
      await this.#unsubscribe(channel)
    }
  }

  /** Calls every listener of `channel` with `message`. */
  deliver(channel: string, message: string): void {
    const entry = this.#channels.get(channel)
    if (entry === undefined) return
    // A copy: a listener may unsubscribe (itself or others) while the message is delivered.
    for (const subscription of [...entry.subscriptions]) subscription.listener(message)
  }

  /** True when `channel` has a listener. */
  has(channel: string): boolean {
    return this.#channels.has(channel)
  }

  /**
   * The channels whose subscription the backend had confirmed: what it must subscribe to again
   * after it lost its subscriptions. Those still being subscribed send their own request.
   */
  confirmed(): string[] {
    const channels: string[] = []
    for (const [channel, entry] of this.#channels) if (entry.confirmed) channels.push(channel)
    return channels
  }

  /**
   * The backend lost `channel`'s subscription and has it again: every subscription of it that was
   * in place hears that messages may have been missed.
   */
  gap(channel: string): void {
    const entry = this.#channels.get(channel)
    if (entry === undefined) return
    for (const subscription of [...entry.subscriptions]) if (subscription.inPlace) subscription.onGap?.()
  }

  clear(): void {
    this.#channels.clear()
  }
}

/** A listener that never throws into the backend's event loop: `onError` gets what it threw. */
export function guardListener<A extends unknown[]>(channel: string, listener: (...args: A) => void, onError: (err: unknown, channel: string) => void): (...args: A) => void {
  return (...args) => {
    try {
      listener(...args)
    } catch (err) {
      onError(err, channel)
    }
  }
}

/** The default of `onListenerError`: a process warning naming the channel. */
export function warnListenerError(err: unknown, channel: string): void {
  process.emitWarning(`socksmith store: a listener of channel ${JSON.stringify(channel)} threw: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
}
