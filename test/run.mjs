// Runs every test file under test/ with node:test, TypeScript through tsx.
// Node 20's --test does not expand globs, so the file list is built here.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
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

// scripts/with-node.sh names the Node it put first on PATH; a run that still landed on another
// (npm or a script calling a node of its own) would test the wrong one, so it stops here.
const wanted = process.env.SOCKSMITH_NODE_VERSION
if (wanted !== undefined && process.version !== `v${wanted}` && !process.version.startsWith(`v${wanted}.`)) {
  console.error(`test/run.mjs: running on Node ${process.version} (${process.execPath}), but scripts/with-node.sh asked for ${wanted}`)
  process.exit(1)
}

const only = process.argv.slice(2)
const files = only.length > 0 ? only : collect('test')
const env = { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import tsx --conditions=source`.trim() }
// Naming a reporter replaces node's default, so that default (spec on a terminal, else TAP before
// Node 23) is named first, to stdout, and node's own output and closing lines stay as they were.
// The second reporter gathers the skips for missing system programs (test/helpers/peers.ts) into
// one line printed after those closing lines.
const defaultReporter = process.stdout.isTTY || Number(process.versions.node.split('.')[0]) >= 23 ? 'spec' : 'tap'
const scratch = mkdtempSync(join(tmpdir(), 'socksmith-test-run-'))
const summary = join(scratch, 'skipped-peers.txt')
const reporters = [
  `--test-reporter=${defaultReporter}`, '--test-reporter-destination=stdout',
  `--test-reporter=${fileURLToPath(new URL('helpers/peer-summary.mjs', import.meta.url))}`, `--test-reporter-destination=${summary}`,
]
const result = spawnSync(process.execPath, ['--test', ...reporters, '--test-concurrency=3', '--test-timeout=60000', ...files], { stdio: 'inherit', env })
try {
  process.stdout.write(readFileSync(summary, 'utf8'))
} catch {
  // No file: the runner ended before its reporters did (it crashed, or was killed).
}
rmSync(scratch, { recursive: true, force: true })
process.exit(result.status ?? 1)
