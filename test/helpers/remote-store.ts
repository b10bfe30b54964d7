// A store in another process (test/helpers/store-child.ts), used from the test as if it were here:
// the store tests' second process, so "shared" is checked across a process boundary for real.
import { fork } from 'node:child_process'
import cluster, { type Worker } from 'node:cluster'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { Cleanup } from './redis.js'
import { SocksError, type CounterUpdate, type LeaseRef, type LeaseRenewal, type SharedStore, type SocksErrorCode, type StoreOptions } from 'socksmith'

const CHILD = fileURLToPath(new URL('store-child.ts', import.meta.url))

/** What both a forked ChildProcess and a cluster Worker are: an IPC channel to the process. */
interface Channel {
  send(message: unknown): boolean
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- what node's own typings say
  on(event: 'message', listener: (message: any) => void): unknown
}

interface Answer {
  type: 'store-test'
  id: number
  value?: unknown
  error?: { code?: string; message?: string }
}

interface Delivery {
  type: 'store-test:message'
  subscription: number
  message: string
}

/** The store of another process, every operation a round trip to it. */
export class RemoteStore implements SharedStore {
  readonly shared = true
  readonly #channel: Channel
  #nextId = 1
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (err: unknown) => void }>()
  readonly #listeners = new Map<number, (message: string) => void>()

  constructor(channel: Channel, readonly kind: SharedStore['kind']) {
    this.#channel = channel
    channel.on('message', (message: Answer | Delivery) => {
      if (message?.type === 'store-test:message') this.#listeners.get(message.subscription)?.(message.message)
      if (message?.type !== 'store-test') return
      const pending = this.#pending.get(message.id)
      this.#pending.delete(message.id)
      if (message.error === undefined) pending?.resolve(message.value)
      // The child's error as it was there: same code, same message.
      else pending?.reject(new SocksError((message.error.code ?? 'ERR_SOCKS_STORE') as SocksErrorCode, message.error.message))
    })
  }

  #call(op: string, ...args: unknown[]): Promise<never> {
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject })
      this.#channel.send({ type: 'store-test', id, op, args })
    })
  }

  add(key: string, by: number, expiresAt: number | null): Promise<number> {
    return this.#call('add', key, by, expiresAt)
  }
  addMany(entries: readonly CounterUpdate[]): Promise<number[]> {
    return this.#call('addMany', entries)
  }
  read(key: string): Promise<number> {
    return this.#call('read', key)
  }
  acquire(key: string, holder: string, max: number, ttlMs: number): Promise<boolean> {
    return this.#call('acquire', key, holder, max, ttlMs)
  }
  renew(leases: readonly LeaseRenewal[], ttlMs: number): Promise<LeaseRef[]> {
    return this.#call('renew', leases, ttlMs)
  }
  release(key: string, holder: string): Promise<void> {
    return this.#call('release', key, holder)
  }
  holders(key: string): Promise<string[]> {
    return this.#call('holders', key)
  }
  getRecord(key: string): Promise<string | null> {
    return this.#call('getRecord', key)
  }
  setRecord(key: string, value: string): Promise<void> {
    return this.#call('setRecord', key, value)
  }
  removeRecord(key: string): Promise<boolean> {
    return this.#call('removeRecord', key)
  }
  recordKeys(prefix: string, limit?: number): Promise<string[]> {
    return limit === undefined ? this.#call('recordKeys', prefix) : this.#call('recordKeys', prefix, limit)
  }
  delete(...keys: string[]): Promise<void> {
    return this.#call('delete', ...keys)
  }
  now(): Promise<number> {
    return this.#call('now')
  }
  publish(channel: string, message: string): Promise<void> {
    return this.#call('publish', channel, message)
  }
  async subscribe(channel: string, listener: (message: string) => void): Promise<() => Promise<void>> {
    const subscription: number = await this.#call('subscribe', channel)
    this.#listeners.set(subscription, listener)
    return async () => {
      this.#listeners.delete(subscription)
      await this.#call('unsubscribe', subscription)
    }
  }
  close(): Promise<void> {
    return this.#call('close')
  }
}

/** Waits for the child's ready message: the store it opened. */
async function ready(channel: Channel): Promise<SharedStore['kind']> {
  return new Promise((resolve) => {
    channel.on('message', (message: { type?: string; kind?: SharedStore['kind'] }) => {
      if (message?.type === 'store-test:ready') resolve(message.kind as SharedStore['kind'])
    })
  })
}

/** A child process (child_process.fork) with a store of `options`; killed after the test. */
export async function forkStore(t: Cleanup, options: StoreOptions): Promise<RemoteStore> {
  const child = fork(CHILD, [], { env: { ...process.env, SOCKSMITH_TEST_STORE: JSON.stringify(options) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  t.after(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGKILL')
    await once(child, 'exit')
  })
  const kind = await ready(child)
  return new RemoteStore(child, kind)
}

/**
 * `count` node:cluster workers of this process, as `socksmith --workers` starts them, each with a
 * memory store (so: the primary's, which the test serves with serveClusterStore()).
 */
export async function forkWorkers(t: Cleanup, count: number, options: StoreOptions = { type: 'memory' }): Promise<RemoteStore[]> {
  cluster.setupPrimary({ exec: CHILD, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const workers: Worker[] = []
  for (let i = 0; i < count; i++) workers.push(cluster.fork({ SOCKSMITH_CLUSTER_WORKER: '1', SOCKSMITH_TEST_STORE: JSON.stringify(options) }))
  t.after(async () => {
    await Promise.all(
      workers.map(async (worker) => {
        if (worker.isDead()) return
        const exited = once(worker, 'exit')
        worker.process.kill('SIGKILL')
        await exited
      }),
    )
  })
  return Promise.all(workers.map(async (worker) => new RemoteStore(worker, await ready(worker))))
}
