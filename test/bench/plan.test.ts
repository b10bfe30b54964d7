// What a benchmark run measures (bench/plan.ts): which variants, freshly started processes, each
// server gets for the tests named with --tests, and that an unknown test name is refused.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { measuresOpenConnections, parseTests, TESTS, variantsOf, type PlanSpec } from '../../bench/plan.js'

const socksmith: PlanSpec = { socks: true, http: true, mixed: true, full: true, noAuth: null }
const proxyChain: PlanSpec = { socks: false, http: true, mixed: false, full: false, noAuth: null }
const microsocks: PlanSpec = { socks: true, http: false, mixed: false, full: false, noAuth: null }
const direct: PlanSpec = { socks: true, http: true, mixed: false, full: false, noAuth: '' }

test('--tests: every listed test is taken, an unknown one is refused by name', () => {
  assert.deepEqual([...parseTests(undefined)], [...TESTS])
  assert.deepEqual([...parseTests('http-connect, http-forward,mixed')], ['http-connect', 'http-forward', 'mixed'])
  assert.throws(() => parseTests('connect,http-conect'), /unknown test "http-conect"; tests are .*http-connect/)
})

test('the HTTP rows run an HTTP-only proxy in its http variants and never in a SOCKS5 one', () => {
  const all = parseTests(undefined)
  assert.deepEqual(variantsOf(proxyChain, all), ['http', 'http-auth'])
  assert.deepEqual(variantsOf(microsocks, all), ['open', 'auth'])
  assert.deepEqual(variantsOf(socksmith, all), ['open', 'auth', 'full', 'limits', 'http', 'http-auth'])
  // The harness ceiling has no authentication, so no auth variant of either kind.
  assert.deepEqual(variantsOf(direct, all), ['open', 'http'])
  assert.deepEqual(variantsOf(proxyChain, parseTests('connect,udp')), [])
  assert.deepEqual(variantsOf(microsocks, parseTests('http-connect,http-stream')), [])
  assert.deepEqual(variantsOf(socksmith, parseTests('http-stream')), ['http'])
  assert.deepEqual(variantsOf(proxyChain, parseTests('http-auth')), ['http-auth'])
})

test('mixed is read against the socks5-only listener: it brings the open variant and its IP connection row', () => {
  const mixed = parseTests('mixed')
  assert.deepEqual(variantsOf(socksmith, mixed), ['open', 'http'])
  assert.equal(measuresOpenConnections(socksmith, mixed), true)
  // Only socksmith's CLI has a mixed listener: nothing to measure for the others.
  assert.deepEqual(variantsOf(proxyChain, mixed), [])
  assert.deepEqual(variantsOf(microsocks, mixed), [])
  assert.equal(measuresOpenConnections(microsocks, parseTests('mixed,down')), false)
  assert.equal(measuresOpenConnections(microsocks, parseTests('connect')), true)
})
