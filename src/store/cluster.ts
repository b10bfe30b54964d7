// `--workers N`: one store for N processes. The primary holds a MemoryStore and answers the
// workers' requests over the cluster IPC channel; a worker's ClusterStore is a client of it. So a
// limit is one limit for the whole server, not one per worker. Messages (JSON over the channel):
//
//   worker -> primary   { type: 'socksmith:store', id, op, args }        an operation
//   primary -> worker   { type: 'socksmith:store', id, value | error }   its answer
//   primary -> worker   { type: 'socksmith:store:message', channel, message }
//                       a publish, to every worker that subscribed to the channel (the sender too)
import cluster, { type Worker } from 'node:cluster'
import { MemoryStore } from './memory.js'
import { guardListener, Subscriptions, warnListenerError } from './subscriptions.js'
import { checkCounterUpdate, checkHolder, checkKey, checkLease, checkRecord, checkRecordKeys, checkRenewals, checkTtl, DEFAULT_STORE_TIMEOUT, storeError, type CounterUpdate, type LeaseRef, type LeaseRenewal, type SharedStore } from './store.js'

const REQUEST = 'socksmith:store'
const MESSAGE = 'socksmith:store:message'

type Operation =
  | 'add' | 'addMany' | 'read'
  | 'acquire' | 'renew' | 'release' | 'holders'
  | 'getRecord' | 'setRecord' | 'removeRecord' | 'recordKeys'
  | 'delete' | 'now' | 'publish' | 'subscribe' | 'unsubscribe'

interface StoreRequest {
  readonly type: typeof REQUEST
  readonly id: number
  readonly op: Operation
  readonly args: readonly unknown[]
}

interface StoreReply {
  readonly type: typeof REQUEST
  readonly id: number
  readonly value?: unknown
  /** The primary's error message; the worker rejects with ERR_SOCKS_STORE saying it. */
  readonly error?: string
}

interface StoreMessage {
  readonly type: typeof MESSAGE
  readonly channel: string
  readonly message: string
}

interface Pending {
  readonly op: Operation
  readonly resolve: (value: unknown) => void
  readonly reject: (err: unknown) => void
  readonly timer: NodeJS.Timeout
}

/**
 * A worker's one link to the primary, shared by every ClusterStore of the process (a reload makes
 * a new server, and tests open several): one 'message' listener, one id sequence, one
 * subscription per channel.
 */
class PrimaryLink {
  #nextId = 1
  #users = 0
  readonly pending = new Map<number, Pending>()
  /** A timeout for the (un)subscribe requests: that of the store whose subscribe() made them. */
  subscribeTimeout = DEFAULT_STORE_TIMEOUT
  readonly channels = new Subscriptions(
    (channel) => this.request('subscribe', [channel], this.subscribeTimeout),
    (channel) => this.request('unsubscribe', [channel], this.subscribeTimeout),
  )

  attach(): void {
    if (this.#users++ === 0) process.on('message', this.#onMessage)
  }

  detach(): void {
    if (--this.#users === 0) process.removeListener('message', this.#onMessage)
  }

  request(op: Operation, args: readonly unknown[], timeout: number): Promise<unknown> {
    if (process.send === undefined || !process.connected) return Promise.reject(storeError('cluster', op, 'this process has no channel to a --workers primary'))
    const id = this.#nextId++
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(storeError('cluster', op, `the --workers primary did not answer within ${timeout} ms`))
      }, timeout)
      this.pending.set(id, { op, resolve, reject, timer })
      const request: StoreRequest = { type: REQUEST, id, op, args }
      process.send?.(request, (err: Error | null) => {
        if (err !== null) this.#settle(id, undefined, `cannot reach the --workers primary: ${err.message}`)
      })
    })
  }

  readonly #onMessage = (message: StoreReply | StoreMessage | null): void => {
    if (message?.type === REQUEST) this.#settle(message.id, message.value, message.error)
    else if (message?.type === MESSAGE) this.channels.deliver(message.channel, message.message)
  }

  #settle(id: number, value: unknown, error: string | undefined): void {
    const pending = this.pending.get(id)
    if (pending === undefined) return
    this.pending.delete(id)
    clearTimeout(pending.timer)
    if (error === undefined) pending.resolve(value)
    else pending.reject(storeError('cluster', pending.op, error))
  }
}

