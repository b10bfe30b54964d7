// The Redis store against a real redis-server (started here, on a free port): the contract with
// `a` in this process and `b` in a child process, each with its own connections; and what happens
// while Redis is gone and after it is back.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createStore, type SharedStore } from 'socksmith'
import { needs, peer } from '../helpers/peers.js'
import { adminClient, startRedis, whileUnsubscribed } from '../helpers/redis.js'
import { waitFor } from '../helpers/net.js'
import { forkStore } from '../helpers/remote-store.js'
import { assertEveryOperationRejects, storeContract } from './contract.js'

const redis = peer('redis-server')

storeContract('redis store (two processes)', needs(redis), async (scope) => {
  const server = await startRedis(scope)
  const options = { type: 'redis', url: server.url, prefix: 'contract:' } as const
  const a = createStore(options)
  scope.after(() => a.close())
  const b = await forkStore(scope, options)
  assert.equal(a.kind, 'redis')
  assert.equal(b.kind, 'redis')
  return { a, b }
})

test('redis store: with Redis stopped every operation rejects within the timeout; after a restart on the same port it works again', needs(redis), async (t) => {
  const server = await startRedis(t)
  const store = createStore({ type: 'redis', url: server.url, timeout: 300 })
  t.after(() => store.close())
  const heard: string[] = []
  await store.subscribe('news', (message) => heard.push(message))
  assert.equal(await store.add('up', 1, null), 1)
  await server.stop()
  const port = server.port
  await assertEveryOperationRejects(store, (name) => new RegExp(`^redis store: ${name} failed: .*127\\.0\\.0\\.1:${port}`), 800)
  await server.start()
  // ioredis reconnects by itself (within a second here); nothing queued from the outage is replayed.
  // A probe of its own per attempt: an attempt that timed out here may still have reached Redis.
  const deadline = Date.now() + 5000
  for (let attempt = 0; ; attempt++) {
    if ((await store.add(`probe${attempt}`, 1, null).catch(() => null)) !== null) break
    if (Date.now() > deadline) throw new Error('no reconnect within 5 s')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  assert.equal(await store.read('k'), 0, 'a fresh Redis (no persistence), and the adds of the outage were never applied')
  // The subscription came back with the connection.
  await eventuallyHeard(store, heard)
})

/** Publishes until the resubscribed listener hears it (the resubscribe may land after the first publish). */
async function eventuallyHeard(store: SharedStore, heard: string[]): Promise<void> {
  const deadline = Date.now() + 3000
  while (heard.length === 0) {
    if (Date.now() > deadline) throw new Error('the subscription did not come back')
    await store.publish('news', 'back')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  assert.equal(heard[0], 'back')
}

test('redis store: keys carry the prefix, so two prefixes on one Redis are two states; now() is the Redis clock', needs(redis), async (t) => {
  const server = await startRedis(t)
  const store = createStore({ type: 'redis', url: server.url, prefix: 'eu1:' })
  const other = createStore({ type: 'redis', url: server.url, prefix: 'eu2:' })
  t.after(() => Promise.all([store.close(), other.close()]))
  assert.equal(await store.add('hits', 2, null), 2)
  assert.equal(await other.read('hits'), 0, 'another prefix, another state')
  assert.equal(await store.acquire('slots', 'h', 1, 60_000), true)
  assert.equal(await other.acquire('slots', 'h2', 1, 60_000), true)
  const now = await store.now()
  assert.ok(Math.abs(now - Date.now()) < 1000)
})

test('redis store: when the subscriber connection drops, the store subscribes again and then calls onGap; a message of the gap is lost, later ones arrive', needs(redis), async (t) => {
  const server = await startRedis(t)
  const store = createStore({ type: 'redis', url: server.url, prefix: 'gap:' })
  t.after(() => store.close())
  const heard: string[] = []
  const gaps: number[] = []
  let plain = 0
  await store.subscribe('news', (message) => heard.push(message), { onGap: () => void gaps.push(heard.length) })
  // A subscription without onGap on the same channel is subscribed again all the same.
  await store.subscribe('news', () => void plain++)
  const admin = await adminClient(t, server.url)
  const { replies, subscribers } = await whileUnsubscribed(admin, 'gap:news', [['PUBLISH', 'gap:news', 'during']])
  assert.equal(subscribers, 0)
  assert.equal(replies[0], 0, 'nobody heard the message of the gap')
  await waitFor(() => gaps.length > 0, 3000)
  // onGap comes once Redis confirmed the new subscription: the next message is delivered.
  const [, count] = (await admin.pubsub('NUMSUB', 'gap:news')) as [string, number]
  assert.equal(Number(count), 1)
  await store.publish('news', 'after')
  await waitFor(() => heard.length === 1 && plain === 1)
  assert.deepEqual(heard, ['after'])
  assert.deepEqual(gaps, [0], 'one gap, reported before the next message')
})

test('redis store: onGap is not called for the first subscription, nor after a clean unsubscribe', needs(redis), async (t) => {
  const server = await startRedis(t)
  const store = createStore({ type: 'redis', url: server.url, prefix: 'gap:' })
  t.after(() => store.close())
  let gaps = 0
  const stop = await store.subscribe('news', () => {}, { onGap: () => void gaps++ })
  await stop()
  const kept = await store.subscribe('other', () => {})
  const admin = await adminClient(t, server.url)
  await whileUnsubscribed(admin, 'gap:other', [])
  // The other channel comes back (a new message is heard), and the unsubscribed one's onGap stays silent.
  const heard: string[] = []
  await store.subscribe('other', (message) => heard.push(message))
  const deadline = Date.now() + 3000
  while (heard.length === 0) {
    if (Date.now() > deadline) throw new Error('the subscription did not come back')
    await store.publish('other', 'x')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const [, news] = (await admin.pubsub('NUMSUB', 'gap:news')) as [string, number]
  assert.equal(Number(news), 0, 'a channel nobody listens to is not subscribed again')
  assert.equal(gaps, 0)
  await kept()
})
