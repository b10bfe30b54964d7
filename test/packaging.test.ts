// The package as npm users get it: pack, install the tarball into an empty project, run the CLI,
// and type-check a TypeScript program against the shipped types.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from './helpers/processes.js'

const root = new URL('..', import.meta.url).pathname
const env = { ...process.env, NODE_OPTIONS: '' }

test('npm pack → install into an empty project → CLI runs and the types check', { timeout: 180_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'socksmith-pack-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const packed = await run('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: root, env, timeout: 60_000 })
  assert.equal(packed.code, 0, packed.stderr)
  const tarball = join(dir, packed.stdout.trim().split('\n').pop()!)
  const project = join(dir, 'app')
  await run('mkdir', ['-p', project])
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }))
  const installed = await run('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', tarball], { cwd: project, env, timeout: 120_000 })
  assert.equal(installed.code, 0, installed.stderr)

  const help = await run('npx', ['--no-install', 'socksmith', '--help'], { cwd: project, env })
  assert.equal(help.code, 0, help.stderr)
  assert.match(help.stdout, /Usage: socksmith/)

  writeFileSync(join(project, 'main.ts'), `
import { createServer, SocksError, type ConnectContext } from 'socksmith'
import auth from 'socksmith/plugins/auth'
import rules from 'socksmith/plugins/rules'
import { socksConnect } from 'socksmith/client'
import { parseRequest, Reply } from 'socksmith/protocol'

const server = createServer({ timeouts: { idle: 60_000 } })
server.register(auth, { users: { alice: 'secret' } })
server.register(rules, { rules: [{ action: 'deny', to: 'private' }] })
server.use('connect', async (ctx: ConnectContext, next) => {
  if (ctx.destination.port === 25) throw new SocksError('ERR_SOCKS_NOT_ALLOWED')
  await next()
})
const reply: number = Reply.NOT_ALLOWED
void [socksConnect, parseRequest, reply]
`)
  const tsc = join(root, 'node_modules/typescript/bin/tsc')
  const checked = await run(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022',
    '--types', 'node', '--typeRoots', join(root, 'node_modules/@types'), '--skipLibCheck', 'false', 'main.ts'], { cwd: project, env, timeout: 60_000 })
  assert.equal(checked.code, 0, checked.stdout + checked.stderr)

  const imported = await run(process.execPath, ['--input-type=module', '-e', "import('socksmith').then(m => console.log(typeof m.createServer))"], { cwd: project, env })
  assert.equal(imported.stdout.trim(), 'function', imported.stderr)
})
