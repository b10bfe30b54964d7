// The CLI survives what user code leaves behind: a throw in a timer, a rejection nobody observes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startEcho } from './helpers/net.js'
import { echoThrough, listeningPort, startCli, stop, tempDir } from './helpers/spawn.js'

test('a throw in a middleware\'s timer and an unhandled rejection are logged; the CLI keeps serving', async (t) => {
  const echo = await startEcho(t)
  const dir = tempDir(t)
  writeFileSync(
    join(dir, 'careless.mjs'),
    `export default {
  name: 'careless',
  setup(host) {
    host.use('connect', async function careless(ctx, next) {
      setTimeout(() => { throw new Error('boom in a timer') }, 0)
      Promise.reject(new Error('nobody listens'))
      await next()
    })
  },
}
`,
  )
  writeFileSync(join(dir, 'socksmith.config.yaml'), 'log:\n  level: warn\n  access: false\nplugins:\n  - ./careless.mjs\n')
  const cli = startCli(t, ['--port', '0'], { cwd: dir })
  const port = await listeningPort(cli)
  assert.equal(await echoThrough(port, echo.port, { payload: 'first' }), 'first')
  // One JSON line each: the error (with its stack) and what the CLI did about it.
  await cli.errLine(/boom in a timer.*uncaught exception in user code \(uncaughtException\); still serving/)
  await cli.errLine(/nobody listens.*unhandled promise rejection in user code; still serving/)
  // Still serving after both.
  assert.equal(await echoThrough(port, echo.port, { payload: 'second' }), 'second')
  assert.equal(cli.child.exitCode, null)
  await stop(cli)
})
