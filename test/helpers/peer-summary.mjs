// A node:test reporter that test/run.mjs adds beside the usual one. It gathers the skips that
// test/helpers/peers.ts gives a test whose system program is missing, and ends the run with one line
// naming them all and the command that installs them. Plain JS: Node 20 loads reporters before
// --import hooks such as tsx.

// What peers.ts's missingReason() writes, several joined by '; '.
const MISSING = /([^;]+?) not installed \(Debian package ([^)\s]+)\)/g

/** The `{ label, debian }` pairs named in a skip reason; none for a skip of another kind. */
export function parseMissing(reason) {
  return [...reason.matchAll(MISSING)].map((match) => ({ label: match[1].trim(), debian: match[2] }))
}

/** `skipped 3 tests: missing haproxy (haproxy), ...; install them all with: npm run setup:peers`, or null. */
export function summaryLine(skipped, missing) {
  if (skipped === 0) return null
  const names = [...missing].map(([label, debian]) => `${label} (${debian})`).join(', ')
  return `skipped ${skipped} test${skipped === 1 ? '' : 's'}: missing ${names}; install them all with: npm run setup:peers`
}

export default async function* peerSummary(source) {
  let skipped = 0
  const missing = new Map()
  for await (const event of source) {
    // A skipped test is reported as passed, with its reason in `skip`.
    if (event.type !== 'test:pass' || typeof event.data.skip !== 'string') continue
    const found = parseMissing(event.data.skip)
    if (found.length === 0) continue
    skipped++
    for (const { label, debian } of found) missing.set(label, debian)
  }
  const line = summaryLine(skipped, missing)
  if (line !== null) yield `${line}\n`
}
