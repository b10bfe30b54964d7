// The memory store (the default): the contract, and that memory stays bounded without timers.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createStore } from 'socksmith'
import { MemoryStore } from '../../src/store/memory.js'
import { storeContract } from './contract.js'

storeContract('memory store', {}, async (scope) => {
  const store = createStore({ type: 'memory' })
  scope.after(() => store.close())
  assert.equal(store.kind, 'memory')
  assert.equal(store.shared, false)
  return { a: store, b: store }
})

test('memory store: expired counters and lease sets are swept by later writes, so memory stays bounded', async () => {
  const store = new MemoryStore()
  const expiresAt = Date.now() + 300
  for (let i = 0; i < 1000; i++) {
    await store.add(`short:${i}`, 1, expiresAt)
    await store.acquire(`lease:${i}`, 'h', 1, 300)
  }
  assert.ok(Date.now() < expiresAt, 'all were written before any expired (a loaded machine may need a longer expiry here)')
  assert.equal(store.size, 2000)
  // The last lease was taken just now: it ends 300 ms from here.
  await new Promise((resolve) => setTimeout(resolve, 320))
  // Writes to a handful of keys: each sweeps a few entries further.
  for (let i = 0; i < 600; i++) await store.add(`live:${i % 10}`, 1, null)
  assert.equal(store.size, 10, 'only the live counters are left')
  await store.close()
  await assert.rejects(store.read('live:1'), { code: 'ERR_SOCKS_STORE', message: /memory store: read failed: the store is closed/ })
})

test('memory store: a listener that throws is reported, and the other listeners still get the message', async () => {
  const errors: string[] = []
  const store = createStore({ type: 'memory' }, { onListenerError: (err, channel) => errors.push(`${channel}: ${(err as Error).message}`) })
  const got: string[] = []
  await store.subscribe('c', () => {
    throw new Error('boom')
  })
  await store.subscribe('c', (message) => got.push(message))
  await store.publish('c', 'hello')
  await new Promise((resolve) => setImmediate(resolve))
  assert.deepEqual(got, ['hello'])
  assert.deepEqual(errors, ['c: boom'])
  await store.close()
})
