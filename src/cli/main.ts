// The CLI's ES entry, loaded by bin.cts (the `socksmith` command).
import { isClusterWorker } from '../ops/cluster.js'
import { main } from './run.js'

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
    // A cluster worker's IPC channel would keep it alive after its drain.
    if (isClusterWorker()) process.exit(code)
  },
  (err: unknown) => {
    process.stderr.write(`socksmith: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exitCode = 1
  },
)
