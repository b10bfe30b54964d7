// The --workers store: this test process is the node:cluster primary (serveClusterStore, as
// `socksmith --workers` runs it) and two real workers open the memory store, which in a worker is
// the primary's. The contract runs with `a` and `b` in the two workers.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { serveClusterStore } from '../../src/store/cluster.js'
import { forkWorkers } from '../helpers/remote-store.js'
import { assertEveryOperationRejects, storeContract } from './contract.js'

storeContract('cluster store (a primary, two workers)', {}, async (scope) => {
  const service = serveClusterStore()
  scope.after(() => service.close())
  const [a, b] = await forkWorkers(scope, 2)
  assert.equal(a?.kind, 'cluster', 'in a worker, the memory store is the primary\'s')
  return { a: a!, b: b! }
})

test('cluster store: with the primary not answering, every operation rejects within the timeout, then works once it answers again', async (t) => {
  let service = serveClusterStore()
  const [worker] = await forkWorkers(t, 1, { type: 'memory', timeout: 300 })
  const store = worker!
  assert.equal(await store.add('up', 1, null), 1)
  await service.close()
  const started = Date.now()
  await assertEveryOperationRejects(store, (name) => new RegExp(`^cluster store: ${name} failed: the --workers primary did not answer within 300 ms$`), 1000)
  assert.ok(Date.now() - started >= 250, 'each waited for its timeout')
  service = serveClusterStore()
  t.after(() => service.close())
  // A new primary store: the state went with the old one, and the workers carry on.
  assert.equal(await store.add('up', 1, null), 1)
})
