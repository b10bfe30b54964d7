// The config keys of the operations features: log.access and metrics.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isSocksError, loadConfig, type SocksmithConfig } from 'socksmith'
import { createServerFromConfig } from 'socksmith/config'
import { printableConfig } from '../../src/config/print.js'

async function rejection(config: unknown): Promise<string[]> {
  try {
    await loadConfig({ config: config as SocksmithConfig })
  } catch (err) {
    assert.ok(isSocksError(err))
    assert.equal(err.code, 'ERR_CONFIG_INVALID')
    return err.message.split('\n')
  }
  assert.fail('expected the config to be rejected')
}

test('log.access defaults to true and reaches the server; metrics defaults to none', async () => {
  const loaded = await loadConfig({ config: {} })
  assert.deepEqual(loaded.config.log, { level: 'info', access: true })
  assert.equal(loaded.config.metrics, null)
  const server = createServerFromConfig(loaded)
  assert.equal(server.accessLog, true)
  await server.close({ drainTimeout: 0 })

  const quiet = await loadConfig({ config: { log: { access: false } } })
  const quietServer = createServerFromConfig(quiet)
  assert.equal(quietServer.accessLog, false)
  await quietServer.close({ drainTimeout: 0 })
})

test('metrics: host defaults to 127.0.0.1, perUser to false (true: 100 users); shown by --print-config', async () => {
  const loaded = await loadConfig({ config: { metrics: { port: 9464 } } })
  assert.deepEqual(loaded.config.metrics, { host: '127.0.0.1', port: 9464, perUser: false })
  const full = await loadConfig({ config: { metrics: { host: '::1', port: 0, perUser: true } } })
  assert.deepEqual(full.config.metrics, { host: '::1', port: 0, perUser: { maxUsers: 100 } })
  assert.deepEqual(printableConfig(full).metrics, { host: '::1', port: 0, perUser: { maxUsers: 100 } })
  const capped = await loadConfig({ config: { metrics: { port: 0, perUser: { maxUsers: 5 } } } })
  assert.deepEqual(capped.config.metrics?.perUser, { maxUsers: 5 })
})

test('bad log.access and metrics values are reported with their path, all at once', async () => {
  assert.deepEqual(await rejection({ log: { access: 'yes' } }), ['config: log.access: expected true or false, found "yes"'])
  assert.deepEqual(await rejection({ metrics: {} }), ['config: metrics.port: is required: the port of the metrics listener (0 picks a free one)'])
  assert.deepEqual(await rejection({ metrics: { port: 70000, host: '', perUser: 1, path: '/m' } }), [
    'config: metrics.path: unknown key (known keys: host, port, perUser)',
    'config: metrics.port: expected an integer from 0 to 65535, found number 70000',
    'config: metrics.host: expected an address such as 127.0.0.1 or ::1, found ""',
    'config: metrics.perUser: expected true, false or { maxUsers }, found number 1',
  ])
  assert.deepEqual(await rejection({ metrics: { port: 0, perUser: { maxUsers: 0 } } }), ['config: metrics.perUser.maxUsers: expected an integer from 1 up, found number 0'])
  assert.deepEqual(await rejection({ metrics: { port: 0, perUser: { maxUser: 5 } } }), ['config: metrics.perUser.maxUser: unknown key; did you mean "maxUsers"?'])
  assert.deepEqual(await rejection({ metrics: 9464 }), ['config: metrics: expected an object with host, port, perUser, found number 9464'])
  assert.deepEqual(await rejection({ metric: { port: 1 } }), ['config: metric: unknown key; did you mean "metrics"?'])
})
