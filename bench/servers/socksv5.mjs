// The npm `socksv5` server (0.0.6), accepting every request; with --auth, RFC 1929 for one user
// (bench / bench-password) through its `auth.UserPassword`. Not a dependency of socksmith: run.ts
// installs it into a scratch folder and passes that folder as --modules.
//   node bench/servers/socksv5.mjs --port P --modules DIR [--auth]
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { checkLogin } from './peer-auth.mjs'

const { values } = parseArgs({ options: { port: { type: 'string' }, modules: { type: 'string' }, auth: { type: 'boolean', default: false } } })
const socks = createRequire(join(values.modules, 'package.json'))('socksv5')

const server = socks.createServer((_info, accept) => accept())
server.useAuth(values.auth ? socks.auth.UserPassword((user, password, cb) => cb(checkLogin(user, password))) : socks.auth.None())
server.listen(Number(values.port), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
