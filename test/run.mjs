// Runs every test file under test/ with node:test, TypeScript through tsx.
// Node 20's --test does not expand globs, so the file list is built here.
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'

function collect(dir) {
  const files = []
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name)
    if (name === 'node_modules' || name === 'fixtures') continue
    if (statSync(path).isDirectory()) files.push(...collect(path))
    else if (name.endsWith('.test.ts')) files.push(path)
  }
  return files
}

const only = process.argv.slice(2)
const files = only.length > 0 ? only : collect('test')
const env = { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import tsx --conditions=source`.trim() }
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=3', '--test-timeout=60000', ...files], { stdio: 'inherit', env })
process.exit(result.status ?? 1)
