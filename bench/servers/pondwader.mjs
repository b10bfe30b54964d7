// The npm `@pondwader/socks5-server` server, accepting every CONNECT (its only command out of the
// box: no UDP ASSOCIATE, no BIND) with its default connection handler (net.createConnection, then
// pipe() both ways); with --auth, RFC 1929 for one user (bench / bench-password) through
// setAuthHandler (its `auth: { username, password }` option compares with ===). Not a dependency
// of socksmith: run.ts installs it into a scratch folder and passes that folder as --modules.
//   node bench/servers/pondwader.mjs --port P --modules DIR [--auth]
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { checkLogin } from './peer-auth.mjs'

const { values } = parseArgs({ options: { port: { type: 'string' }, modules: { type: 'string' }, auth: { type: 'boolean', default: false } } })
const { createServer } = createRequire(join(values.modules, 'package.json'))('@pondwader/socks5-server')

const server = createServer()
if (values.auth) server.setAuthHandler((conn) => checkLogin(conn.username, conn.password))
server.listen(Number(values.port), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
