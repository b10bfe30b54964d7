/**
 * Fair use of the system resolver's threads.
 *
 * `dns.lookup` (getaddrinfo) runs on libuv's thread pool, 4 threads unless UV_THREADPOOL_SIZE says
 * otherwise, and a lookup cannot be cancelled: against a nameserver that never answers, each one
 * holds its thread for the resolver's whole retry schedule (about 10 s with glibc's defaults) even
 * after its caller gave up. Without a bound, a handful of lookups from one client — 24 datagrams
 * to silent names were enough — take every thread, and everyone else's CONNECT, even to a name in
 * the hosts file, waits behind them. (Background: https://nodejs.org/api/dns.html#implementation-considerations)
 *
 * So lookups start only while a slot is free, a slot is held until getaddrinfo really returns (not
 * until the caller stops waiting), and the slots are shared out:
 * - at most `slots` lookups run at once: what libuv itself allows of slow work, half the pool
 *   (https://github.com/libuv/libuv/blob/v1.x/src/threadpool.c), so none of ours queues inside libuv;
 * - one client (an address group, see client-group.ts) runs at most half of them;
 * - datagram lookups (UDP ASSOCIATE) run at most half of them, so CONNECTs always have the rest;
 * - a free slot goes to the waiting client with the fewest lookups running (ties round-robin),
 *   oldest first within a client; a caller that aborts while waiting leaves the queue at once; the
 *   queue is bounded.
 */

/** Who asks, so that one client cannot take every resolver thread. */
export interface LookupOrigin {
  /** The client's address group; lookups of one group share a part of the threads. */
  readonly client?: string
  /** `datagram` for lookups a UDP datagram triggers: they get at most half the threads. */
  readonly kind?: 'connect' | 'datagram'
}

interface Waiter {
  readonly run: () => void
  readonly kind: 'connect' | 'datagram'
  readonly client: string
  cancelled: boolean
}

/** Waiting lookups beyond which new ones fail at once (each waiter is small; this bounds memory). */
const MAX_WAITING = 10_000

export class LookupScheduler {
  readonly slots: number
  readonly #perClient: number
  readonly #perKind: number
  #running = 0
  #runningDatagrams = 0
  readonly #runningByClient = new Map<string, number>()
  /** Waiters per client, in arrival order; the Map's order is the round-robin order. */
  readonly #waiting = new Map<string, Waiter[]>()
  #waitingCount = 0

  constructor(threads: number) {
    // libuv runs at most (threads + 1) / 2 "slow" requests (getaddrinfo among them) at once, so
    // that file-system work always has threads left (uv__work_submit's UV__WORK_SLOW_IO class).
    this.slots = Math.max(1, (threads + 1) >> 1)
    this.#perClient = Math.max(1, Math.floor(this.slots / 2))
    this.#perKind = Math.max(1, Math.floor(this.slots / 2))
  }

  /** Lookups running now (holding a thread). */
  get running(): number {
    return this.#running
  }

  /** Lookups waiting for a slot. */
  get waiting(): number {
    return this.#waitingCount
  }

  /**
   * Runs `lookup` when a slot is free for this origin. The slot is released when the lookup settles,
   * whether or not the caller still waits; an abort of `signal` before it starts removes it from the queue.
   */
  schedule<T>(lookup: () => Promise<T>, origin: LookupOrigin | undefined, signalSource: AbortSignal | undefined | (() => AbortSignal | undefined)): Promise<T> {
    const client = origin?.client ?? ''
    const kind = origin?.kind ?? 'connect'
    if (this.#canStart(client, kind)) return this.#start(lookup, client, kind)
    if (this.#waitingCount >= MAX_WAITING) return Promise.reject(Object.assign(new Error('too many DNS lookups waiting'), { code: 'EAI_AGAIN' }))
    // Only a lookup that waits needs the signal (a connection makes its AbortSignal on first use).
    const signal = typeof signalSource === 'function' ? signalSource() : signalSource
    signal?.throwIfAborted()
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter = {
        kind,
        client,
        cancelled: false,
        run: () => {
          signal?.removeEventListener('abort', onAbort)
          this.#start(lookup, client, kind).then(resolve, reject)
        },
      }
      const onAbort = (): void => {
        waiter.cancelled = true
        this.#waitingCount--
        reject(signal!.reason)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      let queue = this.#waiting.get(client)
      if (queue === undefined) this.#waiting.set(client, (queue = []))
      queue.push(waiter)
      this.#waitingCount++
    })
  }

  #canStart(client: string, kind: 'connect' | 'datagram'): boolean {
    if (this.#running >= this.slots) return false
    if (kind === 'datagram' && this.#runningDatagrams >= this.#perKind) return false
    return (this.#runningByClient.get(client) ?? 0) < this.#perClient
  }

  #start<T>(lookup: () => Promise<T>, client: string, kind: 'connect' | 'datagram'): Promise<T> {
    this.#running++
    if (kind === 'datagram') this.#runningDatagrams++
    this.#runningByClient.set(client, (this.#runningByClient.get(client) ?? 0) + 1)
    let promise: Promise<T>
    try {
      promise = lookup()
    } catch (err) {
      promise = Promise.reject(err)
    }
    const release = (): void => this.#release(client, kind)
    promise.then(release, release)
    return promise
  }

  #release(client: string, kind: 'connect' | 'datagram'): void {
    this.#running--
    if (kind === 'datagram') this.#runningDatagrams--
    const left = (this.#runningByClient.get(client) ?? 1) - 1
    if (left <= 0) this.#runningByClient.delete(client)
    else this.#runningByClient.set(client, left)
    this.#startWaiting()
  }

  /**
   * Starts waiters while slots are free: each time, the client with the fewest lookups running that
   * has a waiter able to start (ties: the one that waited longest for a turn), its oldest such waiter.
   */
  #startWaiting(): void {
    while (this.#running < this.slots && this.#waitingCount > 0) {
      let best: string | null = null
      let bestRunning = Infinity
      let bestIndex = -1
      for (const [client, queue] of this.#waiting) {
        while (queue.length > 0 && queue[0]!.cancelled) queue.shift()
        if (queue.length === 0) {
          this.#waiting.delete(client)
          continue
        }
        const running = this.#runningByClient.get(client) ?? 0
        if (running >= bestRunning) continue
        const index = queue.findIndex((w) => !w.cancelled && this.#canStart(client, w.kind))
        if (index === -1) continue
        best = client
        bestRunning = running
        bestIndex = index
      }
      if (best === null) return
      const queue = this.#waiting.get(best)!
      const [waiter] = queue.splice(bestIndex, 1)
      this.#waitingCount--
      // To the back of the order, so ties go to the others first.
      this.#waiting.delete(best)
      if (queue.length > 0) this.#waiting.set(best, queue)
      waiter!.run()
    }
  }
}

/** libuv's thread-pool size as this process has it (UV_THREADPOOL_SIZE, 4 by default, at most 1024). */
export function threadPoolSize(env: NodeJS.ProcessEnv = process.env): number {
  const configured = Number.parseInt(env.UV_THREADPOOL_SIZE ?? '', 10)
  return Number.isFinite(configured) && configured > 0 ? Math.min(configured, 1024) : 4
}
