// A child process holding a store, driven by its parent over IPC (test/helpers/remote-store.ts):
// the second process of the store tests. Forked with child_process (a Redis store) or as a
// node:cluster worker (the store the primary serves). SOCKSMITH_TEST_STORE holds the options.
import { createStore, type SharedStore } from 'socksmith'

interface Call {
  type: 'store-test'
  id: number
  op: string
  args: unknown[]
}

const store = createStore(JSON.parse(process.env.SOCKSMITH_TEST_STORE ?? '{"type":"memory"}'))
const subscriptions = new Map<number, () => Promise<void>>()
const send = (message: unknown): void => {
  if (process.connected) process.send?.(message)
}

async function perform({ id, op, args }: Call): Promise<unknown> {
  if (op === 'subscribe') {
    const channel = args[0] as string
    subscriptions.set(id, await store.subscribe(channel, (message) => send({ type: 'store-test:message', subscription: id, channel, message })))
    return id
  }
  if (op === 'unsubscribe') return subscriptions.get(args[0] as number)?.()
  const method = (store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[op] as (...a: unknown[]) => Promise<unknown>
  return method.apply(store, args)
}

process.on('message', (message: Call | null) => {
  if (message?.type !== 'store-test') return
  perform(message).then(
    (value) => send({ type: 'store-test', id: message.id, value }),
    (err: { code?: string; message?: string }) => send({ type: 'store-test', id: message.id, error: { code: err.code, message: err.message } }),
  )
})
// The parent went away: nothing left to serve.
process.on('disconnect', () => void store.close().finally(() => process.exit(0)))
send({ type: 'store-test:ready', kind: store.kind satisfies SharedStore['kind'] })
