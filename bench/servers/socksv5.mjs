// The npm `socksv5` server (not a dependency: `npm i --no-save socksv5`, or SOCKSV5_DIR=<folder
// whose node_modules has it>), accepting every request without authentication.
//   node bench/servers/socksv5.mjs --port P
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { port: { type: 'string' } } })
const from = process.env.SOCKSV5_DIR ? join(process.env.SOCKSV5_DIR, 'package.json') : import.meta.url
const socks = createRequire(from)('socksv5')

const server = socks.createServer((_info, accept) => accept())
server.useAuth(socks.auth.None())
server.listen(Number(values.port), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
