// `npm run lint:deps` passing proves nothing by itself: a typo in a path regex, a resolver option
// lost in an upgrade or type imports no longer counted would make every rule silently pass. So the
// project's .dependency-cruiser.cjs is run here on test/fixtures/layers/, a tiny package laid out
// like socksmith whose files break each rule once on purpose, and the exact list of violations is
// checked: each rule bites, and the allowed imports (plugins/good/) do not trip any.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

const fixture = fileURLToPath(new URL('fixtures/layers/', import.meta.url))
const config = fileURLToPath(new URL('../.dependency-cruiser.cjs', import.meta.url))
const depcruise = fileURLToPath(new URL('../node_modules/dependency-cruiser/bin/dependency-cruise.mjs', import.meta.url))

interface Violation {
  from: string
  to: string
  rule: { name: string }
  cycle?: { name: string }[]
}

/** Runs depcruise on the fixture with the project's config; resolves with its exit code and output. */
async function cruiseFixture(outputType: string): Promise<{ code: number | null; out: string }> {
  // Without the test runner's NODE_OPTIONS (tsx): depcruise is plain JavaScript and starts faster.
  const { NODE_OPTIONS: _, ...env } = process.env
  const child = spawn(process.execPath, [depcruise, 'src', 'plugins', '--config', config, '--output-type', outputType], {
    cwd: fixture,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
  const [code] = (await once(child, 'close')) as [number | null]
  return { code, out }
}

test('the dependency rules report every deliberate violation in test/fixtures/layers, and nothing else', async () => {
  // json for the exact list; err-long is what `npm run lint:deps` prints, and only the err
  // reporters set the exit code that makes `npm test` fail.
  const [json, text] = await Promise.all([cruiseFixture('json'), cruiseFixture('err-long')])
  const violations = (JSON.parse(json.out) as { summary: { violations: Violation[] } }).summary.violations
  const found = violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to.replace(/^(\.\.\/)+/, '')}`).sort()
  assert.deepEqual(found, [
    'config-and-cli-sit-on-top: src/core/reads-config.ts -> src/config/load.ts',
    'core-never-names-a-plugin: src/core/names-plugin.ts -> plugins/good/helper.ts',
    // A cycle of `import type` only: counted, because tsPreCompilationDeps is on.
    'no-circular: src/core/connection.ts -> src/core/server.ts',
    // 'layers-fixture/internal-server' is not in the exports map: an internal reached for by name.
    'not-to-unresolvable: plugins/bad/index.ts -> layers-fixture/internal-server',
    'plugin-imports-only-public-entries: plugins/bad/index.ts -> src/core/connection.ts',
    'plugin-relative-import-outside-own-folder: plugins/bad/index.ts -> plugins/good/helper.ts',
    'plugin-relative-import-outside-own-folder: plugins/bad/index.ts -> src/core/errors.ts',
    'protocol-is-pure: src/protocol/codec.ts -> net',
    'protocol-is-pure: src/protocol/codec.ts -> src/core/server.ts',
    'shipped-code-uses-no-dev-dependency: plugins/bad/index.ts -> node_modules/fast-check/lib/fast-check.d.ts',
    // The errors.ts import beside it is allowed: only the server is not.
    'store-sits-below-the-core: src/store/reaches-up.ts -> src/core/server.ts',
  ])
  const cycle = violations.find((v) => v.rule.name === 'no-circular')?.cycle?.map((step) => step.name)
  assert.deepEqual(cycle, ['src/core/server.ts', 'src/core/connection.ts'])
  assert.equal(text.code, found.length, 'lint:deps must exit non-zero (the number of errors), or `npm test` would not fail')
  // The readable report says why: each rule's comment follows its violations.
  assert.match(text.out, /error protocol-is-pure: src\/protocol\/codec\.ts → net\n\s+The codec \(src\/protocol\) is pure/)
})
