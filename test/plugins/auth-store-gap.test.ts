// The auth plugin catching up with announcements it missed (a gap of its subscription), on the
// memory store seen through a seam that reports a gap when the test says so (the memory store
// itself never has one; the Redis ones are in auth-store.test.ts): what the gap drops, how many
// reads the check of the live connections costs, and a login under way during the gap.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, createStore, type SharedStore, type SubscribeOptions } from 'socksmith'
import { silentLogger } from 'socksmith/ops'
import auth, { addStoredUser, hashPassword, storedUserKey } from 'socksmith/plugins/auth'
import { StoreUserLookup } from '../../plugins/auth/store-lookup.js'
import { RawClient, hex, ipv4Request, startEcho, waitFor } from '../helpers/net.js'

const CHEAP = { N: 1024 }

interface GapStore {
  readonly store: SharedStore
  /** Reports a gap to every subscription that asked (SubscribeOptions.onGap). */
  gap(): void
  /** getRecord() calls so far, and the most that were under way at once. */
  readonly reads: { count: number; inFlight: number; most: number }
  /** While set, getRecord()'s answer waits for it. */
  hold: Promise<void> | null
}

/** A memory store whose subscriptions can be told of a gap, and whose reads are counted. */
function gapStore(t: TestContext): GapStore {
  const inner = createStore({ type: 'memory' })
  t.after(() => inner.close())
  const onGaps: (() => void)[] = []
  const reads = { count: 0, inFlight: 0, most: 0 }
  const seam: GapStore = {
    store: new Proxy(inner, {
      get(target, property) {
        if (property === 'subscribe') {
          return (channel: string, listener: (message: string) => void, options: SubscribeOptions = {}) => {
            if (options.onGap !== undefined) onGaps.push(options.onGap)
            return target.subscribe(channel, listener)
          }
        }
        if (property === 'getRecord') {
          return async (key: string) => {
            reads.count++
            reads.most = Math.max(reads.most, ++reads.inFlight)
            try {
              // A turn of the event loop, so that reads started together overlap.
              await new Promise((resolve) => setImmediate(resolve))
              const value = await target.getRecord(key)
              // The answer, as the store gave it then, arrives late.
              if (seam.hold !== null) await seam.hold
              return value
            } finally {
              reads.inFlight--
            }
          }
        }
        const value: unknown = Reflect.get(target, property)
        return typeof value === 'function' ? value.bind(target) : value
      },
    }),
    gap: () => {
      for (const onGap of onGaps) onGap()
    },
    reads,
    hold: null,
  }
  return seam
}

async function relayAs(t: TestContext, port: number, user: string, password: string, echoPort: number): Promise<RawClient> {
  const client = await RawClient.connect(t, port)
  client.send(Buffer.concat([hex('050102'), Buffer.from([1, user.length]), Buffer.from(user), Buffer.from([password.length]), Buffer.from(password)]))
  assert.deepEqual(await client.read(2), hex('0502'))
  assert.deepEqual(await client.read(2), hex('0100'), `${user} logs in`)
  client.send(ipv4Request(1, '127.0.0.1', echoPort))
  assert.equal((await client.read(10))[1], 0)
  return client
}

test('StoreUserLookup: a gap drops the cached lookups, and a login under way hears of it once', async (t) => {
  const seam = gapStore(t)
  const lookup = new StoreUserLookup(seam.store, silentLogger, { lookupCacheMs: 60_000, lookupCacheSize: 100 })
  t.after(() => lookup.close())
  let gaps = 0
  await lookup.listen(() => {}, () => void gaps++)
  await seam.store.setRecord(storedUserKey('alice'), await hashPassword('one', CHEAP))
  const first = await lookup.lookup('alice')
  // Changed without an announcement: the cache answers as before.
  await seam.store.setRecord(storedUserKey('alice'), await hashPassword('two', CHEAP))
  assert.equal(await lookup.lookup('alice'), first)
  const login = lookup.begin('alice')
  assert.equal(lookup.missedChanges(login), false)
  seam.gap()
  assert.equal(gaps, 1)
  assert.equal(lookup.missedChanges(login), true)
  assert.equal(lookup.missedChanges(login), false, 'once per gap')
  lookup.end(login)
  const fresh = await lookup.lookup('alice')
  assert.notEqual(fresh, first)
  assert.notDeepEqual(fresh?.key, first?.key, 'the store was asked again')
})

test('after a gap the live connections are checked with one read per user, at most 8 at once; only changed users are closed', async (t) => {
  const seam = gapStore(t)
  const echo = await startEcho(t)
  const server = createServer({ logger: silentLogger, store: seam.store })
  server.register(auth, { usersInStore: true, throttle: false })
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 })
  t.after(() => server.close({ drainTimeout: 0 }))
  const names = Array.from({ length: 20 }, (_, i) => `user${i}`)
  for (const name of names) await addStoredUser(seam.store, name, 'pw', CHEAP)
  const clients = new Map<string, RawClient[]>()
  for (const name of names) clients.set(name, [await relayAs(t, port, name, 'pw', echo.port)])
  // Three connections of one user: still one read.
  clients.get('user0')!.push(await relayAs(t, port, 'user0', 'pw', echo.port), await relayAs(t, port, 'user0', 'pw', echo.port))
  // Changed without announcements: removed, and a new password.
  await seam.store.removeRecord(storedUserKey('user0'))
  await seam.store.setRecord(storedUserKey('user1'), await hashPassword('new', CHEAP))
  seam.reads.count = 0
  seam.reads.most = 0
  seam.gap()
  await Promise.all([...clients.get('user0')!, ...clients.get('user1')!].map((client) => client.expectClose(5000)))
  await waitFor(() => seam.reads.inFlight === 0)
  assert.equal(seam.reads.count, 20, 'one read per user')
  assert.ok(seam.reads.most <= 8 && seam.reads.most > 1, `${seam.reads.most} reads at once`)
  for (const name of names.slice(2)) assert.equal(clients.get(name)![0]!.ended, false, `${name} is unchanged and stays`)
  assert.equal(server.connections, names.length - 2)
})

test('a login whose lookup predates a gap is refused when the user changed meanwhile; the check after the gap could not see it yet', async (t) => {
  const seam = gapStore(t)
  const server = createServer({ logger: silentLogger, store: seam.store })
  server.register(auth, { usersInStore: true, throttle: false })
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 })
  t.after(() => server.close({ drainTimeout: 0 }))
  await addStoredUser(seam.store, 'alice', 'pw', CHEAP)
  let release!: () => void
  seam.hold = new Promise((resolve) => (release = resolve))
  const client = await RawClient.connect(t, port)
  client.send(Buffer.concat([hex('050102'), Buffer.from([1, 5]), Buffer.from('alice'), Buffer.from([2]), Buffer.from('pw')]))
  assert.deepEqual(await client.read(2), hex('0502'))
  // The lookup has read alice's record (held before it answers); she is removed unannounced, and the gap reported.
  await waitFor(() => seam.reads.inFlight === 1)
  await seam.store.removeRecord(storedUserKey('alice'))
  seam.hold = null
  seam.gap()
  release()
  assert.deepEqual(await client.read(2), hex('0101'), 'refused')
  await client.expectClose()
})
