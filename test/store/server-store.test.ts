// host.store on a server: created from the `store` option when a plugin first reads it, the same
// across reloads, closed after the drain (after the plugins' close hooks); the config's `store:`
// is checked like every other key; and under `socksmith --workers 2` the workers share one store.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createServer, createStore, definePlugin, isSocksError, loadConfig, type SharedStore } from 'socksmith'
import { createServerFromConfig, reloadFromConfig } from 'socksmith/config'
import { silentLogger } from 'socksmith/ops'
import { printableConfig } from '../../src/config/print.js'
import { project, write } from '../config/helpers.js'
import { startEcho } from '../helpers/net.js'
import { run } from '../helpers/processes.js'
import { CLI, echoThrough, listeningPort, ROOT, start, tempDir } from '../helpers/spawn.js'

/** A plugin that hands out the store it was given, and writes to it in its close hook. */
function probe(seen: SharedStore[], closed: unknown[] = []) {
  return definePlugin({
    name: 'store-probe',
    setup(host) {
      const store = host.store
      seen.push(store)
      host.onClose(async () => {
        // The store is still open in the close hooks: a plugin may write its last counts there.
        closed.push(await store.add('closed', 1, null).catch((err: Error) => err.message))
      })
    },
  })
}

test('host.store: memory by default, the same store across a reload, closed after the close hooks', async () => {
  const seen: SharedStore[] = []
  const closed: unknown[] = []
  const server = createServer({ logLevel: 'silent' }).register(probe(seen, closed))
  await server.listen({ port: 0 })
  const store = seen[0] as SharedStore
  assert.equal(store.kind, 'memory')
  assert.equal(server.store, store)
  await store.add('hits', 2, null)
  const next = createServer({ logLevel: 'silent' }).register(probe(seen))
  await server.reload(next)
  assert.equal(seen[1], store, 'the reloaded pipeline\'s plugins see the counts of the old ones')
  assert.equal(await (seen[1] as SharedStore).read('hits'), 2)
  await server.close()
  assert.deepEqual(closed, [1], 'the close hook wrote before the store closed')
  await assert.rejects(store.read('closed'), { code: 'ERR_SOCKS_STORE' })
})

