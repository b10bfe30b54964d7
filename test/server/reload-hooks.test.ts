// The plugin reload hook: a plugin of the new pipeline learns what its predecessor handed over and
// can end what the new configuration no longer allows, without the core knowing the plugin.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, definePlugin, SocksError, type PluginReload, type ServerHandle, type SocksServer } from 'socksmith'
import { silentLogger } from 'socksmith/ops'
import { RawClient, hex, startSocks } from '../helpers/net.js'

function memoryPlugin(generation: number, seen: { generation: number; previous: unknown; server: ServerHandle }[], failSetup = false) {
  return definePlugin({
    name: 'memory',
    setup(host) {
      if (failSetup) throw new Error('setup refused')
      host.handOver({ generation })
      host.onReload((reload: PluginReload) => void seen.push({ generation, previous: reload.previous, server: reload.server }))
    },
  })
}

const next = (...plugins: ReturnType<typeof memoryPlugin>[]): SocksServer => {
  const server = createServer({ logger: silentLogger })
  for (const plugin of plugins) server.register(plugin)
  return server
}

test('onReload runs when the pipeline goes live, with what the same plugin of the replaced one handed over', async (t) => {
  const seen: { generation: number; previous: unknown; server: ServerHandle }[] = []
  const { server } = await startSocks(t, {}, (s) => s.register(memoryPlugin(1, seen)))
  assert.equal(seen.length, 0, 'not at the first start')

  assert.deepEqual(await server.reload(next(memoryPlugin(2, seen))), { closed: 0 })
  assert.equal(seen.length, 1)
  assert.deepEqual(seen[0]!.previous, { generation: 1 })
  assert.equal(seen[0]!.server, server, 'the hook gets the live server')

  await assert.rejects(server.reload(next(memoryPlugin(3, seen, true))), /setup refused/)
  assert.equal(seen.length, 1, 'a failed reload runs no hook')
  await server.reload(next(memoryPlugin(4, seen)))
  assert.deepEqual(seen[1]!.previous, { generation: 2 }, 'and hands nothing over: the live pipeline is still generation 2')

  await server.reload(next())
  await server.reload(next(memoryPlugin(5, seen)))
  assert.equal(seen[2]!.previous, undefined, 'a plugin missing from the pipeline in between has no predecessor')
})

test('connections a reload hook ends are counted in the result; a hook that throws is logged and the reload stands', async (t) => {
  const errors: string[] = []
  const logger = { error: (m: string) => void errors.push(m), warn() {}, info() {}, debug() {} }
  const { server, port } = await startSocks(t, { logger })
  const live = await RawClient.connect(t, port)
  live.send('050100')
  assert.deepEqual(await live.read(2), hex('0500'))

  const reloaded = createServer({ logger: silentLogger })
  reloaded.register(definePlugin({ name: 'breaks', setup: (host) => host.onReload(() => Promise.reject(new Error('hook broke'))) }))
  reloaded.register(definePlugin({ name: 'closes-all', setup: (host) => host.onReload(({ destroyConnections }) => void destroyConnections(() => true)) }))
  reloaded.use('negotiate', async function refuseEveryone() {
    throw new SocksError('ERR_SOCKS_NOT_ALLOWED', 'the new pipeline is live')
  })
  assert.deepEqual(await server.reload(reloaded), { closed: 1 })
  await live.expectClose()
  assert.equal(errors.length, 1)
  assert.match(errors[0]!, /^plugin breaks: reload hook failed/)
  const after = await RawClient.connect(t, port)
  after.send('050100')
  assert.deepEqual(await after.expectClose(), hex('05ff'), 'new connections get the new pipeline')
})
