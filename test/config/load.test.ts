// loadConfig: finding the file, every format, defaults, plugin resolution (bundled, file, npm, inline).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { loadConfig, isSocksError, DEFAULT_TIMEOUTS } from 'socksmith'
import { createServerFromConfig } from 'socksmith/config'
import { startEcho, waitFor } from '../helpers/net.js'
import { echoThrough } from '../helpers/spawn.js'
import { project, write } from './helpers.js'

const FORMATS: [file: string, content: string][] = [
  ['package.json', JSON.stringify({ name: 'app', socksmith: { limits: { perClient: 7 } } })],
  ['.socksmithrc', 'limits:\n  perClient: 7\n'],
  ['.socksmithrc.json', '{ "limits": { "perClient": 7 } }'],
  ['.socksmithrc.yaml', 'limits: { perClient: 7 }\n'],
  ['.socksmithrc.yml', 'limits: { perClient: 7 }\n'],
  ['.socksmithrc.mjs', 'export default { limits: { perClient: 7 } }\n'],
  ['.socksmithrc.cjs', 'module.exports = { limits: { perClient: 7 } }\n'],
  ['.socksmithrc.ts', "import { defineConfig } from 'socksmith'\nexport default defineConfig({ limits: { perClient: 7 } })\n"],
  ['socksmith.config.js', 'export default { limits: { perClient: 7 } }\n'],
  ['socksmith.config.mjs', 'export default { limits: { perClient: 7 } }\n'],
  ['socksmith.config.cjs', 'module.exports = { limits: { perClient: 7 } }\n'],
  ['socksmith.config.ts', "import { defineConfig, type SocksmithConfig } from 'socksmith'\nconst config: SocksmithConfig = { limits: { perClient: 7 } }\nexport default defineConfig(config)\n"],
  ['socksmith.config.yaml', 'limits: { perClient: 7 }\n'],
  ['socksmith.config.json', '{ "limits": { "perClient": 7 } }'],
]

test('every config file format is found by searching the working directory', async (t) => {
  await Promise.all(
    FORMATS.map(async ([file, content]) => {
      // socksmith.config.js is ESM only in a "type": "module" package.
      const files: Record<string, string> = file === 'socksmith.config.js' ? { 'package.json': '{ "type": "module" }' } : {}
      const dir = project(t, { ...files, [file]: content })
      const loaded = await loadConfig({ cwd: dir })
      assert.equal(loaded.filepath, join(dir, file), file)
      assert.equal(loaded.displayName, file)
      assert.equal(loaded.config.limits.perClient, 7, file)
    }),
  )
})

test('a TypeScript config in a folder without "type": "module" loads too', async (t) => {
  const dir = project(t, { 'conf/proxy.ts': "import { defineConfig } from 'socksmith'\nconst port: number = 0\nexport default defineConfig({ listen: { port } })\n" })
  const loaded = await loadConfig({ file: 'conf/proxy.ts', cwd: dir })
  assert.equal(loaded.displayName, join('conf', 'proxy.ts'))
  assert.deepEqual(loaded.config.listen, [{ host: '127.0.0.1', port: 0 }])
})

test('no config file: the defaults', async (t) => {
  const loaded = await loadConfig({ cwd: project(t) })
  assert.equal(loaded.filepath, null)
  assert.deepEqual(loaded.config, {
    listen: [{ host: '127.0.0.1', port: 1080 }],
    limits: { maxConnections: 10_000, perClient: 0, clientPrefix: { ipv4: 32, ipv6: 64 } },
    timeouts: { ...DEFAULT_TIMEOUTS },
    log: { level: 'info', access: true },
    metrics: null,
    allowOpenProxy: false,
    udp: { acceptFromAnyPeer: false, maxSendQueue: 1024, maxAssociationsPerClient: 64 },
    store: { type: 'memory' },
    plugins: [],
  })
})

