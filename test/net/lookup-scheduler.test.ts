// The system resolver's threads are shared out so that no client, and no flood of datagrams, takes them all.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { LookupScheduler, threadPoolSize } from '../../src/net/lookup-scheduler.js'

/** A lookup the test answers by hand, as a slow nameserver would. */
function manualLookup(log: string[], name: string): { run: () => Promise<string>; answer: () => void } {
  let answer: () => void = () => {}
  const started = new Promise<void>((resolve) => {
    answer = resolve
  })
  return {
    run: () => {
      log.push(name)
      return started.then(() => name)
    },
    answer: () => answer(),
  }
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

test('slots: one less than the pool; a client gets at most half; datagrams at most half', async () => {
  assert.equal(new LookupScheduler(4).slots, 2)
  assert.equal(new LookupScheduler(1).slots, 1)
  assert.equal(new LookupScheduler(16).slots, 8)
  const scheduler = new LookupScheduler(16) // 8 slots: 4 per client, 4 for datagrams
  const log: string[] = []
  const lookups = Array.from({ length: 6 }, (_, i) => manualLookup(log, `a${i}`))
  for (const l of lookups) void scheduler.schedule(l.run, { client: 'A' }, undefined)
  await tick()
  assert.deepEqual(log, ['a0', 'a1', 'a2', 'a3'], 'client A runs 4 of 8')
  const datagrams = Array.from({ length: 6 }, (_, i) => manualLookup(log, `d${i}`))
  for (const l of datagrams) void scheduler.schedule(l.run, { client: 'B', kind: 'datagram' }, undefined)
  await tick()
  assert.deepEqual(log.slice(4), ['d0', 'd1', 'd2', 'd3'], 'datagrams (client B) run 4 of 8')
  assert.equal(scheduler.running, 8)
  // A third client's CONNECT waits for the first free slot, ahead of A's and B's backlog.
  const c = manualLookup(log, 'c0')
  const cDone = scheduler.schedule(c.run, { client: 'C' }, undefined)
  lookups[0]!.answer()
  await tick()
  assert.equal(log.at(-1), 'c0')
  c.answer()
  assert.equal(await cDone, 'c0')
})

test('a slot is held until the lookup settles, even when its caller gave up', async () => {
  const scheduler = new LookupScheduler(4) // 2 slots, 1 per client
  const log: string[] = []
  const controller = new AbortController()
  const hung = manualLookup(log, 'hung')
  const first = scheduler.schedule(hung.run, { client: 'A' }, controller.signal)
  const queued = manualLookup(log, 'queued')
  const waiting = scheduler.schedule(queued.run, { client: 'A' }, controller.signal)
  await tick()
  assert.deepEqual(log, ['hung'])
  controller.abort(new Error('caller left'))
  await assert.rejects(waiting, /caller left/)
  assert.equal(scheduler.waiting, 0, 'an aborted waiter leaves the queue')
  assert.equal(scheduler.running, 1, 'the running lookup still holds its thread')
  hung.answer()
  assert.equal(await first, 'hung')
  await tick()
  assert.equal(scheduler.running, 0)
  assert.deepEqual(log, ['hung'], 'the aborted lookup never ran')
})

test('waiters start round-robin across clients', async () => {
  const scheduler = new LookupScheduler(4) // 2 slots, 1 per client
  const log: string[] = []
  const blockers = [manualLookup(log, 'X'), manualLookup(log, 'Y')]
  void scheduler.schedule(blockers[0]!.run, { client: 'X' }, undefined)
  void scheduler.schedule(blockers[1]!.run, { client: 'Y' }, undefined)
  const a = Array.from({ length: 3 }, (_, i) => manualLookup(log, `a${i}`))
  const b = Array.from({ length: 3 }, (_, i) => manualLookup(log, `b${i}`))
  for (const l of a) void scheduler.schedule(l.run, { client: 'A' }, undefined)
  for (const l of b) void scheduler.schedule(l.run, { client: 'B' }, undefined)
  blockers[0]!.answer()
  blockers[1]!.answer()
  await tick()
  assert.deepEqual(log.slice(2), ['a0', 'b0'])
  a[0]!.answer()
  b[0]!.answer()
  await tick()
  assert.deepEqual(log.slice(4), ['a1', 'b1'])
})

test('threadPoolSize reads UV_THREADPOOL_SIZE', () => {
  assert.equal(threadPoolSize({}), 4)
  assert.equal(threadPoolSize({ UV_THREADPOOL_SIZE: '16' }), 16)
  assert.equal(threadPoolSize({ UV_THREADPOOL_SIZE: 'x' }), 4)
  assert.equal(threadPoolSize({ UV_THREADPOOL_SIZE: '5000' }), 1024)
})
