// The behaviour every SharedStore backend must have, run against each of them (memory.test.ts,
// cluster.test.ts, redis.test.ts). `a` and `b` share one state: for a shared store they live in
// two processes, so what one writes the other must see, and atomic means atomic across processes.
import { after, before, describe, test, type TestOptions } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import type { SharedStore } from 'socksmith'
import type { Cleanup } from '../helpers/redis.js'

/** Lease TTL of the timing tests: short, so the suite stays quick; margins are in fractions of it. */
const TTL = 200

export interface ContractStores {
  readonly a: SharedStore
  readonly b: SharedStore
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))

async function eventually(predicate: () => boolean, what: string, timeout = 2000): Promise<void> {
  const deadline = Date.now() + timeout
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout} ms`)
    await sleep(5)
  }
}

/**
 * Every operation of `store`, each as one call, for the tests of a backend that is down: each must
 * reject with ERR_SOCKS_STORE within the timeout, and its message must match `message(name)`.
 */
export async function assertEveryOperationRejects(store: SharedStore, message: (operation: string) => RegExp, within: number): Promise<void> {
  const operations: [string, () => Promise<unknown>][] = [
    ['add', () => store.add('k', 1, null)],
    ['addMany', () => store.addMany([{ key: 'k', by: 1, expiresAt: null }, { key: 'j', by: 1, expiresAt: null }])],
    ['read', () => store.read('k')],
    ['acquire', () => store.acquire('k', 'h', 1, 1000)],
    ['renew', () => store.renew([{ key: 'k', holder: 'h', max: 1 }], 1000)],
    ['release', () => store.release('k', 'h')],
    ['holders', () => store.holders('k')],
    ['getRecord', () => store.getRecord('k')],
    ['setRecord', () => store.setRecord('k', 'v')],
    ['removeRecord', () => store.removeRecord('k')],
    ['recordKeys', () => store.recordKeys('k')],
    ['delete', () => store.delete('k')],
    ['now', () => store.now()],
    ['publish', () => store.publish('c', 'm')],
    ['subscribe', () => store.subscribe('c', () => {})],
  ]
  await Promise.all(
    operations.map(async ([name, run]) => {
      const started = Date.now()
      await assert.rejects(run(), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ERR_SOCKS_STORE', `${name}: ${err.message}`)
        assert.match(err.message, message(name))
        return true
      })
      const took = Date.now() - started
      assert.ok(took < within, `${name} rejected after ${took} ms`)
    }),
  )
}

export function storeContract(name: string, options: TestOptions, open: (scope: Cleanup) => Promise<ContractStores>): void {
  describe(name, options, () => {
    const cleanups: (() => unknown)[] = []
    let a: SharedStore
    let b: SharedStore
    // Keys of their own for every run, so nothing depends on what an earlier test left.
    const run = randomUUID().slice(0, 8)
    let n = 0
    const key = (what: string): string => `${run}:${what}:${++n}`

    before(async () => {
      ;({ a, b } = await open({ after: (fn) => cleanups.push(fn) }))
    })
    after(async () => {
      for (const fn of cleanups.reverse()) await fn()
    })

    test('add: a counter starts at 0, adds up across both sides, may go down; read of an absent one is 0', async () => {
      const k = key('add')
      assert.equal(await a.read(k), 0)
      assert.equal(await a.add(k, 5, null), 5)
      assert.equal(await b.add(k, 3, null), 8)
      assert.equal(await a.add(k, -10, null), -2)
      assert.equal(await b.add(k, 0, null), -2)
      assert.equal(await b.read(k), -2)
    })

    test('a counter expires at the expiresAt of the add that created it: later adds keep it; then it starts at 0 again', async () => {
      const k = key('expiry')
      const expiresAt = Date.now() + TTL
      assert.equal(await a.add(k, 5, expiresAt), 5)
      // An existing counter keeps its expiry: this expiresAt is ignored.
      assert.equal(await b.add(k, 2, Date.now() + 60_000), 7)
      assert.equal(await a.read(k), 7)
      await sleep(expiresAt - Date.now() + 50)
      assert.equal(await a.read(k), 0, 'expired')
      assert.equal(await b.add(k, 3, null), 3, 'starts at 0 again, not at 7')
      await sleep(TTL / 2)
      assert.equal(await a.read(k), 3, 'created without expiry: stays')
    })

    test('addMany: one call, the new values in order, a key listed twice counted twice', async () => {
      const [x, y] = [key('many-x'), key('many-y')]
      await a.add(x, 10, null)
      const values = await b.addMany([
        { key: x, by: 1, expiresAt: null },
        { key: y, by: 7, expiresAt: Date.now() + 60_000 },
        { key: x, by: 2, expiresAt: null },
        { key: y, by: -1, expiresAt: null },
      ])
      assert.deepEqual(values, [11, 7, 13, 6])
      assert.deepEqual(await a.addMany([]), [])
      assert.equal(await a.read(x), 13)
    })

    test('bad arguments reject with ERR_SOCKS_INVALID_ARGUMENT, alike on every backend', async () => {
      await assert.rejects(a.add(key('bad'), 1.5, null), { code: 'ERR_SOCKS_INVALID_ARGUMENT' })
      await assert.rejects(a.add('', 1, null), { code: 'ERR_SOCKS_INVALID_ARGUMENT' })
      await assert.rejects(b.addMany([{ key: key('bad'), by: 1, expiresAt: 1.5 }]), { code: 'ERR_SOCKS_INVALID_ARGUMENT' })
      await assert.rejects(a.acquire(key('bad'), 'h', -1, TTL), { code: 'ERR_SOCKS_INVALID_ARGUMENT' })
      await assert.rejects(b.acquire(key('bad'), 'h', 1, 0), { code: 'ERR_SOCKS_INVALID_ARGUMENT' })
      await assert.rejects(a.acquire(key('bad'), '', 1, TTL), { code: 'ERR_SOCKS_INVALID_ARGUMENT' })
    })

    test('acquire: 20 at once from both sides with max 5 admit exactly 5, and those are the holders', async () => {
      const k = key('race')
      const holders = Array.from({ length: 20 }, (_, i) => `h${i}`)
      const results = await Promise.all(holders.map((holder, i) => (i % 2 === 0 ? a : b).acquire(k, holder, 5, 10_000)))
      const admitted = holders.filter((_, i) => results[i])
      assert.equal(admitted.length, 5, `admitted: ${admitted.join(', ')}`)
      assert.deepEqual((await b.holders(k)).sort(), admitted.sort())
      // A holder that has a lease keeps it at the max: acquire() renews it.
      assert.equal(await a.acquire(k, admitted[0] as string, 5, 10_000), true)
      assert.equal(await a.acquire(k, 'one-more', 5, 10_000), false)
      // max 0: nobody, not even the first.
      assert.equal(await b.acquire(key('closed'), 'first', 0, 10_000), false)
    })

    test('release frees the slot at once; releasing what is not held does nothing', async () => {
      const k = key('release')
      assert.equal(await a.acquire(k, 'first', 1, 10_000), true)
      assert.equal(await b.acquire(k, 'second', 1, 10_000), false)
      await b.release(k, 'nobody')
      await a.release(k, 'first')
      assert.deepEqual(await a.holders(k), [])
      assert.equal(await b.acquire(k, 'second', 1, 10_000), true)
      assert.deepEqual(await a.holders(k), ['second'])
    })

    test('a lease nobody renews ends after its ttl and frees its slot', async () => {
      const k = key('expire')
      const taken = Date.now()
      assert.equal(await a.acquire(k, 'gone', 1, TTL), true)
      assert.equal(await b.acquire(k, 'waiting', 1, TTL), false)
      assert.deepEqual(await b.holders(k), ['gone'])
      await sleep(taken + TTL + 50 - Date.now())
      assert.deepEqual(await b.holders(k), [])
      assert.equal(await b.acquire(k, 'waiting', 1, TTL), true)
    })

    test('renew (the heartbeat) keeps leases alive past their ttl, in one call for several sets', async () => {
      const [k1, k2] = [key('renew-1'), key('renew-2')]
      assert.equal(await a.acquire(k1, 'kept', 1, TTL), true)
      assert.equal(await a.acquire(k2, 'kept', 1, TTL), true)
      const until = Date.now() + 2.5 * TTL
      while (Date.now() < until) {
        await sleep(TTL / 3)
        assert.deepEqual(await a.renew([{ key: k1, holder: 'kept', max: 1 }, { key: k2, holder: 'kept', max: 1 }], TTL), [])
      }
      assert.deepEqual(await b.holders(k1), ['kept'], 'alive 2.5 ttl after it was taken')
      assert.equal(await b.acquire(k2, 'other', 1, TTL), false)
      await a.renew([], TTL)
    })

    test('renew takes an expired lease again only under its max; the ones that do not fit are reported lost, in order', async () => {
      const k = key('renew-back')
      assert.equal(await a.acquire(k, 'late-1', 2, TTL), true)
      assert.equal(await a.acquire(k, 'late-2', 2, TTL), true)
      await sleep(TTL + 50)
      // The heartbeat did not come in time (a node cut off from the store): the slots went to others.
      assert.equal(await b.acquire(k, 'newcomer', 2, 10_000), true)
      assert.deepEqual(await a.renew([{ key: k, holder: 'late-1', max: 2 }, { key: k, holder: 'late-2', max: 2 }], TTL), [{ key: k, holder: 'late-2' }])
      assert.deepEqual((await b.holders(k)).sort(), ['late-1', 'newcomer'], 'the cap holds: the older lease is back, the newer one is not')
      // With room, an expired lease is simply taken again; a live one is extended whatever max says.
      const free = key('renew-free')
      assert.equal(await a.acquire(free, 'back', 1, TTL), true)
      await sleep(TTL + 50)
      assert.deepEqual(await a.renew([{ key: free, holder: 'back', max: 1 }], TTL), [])
      assert.deepEqual(await b.renew([{ key: free, holder: 'back', max: 0 }], TTL), [])
      assert.deepEqual(await b.holders(free), ['back'])
      await assert.rejects(a.renew([{ key: free, holder: 'back', max: -1 }], TTL), { code: 'ERR_SOCKS_INVALID_ARGUMENT' })
    })

    test('delete removes counters and lease sets; counters and lease sets of one key are apart', async () => {
      const k = key('delete')
      await a.add(k, 4, null)
      assert.equal(await a.acquire(k, 'h', 1, 10_000), true)
      assert.equal(await b.read(k), 4, 'the lease set did not touch the counter')
      await b.delete(k, key('never-there'))
      assert.equal(await a.read(k), 0)
      assert.deepEqual(await a.holders(k), [])
      assert.equal(await a.acquire(k, 'other', 1, 10_000), true)
    })

    test('records: what one side sets the other gets, replaced by the next set; remove says whether there was one', async () => {
      const k = key('record')
      assert.equal(await a.getRecord(k), null)
      await a.setRecord(k, '$scrypt$N=1024,r=8,p=1$salt$hash')
      assert.equal(await b.getRecord(k), '$scrypt$N=1024,r=8,p=1$salt$hash')
      await b.setRecord(k, '')
      assert.equal(await a.getRecord(k), '', 'an empty string is a value, not an absence')
      assert.equal(await a.removeRecord(k), true)
      assert.equal(await b.removeRecord(k), false)
      assert.equal(await b.getRecord(k), null)
      await assert.rejects(a.setRecord(k, 7 as unknown as string), { code: 'ERR_SOCKS_INVALID_ARGUMENT' })
      await assert.rejects(b.getRecord(''), { code: 'ERR_SOCKS_INVALID_ARGUMENT' })
    })

    test('records are apart from counters and lease sets of the same key; delete removes all three', async () => {
      const k = key('record-ns')
      await a.setRecord(k, 'text')
      await a.add(k, 3, null)
      assert.equal(await b.acquire(k, 'h', 1, 10_000), true)
      assert.equal(await b.getRecord(k), 'text')
      assert.equal(await b.read(k), 3)
      await b.delete(k)
      assert.equal(await a.getRecord(k), null)
      assert.equal(await a.read(k), 0)
    })

    test('recordKeys: the keys under a prefix, sorted, bounded by limit; glob characters in the prefix are literal', async () => {
      const base = key('list')
      await Promise.all(['carol', 'alice', 'bob'].map((name, i) => (i % 2 === 0 ? a : b).setRecord(`${base}:user:${name}`, name)))
      await a.setRecord(`${base}:other`, 'x')
      await a.setRecord(`${base}*:user:mallory`, 'not under the prefix')
      assert.deepEqual(await b.recordKeys(`${base}:user:`), ['alice', 'bob', 'carol'].map((name) => `${base}:user:${name}`))
      assert.equal((await a.recordKeys(`${base}:user:`, 2)).length, 2)
      assert.deepEqual(await a.recordKeys(`${base}:nothing`), [])
      await b.removeRecord(`${base}:user:bob`)
      assert.deepEqual(await a.recordKeys(`${base}:user:`), [`${base}:user:alice`, `${base}:user:carol`])
      await assert.rejects(a.recordKeys(base, 0), { code: 'ERR_SOCKS_INVALID_ARGUMENT' })
    })

    test('publish reaches every subscriber, the other side and the publisher alike, in order; unsubscribe stops it', async () => {
      const [channel, barrier] = [key('channel'), key('barrier')]
      const onB: string[] = []
      const onA: string[] = []
      const barrierB: string[] = []
      const stopB = await b.subscribe(channel, (message) => onB.push(message))
      // onGap is for a subscription that was lost and is back: no backend calls it in ordinary delivery.
      let gaps = 0
      const stopA = await a.subscribe(channel, (message) => onA.push(message), { onGap: () => void gaps++ })
      const stopBarrier = await b.subscribe(barrier, (message) => barrierB.push(message))
      await a.publish(channel, 'one')
      await a.publish(channel, 'two')
      await eventually(() => onB.length === 2 && onA.length === 2, 'both subscribers got both messages')
      assert.deepEqual(onB, ['one', 'two'])
      assert.deepEqual(onA, ['one', 'two'])
      await stopB()
      await a.publish(channel, 'three')
      // Published after 'three' to the same process: once it is there, 'three' would have been too.
      await a.publish(barrier, 'after three')
      await eventually(() => barrierB.length === 1 && onA.length === 3, 'the barrier and the last message')
      assert.deepEqual(onB, ['one', 'two'], 'nothing after unsubscribe')
      assert.equal(gaps, 0)
      await stopA()
      await stopBarrier()
    })

    test('now(): the store clock, close to this one', async () => {
      const now = await b.now()
      assert.ok(Math.abs(now - Date.now()) < 1000, `${now} vs ${Date.now()}`)
    })
  })
}