test('every key is read: listeners, limits, timeouts with units, log, udp', async (t) => {
  const dir = project(t, {
    'socksmith.config.yaml': `
listen:
  - { host: 127.0.0.1, port: 1081 }
  - { host: "::1", port: 1082, ipv6Only: true, backlog: 64 }
limits: { maxConnections: 500, perClient: 20, clientPrefix: { ipv6: 56 } }
timeouts: { handshake: 250ms, connect: 5s, idle: 5m, bindAccept: 1.5s, udpIdle: 1h, drain: 3000 }
log: { level: debug }
allowOpenProxy: true
udp: { acceptFromAnyPeer: true, maxSendQueue: 16 }
`,
  })
  const { config } = await loadConfig({ cwd: dir })
  assert.deepEqual(config.listen, [
    { host: '127.0.0.1', port: 1081 },
    { host: '::1', port: 1082, ipv6Only: true, backlog: 64 },
  ])
  assert.deepEqual(config.limits, { maxConnections: 500, perClient: 20, clientPrefix: { ipv4: 32, ipv6: 56 } })
  assert.deepEqual(config.timeouts, { handshake: 250, connect: 5000, idle: 300_000, bindAccept: 1500, udpIdle: 3_600_000, drain: 3000 })
  assert.equal(config.log.level, 'debug')
  assert.equal(config.allowOpenProxy, true)
  assert.deepEqual(config.udp, { acceptFromAnyPeer: true, maxSendQueue: 16, maxAssociationsPerClient: 64 })
  const server = createServerFromConfig({ filepath: null, displayName: 'x', config })
  assert.equal(server.maxConnectionsPerClient, 20)
  assert.deepEqual(server.clientPrefix, { ipv4: 32, ipv6: 56 })
  assert.equal(server.timeouts.idle, 300_000)
})

test('udp.maxAssociationsPerClient (documented in the README) is accepted and reaches the server', async (t) => {
  const loaded = await loadConfig({ config: { udp: { maxAssociationsPerClient: 2 } }, cwd: project(t) })
  assert.equal(loaded.config.udp.maxAssociationsPerClient, 2)
  const server = createServerFromConfig(loaded)
  t.after(() => server.close({ drainTimeout: 0 }))
  assert.equal(server.settings.udp.maxAssociationsPerClient, 2)
  await assert.rejects(
    loadConfig({ config: { udp: { maxAssociationsPerClient: 0 } }, cwd: project(t) }),
    (err: unknown) => isSocksError(err) && err.message === 'config: udp.maxAssociationsPerClient: expected an integer from 1 up, found number 0',
  )
})

test('plugins resolve as bundled names, files next to the config, and npm packages from its folder', async (t) => {
  const dir = project(t, {
    'conf/socksmith.config.yaml': `plugins:
  - dns-cache
  - ./plugins/tag.js
  - ./plugins/noext
  - ../shared/typed.ts
  - cjs-plugin
  - esm-only-plugin
  - "@acme/socksmith-plugin"
`,
    'conf/plugins/tag.js': "export default { name: 'tag', setup() {} }\n",
    'conf/plugins/noext.mjs': "export default { name: 'noext', setup() {} }\n",
    'shared/typed.ts': "import { definePlugin } from 'socksmith'\nconst name: string = 'typed'\nexport default definePlugin({ name, setup() {} })\n",
    'node_modules/cjs-plugin/package.json': '{ "name": "cjs-plugin", "main": "lib.js" }',
    'node_modules/cjs-plugin/lib.js': "module.exports = { name: 'cjs', setup() {} }\n",
    'node_modules/esm-only-plugin/package.json': '{ "name": "esm-only-plugin", "type": "module", "exports": { ".": { "import": "./index.js" } } }',
    'node_modules/esm-only-plugin/index.js': "export default { name: 'esm-only', setup() {} }\n",
    'node_modules/@acme/socksmith-plugin/package.json': '{ "name": "@acme/socksmith-plugin", "type": "module", "exports": "./main.js" }',
    'node_modules/@acme/socksmith-plugin/main.js': "export default { name: 'acme/geo', setup() {} }\n",
  })
  const loaded = await loadConfig({ file: 'conf/socksmith.config.yaml', cwd: dir })
  assert.deepEqual(
    loaded.config.plugins.map((p) => [p.label, p.source]),
    [
      ['plugins[0] (dns-cache)', 'bundled'],
      ['plugins[1] (tag)', join(dir, 'conf/plugins/tag.js')],
      ['plugins[2] (noext)', join(dir, 'conf/plugins/noext.mjs')],
      ['plugins[3] (typed)', join(dir, 'shared/typed.ts')],
      ['plugins[4] (cjs)', 'cjs-plugin'],
      ['plugins[5] (esm-only)', 'esm-only-plugin'],
      ['plugins[6] (acme/geo)', '@acme/socksmith-plugin'],
    ],
  )
})

