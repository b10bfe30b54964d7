// The public API, as the committed reports in api/ show it: `npm test` fails when an entry point's
// declarations no longer match its report (node scripts/api-report.mjs), so every change to the
// public surface is a visible diff; `npm run api:update` rewrites the reports after a deliberate one.
// Reads dist/ (run after the build). One report per entry point of package.json's exports map.
import { Extractor, ExtractorConfig } from '@microsoft/api-extractor'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'

const update = process.argv.includes('--update')
const folder = new URL('../api/', import.meta.url).pathname
let failed = false
for (const file of readdirSync(folder).filter((f) => f.endsWith('.api-extractor.json') && !f.includes('base')).sort()) {
  const config = ExtractorConfig.loadFileAndPrepare(join(folder, file))
  const result = Extractor.invoke(config, { localBuild: update, showVerboseMessages: false, messageCallback: (message) => {
    // Only the report comparison decides; the rest is noise for this check.
    if (message.logLevel === 'warning' && message.messageId !== 'console-api-report-changed') message.handled = true
  } })
  if (!result.succeeded || (!update && result.apiReportChanged)) {
    failed = true
    console.error(`api/${file.replace('.api-extractor.json', '.api.md')}: the public API changed; if that is deliberate, run npm run api:update and commit the report`)
  }
}
if (failed) process.exit(1)
console.log(update ? 'API reports updated' : 'API reports match')
