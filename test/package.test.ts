// The package as users get it: the built files reached through the exports map (no `source` condition).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { run } from './helpers/processes.js'

const root = new URL('..', import.meta.url).pathname
const env = { ...process.env, NODE_OPTIONS: '' }

test('every entry of the exports map loads from dist by the package name', async () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { exports: Record<string, unknown> }
  const plugins = ['auth', 'rules', 'dns-cache', 'upstream', 'limits']
  const entries = Object.keys(pkg.exports)
    .filter((key) => key !== './package.json' && !key.includes('*'))
    .map((key) => (key === '.' ? 'socksmith' : `socksmith/${key.slice(2)}`))
    .concat(plugins.map((name) => `socksmith/plugins/${name}`))
  const script = `
    const names = ${JSON.stringify(entries)}
    for (const name of names) {
      const mod = await import(name)
      if (Object.keys(mod).length === 0) throw new Error(name + ' exports nothing')
      const url = import.meta.resolve(name)
      if (!url.includes('/dist/')) throw new Error(name + ' resolved outside dist: ' + url)
    }
    const { createServer, SocksError } = await import('socksmith')
    if (typeof createServer !== 'function' || typeof SocksError !== 'function') throw new Error('public API missing')
    console.log('ok ' + names.length)
  `
  const r = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: root, env })
  assert.equal(r.stdout.trim(), `ok ${entries.length}`, r.stderr)
})

test('the built CLI answers --version and --help', async () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  const version = await run(process.execPath, ['dist/src/cli/bin.cjs', '--version'], { cwd: root, env })
  assert.equal(version.stdout.trim(), pkg.version)
  const help = await run(process.execPath, ['dist/src/cli/bin.cjs', '--help'], { cwd: root, env })
  assert.equal(help.code, 0)
  assert.match(help.stdout, /Usage: socksmith/)
})