test('host.store: a store passed in is used as it is and stays open (it is the caller\'s); bad options fail createServer', async () => {
  const mine = createStore()
  const seen: SharedStore[] = []
  const server = createServer({ logLevel: 'silent', store: mine }).register(probe(seen))
  await server.prepare()
  assert.equal(seen[0], mine)
  await server.close()
  assert.equal(await mine.read('closed'), 1, 'open after server.close(): the close hook wrote, and it can be read')
  await mine.close()
  assert.throws(() => createServer({ store: { type: 'redis', url: 'http://127.0.0.1:6379' } }), (err) => {
    assert.ok(isSocksError(err))
    assert.equal(err.code, 'ERR_SOCKS_INVALID_ARGUMENT')
    assert.match(err.message, /^store\.url: "http:\/\/127\.0\.0\.1:6379": expected the scheme redis:\/\/ or rediss:\/\//)
    return true
  })
  assert.throws(() => createServer({ store: { type: 'disk' } as never }), /store\.type: expected memory or redis, found "disk"/)
})

test('config store: every problem in one pass, each naming its field; a password in the URL is never shown', async (t) => {
  const dir = project(t, {
    'socksmith.config.yaml': 'store: { type: redis, url: "ftp://user:hunter2@cache:6379", prefx: "a:", timeout: soon }\nlimits: { maxConnections: 0 }\n',
  })
  const err = await loadConfig({ file: 'socksmith.config.yaml', cwd: dir }).then(
    () => assert.fail('expected the config to be rejected'),
    (e: unknown) => e as Error,
  )
  const lines = err.message.split('\n')
  assert.deepEqual(lines, [
    'socksmith.config.yaml: limits.maxConnections: expected an integer from 1 up, found number 0',
    'socksmith.config.yaml: store.timeout: expected milliseconds or a duration such as "500ms", "2s", found "soon"',
    'socksmith.config.yaml: store.prefx: unknown key; did you mean "prefix"?',
    'socksmith.config.yaml: store.url: "ftp://***@cache:6379": expected the scheme redis:// or rediss://, found ftp://',
  ])
  assert.doesNotMatch(err.message, /hunter2/)
  write(dir, { 'socksmith.config.yaml': 'store: { type: redis }\n' })
  await assert.rejects(loadConfig({ file: 'socksmith.config.yaml', cwd: dir }), { message: 'socksmith.config.yaml: store.url: is required: redis://host:port (or rediss:// for TLS)' })
})

test('config store: durations, --print-config masks the password, and a changed store: takes a restart', async (t) => {
  const dir = project(t, { 'socksmith.config.yaml': 'listen: { port: 0 }\nstore: { type: redis, url: "redis://:hunter2@127.0.0.1:1/2", timeout: 250ms }\n' })
  const loaded = await loadConfig({ file: 'socksmith.config.yaml', cwd: dir })
  assert.deepEqual(loaded.config.store, { type: 'redis', url: 'redis://:hunter2@127.0.0.1:1/2', timeout: 250 })
  assert.doesNotMatch(JSON.stringify(printableConfig(loaded).store), /hunter2/)
  const server = createServerFromConfig(loaded, { logger: silentLogger })
  t.after(() => server.close({ drainTimeout: 0 }))
  assert.equal(server.store.kind, 'redis')
  await server.listen({ port: 0 })
  write(dir, { 'socksmith.config.yaml': 'listen: { port: 0 }\n' })
  const result = await reloadFromConfig(server, loaded, { logger: silentLogger })
  assert.deepEqual(result.needsRestart, ['store'])
  assert.equal(server.store.kind, 'redis', 'the running store stays until the restart')
})

test('socksmith --workers 2: both workers\' plugins share the primary\'s store', async (t) => {
  const echo = await startEcho(t)
  const dir = tempDir(t)
  // Each worker's setup counts itself in; a connection passes only when the count it reads is 2,
  // which it can only be when both workers wrote into one store.
  writeFileSync(
    join(dir, 'shared-count.mjs'),
    `export default {
  name: 'shared-count',
  async setup(host) {
    if (process.env.SOCKSMITH_CLUSTER_WORKER === '1') await host.store.add('workers', 1, null)
    host.use('request', async function requireBothWorkers(ctx, next) {
      const workers = await host.store.read('workers')
      if (host.store.kind !== 'cluster' || workers !== 2) throw new Error(host.store.kind + ' store, ' + workers + ' worker(s) counted')
      await next()
    })
  },
}
`,
  )
  writeFileSync(join(dir, 'socksmith.yaml'), 'listen: { port: 0 }\nlog: { level: info }\nplugins: [./shared-count.mjs]\n')
  const running = start(t, process.execPath, [CLI, '--config', join(dir, 'socksmith.yaml'), '--workers', '2', '--pid-file', join(dir, 'pid')])
  const port = await listeningPort(running, 30_000)
  // Written once every worker is ready: both setups have run.
  await running.errLine(/pid \d+ written to /, 30_000)
  for (let i = 0; i < 4; i++) assert.equal(await echoThrough(port, echo.port, { payload: `s${i}` }), `s${i}`, running.stderr())
  running.child.kill('SIGTERM')
  assert.equal((await running.exited).code, 0)
})

test('a server that uses no Redis store never loads ioredis; the first operation of a Redis store does', async () => {
  // A process of its own: this one has loaded ioredis already, or will.
  const program = `
import { createRequire } from 'node:module'
import { createServer, createStore } from 'socksmith'
const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((path) => path.includes('/node_modules/ioredis/'))
const server = createServer({ logLevel: 'silent' })
await server.listen({ port: 0 })
await server.store.add('hits', 1, null)
const before = loaded()
const redis = createStore({ type: 'redis', url: 'redis://127.0.0.1:1', timeout: 200 })
const created = loaded()
await redis.read('hits').catch(() => {})
console.log(JSON.stringify({ before, created, after: loaded() }))
await redis.close()
await server.close()
`
  const result = await run(process.execPath, ['--input-type=module', '-e', program], { cwd: ROOT })
  assert.equal(result.code, 0, result.stderr)
  assert.deepEqual(JSON.parse(result.stdout), { before: false, created: false, after: true })
})
