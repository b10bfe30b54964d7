// The system peers table (test/helpers/peers.ts): what it finds, how a missing program is skipped
// or, under CI, failed, and that scripts/setup-peers.sh installs exactly its packages.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PEERS, findProgram, missingReason, peer, type PeerName } from './helpers/peers.js'
import { run } from './helpers/processes.js'
import { plainEnv, ROOT, tempDir } from './helpers/spawn.js'

// Plain JS (node:test loads reporters before tsx), so typed here.
const { parseMissing, summaryLine } = (await import(new URL('./helpers/peer-summary.mjs', import.meta.url).href)) as {
  parseMissing(reason: string): { label: string; debian: string }[]
  summaryLine(skipped: number, missing: Map<string, string>): string | null
}

test('scripts/setup-peers.sh installs exactly the Debian packages of the peers table', () => {
  const script = readFileSync(join(ROOT, 'scripts/setup-peers.sh'), 'utf8')
  const list = /^packages=\(([^)]*)\)/m.exec(script)
  assert.ok(list !== null, 'a packages=( ... ) list')
  const installed = list[1]!.split(/\s+/).filter((word) => word !== '').sort()
  const table = [...new Set(Object.values(PEERS).map((spec) => spec.debian))].sort()
  assert.deepEqual(installed, table)
})

test('findProgram: PATH folders in order, then the sbin beside a PATH bin; executable files only', (t) => {
  const dir = tempDir(t)
  for (const sub of ['a', 'usr/bin', 'usr/sbin']) mkdirSync(join(dir, sub), { recursive: true })
  const program = (path: string, mode: number): void => {
    writeFileSync(join(dir, path), '#!/bin/sh\n')
    chmodSync(join(dir, path), mode)
  }
  program('a/tool', 0o644)
  program('usr/bin/tool', 0o755)
  program('usr/sbin/daemon', 0o755)
  mkdirSync(join(dir, 'a/daemon'))
  const path = [join(dir, 'a'), join(dir, 'usr/bin')].join(':')
  assert.equal(findProgram(['tool'], undefined, path), join(dir, 'usr/bin/tool'), 'a file without x is not a program')
  assert.equal(findProgram(['daemon'], undefined, path), join(dir, 'usr/sbin/daemon'), 'a folder is not a program; sbin beside bin is searched')
  assert.equal(findProgram(['daemon'], undefined, join(dir, 'a')), null, 'no sbin beside a folder not called bin')
  assert.equal(findProgram(['nothing', 'tool'], undefined, path), join(dir, 'usr/bin/tool'), 'alternative names in order')
  assert.equal(findProgram(['tool'], () => false, path), null, 'accept() can refuse a candidate')
})

test("the run's summary line reads back every peer's skip reason", () => {
  const names = Object.keys(PEERS) as PeerName[]
  for (const name of names) {
    const { label, debian } = peer(name)
    assert.deepEqual(parseMissing(missingReason({ label, debian })), [{ label, debian }], name)
  }
  const pair = [peer('pysocks'), peer('danted')]
  assert.deepEqual(parseMissing(pair.map(missingReason).join('; ')), [
    { label: 'python3 module socks', debian: 'python3-socks' },
    { label: 'danted', debian: 'dante-server' },
  ])
  assert.deepEqual(parseMissing('no ::1'), [], 'other skips are not counted')
  assert.equal(summaryLine(0, new Map()), null)
  assert.equal(summaryLine(3, new Map([['haproxy', 'haproxy'], ['danted', 'dante-server']])), 'skipped 3 tests: missing haproxy (haproxy), danted (dante-server); install them all with: npm run setup:peers')
})

test('a missing program: skipped, named with its package and summed up after the closing lines; with CI=true a failure', async (t) => {
  // A machine with only node: a PATH holding nothing else.
  const bin = join(tempDir(t), 'bin')
  mkdirSync(bin)
  symlinkSync(process.execPath, join(bin, 'node'))
  const env = plainEnv({ PATH: bin })
  // Else the inner node --test takes itself for one of this run's files and reports to it, not to stdout.
  delete env.NODE_TEST_CONTEXT
  // test/run.mjs keeps node's default reporter, which is TAP before Node 23 and spec from 23 on.
  const format = Number(process.versions.node.split('.')[0]) < 23
    ? { skip: /^ok 1 - needs haproxy # SKIP haproxy not installed \(Debian package haproxy\)$/m, fail: /^not ok 1 - needs haproxy$/m, closing: /^# duration_ms /, noneSkipped: /^# skipped 0$/m }
    : { skip: /^﹣ needs haproxy \([\d.]+ms\) # haproxy not installed \(Debian package haproxy\)$/m, fail: /^✖ needs haproxy \([\d.]+ms\)$/m, closing: /^ℹ duration_ms /, noneSkipped: /^ℹ skipped 0$/m }
  const runner = (ci: string) =>
    run(process.execPath, [join(ROOT, 'test/run.mjs'), 'test/fixtures/needs-haproxy.test.ts'], { cwd: ROOT, env: { ...env, CI: ci }, timeout: 60_000 })

  const skipped = await runner('')
  assert.equal(skipped.code, 0, skipped.stdout + skipped.stderr)
  assert.match(skipped.stdout, format.skip)
  const lines = skipped.stdout.trimEnd().split('\n')
  assert.equal(lines.at(-1), 'skipped 1 test: missing haproxy (haproxy); install them all with: npm run setup:peers')
  assert.match(lines.at(-2)!, format.closing, "node's closing lines come first, unchanged")

  const failed = await runner('true')
  assert.equal(failed.code, 1)
  assert.match(failed.stdout, format.fail)
  assert.match(failed.stdout, /haproxy not installed \(Debian package haproxy\): with CI set, a missing system program fails the test/)
  assert.match(failed.stdout, format.noneSkipped)
  assert.doesNotMatch(failed.stdout, /^skipped \d+ test/m)
})
