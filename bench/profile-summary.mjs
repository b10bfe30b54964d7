// Summarises a V8 .cpuprofile (from `npm run bench -- --cpu-prof DIR`): self time per function
// and per source file, heaviest first.   node bench/profile-summary.mjs FILE.cpuprofile [N]
import { readFileSync } from 'node:fs'

const [file, limit = '25'] = process.argv.slice(2)
if (file === undefined) {
  console.error('usage: node bench/profile-summary.mjs FILE.cpuprofile [N]')
  process.exit(2)
}
const profile = JSON.parse(readFileSync(file, 'utf8'))
const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const selfTicks = new Map()
for (const id of profile.samples) selfTicks.set(id, (selfTicks.get(id) ?? 0) + 1)
const total = profile.samples.length
const durationMs = (profile.endTime - profile.startTime) / 1000

const byFunction = new Map()
const byFile = new Map()
for (const [id, ticks] of selfTicks) {
  const { callFrame } = byId.get(id)
  const where = callFrame.url === '' ? '(native)' : callFrame.url.replace(/^.*\/(dist|node_modules)\//, '$1/').replace(/^node:/, 'node:')
  const name = `${callFrame.functionName || '(anonymous)'}  ${where}${callFrame.url === '' ? '' : `:${callFrame.lineNumber + 1}`}`
  byFunction.set(name, (byFunction.get(name) ?? 0) + ticks)
  byFile.set(where, (byFile.get(where) ?? 0) + ticks)
}
const pct = (ticks) => `${((ticks / total) * 100).toFixed(1).padStart(5)}%`
const top = (map) => [...map].sort((a, b) => b[1] - a[1]).slice(0, Number(limit))
console.log(`${total} samples over ${(durationMs / 1000).toFixed(1)} s`)
console.log('\nself time by function:')
for (const [name, ticks] of top(byFunction)) console.log(`${pct(ticks)}  ${name}`)
console.log('\nself time by file:')
for (const [name, ticks] of top(byFile)) console.log(`${pct(ticks)}  ${name}`)