test('a JS config may list plugin objects and plain middleware inline', async (t) => {
  const echo = await startEcho(t)
  const dir = project(t, {
    'socksmith.config.mjs': `
import { definePlugin } from 'socksmith'
// The test reads this list; a registered symbol reaches across the loader's module instance.
const seen = (globalThis[Symbol.for('socksmith.test.seen')] = [])
const count = definePlugin({
  name: 'count',
  parseOptions(raw, at) {
    if (typeof raw?.label !== 'string') at.fail('label', 'must be a string')
    return raw
  },
  setup(host, options) {
    host.use('request', async function countRequests(ctx, next) {
      seen.push(options.label + ':' + ctx.destination.port)
      await next()
    })
  },
})
export default {
  listen: { port: 0 },
  log: { level: 'silent' },
  plugins: [
    [count, { label: 'a' }],
    { phase: 'connect', name: 'mark', middleware: async function mark(ctx, next) { seen.push('connect'); await next() } },
    { phase: 'relay', middleware: [async (ctx, next) => { await next(); seen.push('relayed') }] },
  ],
}
`,
  })
  const loaded = await loadConfig({ cwd: dir })
  assert.deepEqual(loaded.config.plugins.map((p) => p.label), ['plugins[0] (count)', 'plugins[1] (mark)', 'plugins[2] (inline-relay-2)'])
  const server = createServerFromConfig(loaded)
  t.after(() => server.close({ drainTimeout: 0 }))
  const { port } = await server.listen(loaded.config.listen[0])
  assert.equal(await echoThrough(port, echo.port), 'ping')
  const seen = (globalThis as Record<symbol, string[]>)[Symbol.for('socksmith.test.seen')] as string[]
  // The relay middleware's code after next() runs as the connection closes.
  await waitFor(() => seen.length === 3)
  assert.deepEqual(seen, [`a:${echo.port}`, 'connect', 'relayed'])
})

test('a reload imports JS/TS configs and local plugin files afresh', async (t) => {
  const dir = project(t, {
    'socksmith.config.ts': "export default { limits: { perClient: 1 }, plugins: ['./p.mjs', './q.ts'] }\n",
    'p.mjs': "export default { name: 'first', setup() {} }\n",
    'q.ts': "const name: string = 'first-ts'\nexport default { name, setup() {} }\n",
  })
  const first = await loadConfig({ cwd: dir })
  write(dir, {
    'socksmith.config.ts': "export default { limits: { perClient: 2 }, plugins: ['./p.mjs', './q.ts'] }\n",
    'p.mjs': "export default { name: 'second', setup() {} }\n",
    'q.ts': "const name: string = 'second-ts'\nexport default { name, setup() {} }\n",
  })
  const second = await loadConfig({ cwd: dir })
  assert.equal(first.config.limits.perClient, 1)
  assert.equal(second.config.limits.perClient, 2)
  assert.deepEqual(first.config.plugins.map((p) => p.plugin.name), ['first', 'first-ts'])
  assert.deepEqual(second.config.plugins.map((p) => p.plugin.name), ['second', 'second-ts'])
})

test('a config object instead of a file (a program\'s own settings)', async (t) => {
  const loaded = await loadConfig({ config: { listen: { port: 0 }, timeouts: { idle: '2m' }, plugins: ['rules'] } as never, cwd: project(t) })
  assert.equal(loaded.filepath, null)
  assert.equal(loaded.config.timeouts.idle, 120_000)
  assert.throws(
    () => createServerFromConfig(loaded),
    (err: unknown) => isSocksError(err) && err.code === 'ERR_PLUGIN_OPTIONS' && /^config: plugins\[0\] \(rules\): /.test(err.message),
  )
})