let primaryLink: PrimaryLink | null = null

/**
 * The store of a `--workers` worker: every operation is a request to the primary's store, bounded
 * by `timeout` (a primary that is gone or stuck makes it reject, never hang). Arguments are checked
 * here, before they cross the channel, with the checks of the other backends.
 */
export class ClusterStore implements SharedStore {
  readonly kind = 'cluster'
  readonly shared = true
  readonly #timeout: number
  readonly #link: PrimaryLink
  readonly #subscriptions = new Set<() => Promise<void>>()
  readonly #onListenerError: (err: unknown, channel: string) => void
  #closed = false

  constructor(options: { timeout?: number; onListenerError?: (err: unknown, channel: string) => void } = {}) {
    this.#timeout = options.timeout ?? DEFAULT_STORE_TIMEOUT
    this.#onListenerError = options.onListenerError ?? warnListenerError
    this.#link = primaryLink ??= new PrimaryLink()
    this.#link.attach()
  }

  async add(key: string, by: number, expiresAt: number | null): Promise<number> {
    checkCounterUpdate({ key, by, expiresAt })
    return (await this.#request('add', [key, by, expiresAt])) as number
  }

  async addMany(entries: readonly CounterUpdate[]): Promise<number[]> {
    for (const entry of entries) checkCounterUpdate(entry)
    // Plain objects: what crosses the channel is JSON.
    return (await this.#request('addMany', [entries.map(({ key, by, expiresAt }) => ({ key, by, expiresAt }))])) as number[]
  }

  async read(key: string): Promise<number> {
    checkKey(key)
    return (await this.#request('read', [key])) as number
  }

  async acquire(key: string, holder: string, max: number, ttlMs: number): Promise<boolean> {
    checkLease(key, holder, max, ttlMs)
    return (await this.#request('acquire', [key, holder, max, ttlMs])) as boolean
  }

  async renew(leases: readonly LeaseRenewal[], ttlMs: number): Promise<LeaseRef[]> {
    checkRenewals(leases, ttlMs)
    return (await this.#request('renew', [leases.map(({ key, holder, max }) => ({ key, holder, max })), ttlMs])) as LeaseRef[]
  }

  async release(key: string, holder: string): Promise<void> {
    await this.#request('release', [key, holder])
  }

  async holders(key: string): Promise<string[]> {
    checkKey(key)
    return (await this.#request('holders', [key])) as string[]
  }

  async getRecord(key: string): Promise<string | null> {
    checkKey(key)
    return (await this.#request('getRecord', [key])) as string | null
  }

  async setRecord(key: string, value: string): Promise<void> {
    checkRecord(key, value)
    await this.#request('setRecord', [key, value])
  }

  async removeRecord(key: string): Promise<boolean> {
    checkKey(key)
    return (await this.#request('removeRecord', [key])) as boolean
  }

  async recordKeys(prefix: string, limit?: number): Promise<string[]> {
    const max = checkRecordKeys(prefix, limit)
    return (await this.#request('recordKeys', [prefix, max])) as string[]
  }

  async delete(...keys: string[]): Promise<void> {
    await this.#request('delete', keys)
  }

  async now(): Promise<number> {
    return (await this.#request('now', [])) as number
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.#request('publish', [channel, String(message)])
  }

  // SubscribeOptions.onGap is never called: the IPC channel to the primary delivers every message
  // in order while it is open, and when it closes (the primary exited) Node's cluster module ends
  // this worker (child.js: an unexpected 'disconnect' exits). A subscribe request that timed out
  // rejects, so its caller knows it was not subscribed.
  async subscribe(channel: string, listener: (message: string) => void): Promise<() => Promise<void>> {
    if (this.#closed) throw storeError(this.kind, 'subscribe', 'the store is closed')
    this.#link.subscribeTimeout = this.#timeout
    const unsubscribe = await this.#link.channels.add(channel, guardListener(channel, listener, this.#onListenerError))
    // Kept so close() can end it; the function handed out forgets it too.
    const tracked = async (): Promise<void> => {
      this.#subscriptions.delete(tracked)
      await unsubscribe()
    }
    this.#subscriptions.add(tracked)
    return tracked
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    // Best effort: with the primary gone there is nobody to tell.
    await Promise.allSettled([...this.#subscriptions].map((unsubscribe) => unsubscribe()))
    this.#link.detach()
  }

  #request(op: Operation, args: readonly unknown[]): Promise<unknown> {
    if (this.#closed) return Promise.reject(storeError(this.kind, op, 'the store is closed'))
    return this.#link.request(op, args, this.#timeout)
  }
}

/** What `serveClusterStore()` returns. */
export interface ClusterStoreService {
  /** Stops answering the workers and drops the state. */
  close(): Promise<void>
}

/**
 * In the `--workers` primary: holds the one MemoryStore of the cluster and answers every
 * worker's ClusterStore. Cheap until a worker asks: a message listener, and the store's Maps.
 */
export function serveClusterStore(): ClusterStoreService {
  const store = new MemoryStore()
  const subscribers = new Map<string, Set<Worker>>()
  const sendTo = (worker: Worker, answer: StoreReply | StoreMessage): void => {
    // A worker that died meanwhile has nobody left to answer.
    if (!worker.isConnected()) return
    try {
      worker.send(answer)
    } catch {
      // The channel closed between the check and the send: same thing.
    }
  }
  const run = (worker: Worker, op: Operation, args: readonly unknown[]): Promise<unknown> | unknown => {
    const [a, b, c, d] = args as [never, never, never, never]
    switch (op) {
      case 'add': return store.add(a, b, c)
      case 'addMany': return store.addMany(a)
      case 'read': return store.read(a)
      case 'acquire': return store.acquire(a, b, c, d)
      case 'renew': return store.renew(a, b)
      case 'release': return store.release(a, b)
      case 'holders': return store.holders(a)
      case 'getRecord': return store.getRecord(a)
      case 'setRecord': return store.setRecord(a, b)
      case 'removeRecord': return store.removeRecord(a)
      case 'recordKeys': return store.recordKeys(a, b)
      case 'delete': return store.delete(...(args as string[]))
      case 'now': return Date.now()
      case 'publish': {
        const message: StoreMessage = { type: MESSAGE, channel: String(a), message: String(b) }
        for (const subscriber of subscribers.get(message.channel) ?? []) sendTo(subscriber, message)
        return undefined
      }
      case 'subscribe': {
        let set = subscribers.get(String(a))
        if (set === undefined) subscribers.set(String(a), (set = new Set()))
        set.add(worker)
        return undefined
      }
      case 'unsubscribe': {
        const set = subscribers.get(String(a))
        set?.delete(worker)
        if (set?.size === 0) subscribers.delete(String(a))
        return undefined
      }
      default:
        throw new Error(`unknown operation ${JSON.stringify(op)}`)
    }
  }
  const onMessage = (worker: Worker, message: StoreRequest | null): void => {
    if (message?.type !== REQUEST) return
    const { id, op, args } = message
    Promise.resolve()
      .then(() => run(worker, op, Array.isArray(args) ? args : []))
      .then(
        (value) => sendTo(worker, { type: REQUEST, id, value }),
        (err: unknown) => sendTo(worker, { type: REQUEST, id, error: err instanceof Error ? err.message : String(err) }),
      )
  }
  // Its leases stay until their TTL ends (nobody renews them): the heartbeat is what frees them.
  const onExit = (worker: Worker): void => {
    for (const [channel, set] of subscribers) {
      set.delete(worker)
      if (set.size === 0) subscribers.delete(channel)
    }
  }
  cluster.on('message', onMessage)
  cluster.on('exit', onExit)
  return {
    async close() {
      cluster.removeListener('message', onMessage)
      cluster.removeListener('exit', onExit)
      subscribers.clear()
      await store.close()
    },
  }
}
