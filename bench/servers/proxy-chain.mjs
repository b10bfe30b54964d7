// The npm `proxy-chain` HTTP proxy (3.x, ESM, Node >= 20.11): a `ProxyChain.Server` on 127.0.0.1
// with no prepareRequestFunction, its simple mode (no authentication, no upstream), which tunnels
// CONNECT and forwards absolute-URI requests; with --auth, `Proxy-Authorization: Basic` for one
// user (bench / bench-password) through prepareRequestFunction. Not a dependency of socksmith:
// run.ts installs it into a scratch folder and passes that folder as --modules.
//   node bench/servers/proxy-chain.mjs --port P --modules DIR [--auth]
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { checkLogin } from './peer-auth.mjs'

const { values } = parseArgs({ options: { port: { type: 'string' }, modules: { type: 'string' }, auth: { type: 'boolean', default: false } } })
// An ES module: resolved from the scratch folder, then imported by its file URL.
const entry = createRequire(join(values.modules, 'package.json')).resolve('proxy-chain')
const { Server } = await import(pathToFileURL(entry).href)

const server = new Server({
  host: '127.0.0.1',
  port: Number(values.port),
  verbose: false,
  prepareRequestFunction: values.auth ? ({ username, password }) => ({ requestAuthentication: !checkLogin(username, password) }) : undefined,
})
await server.listen()
process.on('SIGTERM', () => process.exit(0))
