// A local plugin: refuses CONNECTs to some ports with REP 02 (connection not allowed).
// Listed in a config as `./deny-ports.ts` (with options), or registered from a program:
//   server.register(denyPorts, { ports: [25] })
import { definePlugin, SocksError, type OptionPath } from 'socksmith'
// The option-checking helpers socksmith and its bundled plugins use, so messages read alike.
import { checkKeys, describe, isPlainObject } from 'socksmith/plugin-kit'

export interface DenyPortsOptions {
  ports: number[]
  message: string
}

// Plugins keep per-connection data in ctx.state, typed by declaration merging.
declare module 'socksmith' {
  interface SocksState {
    deniedPort: number | null
  }
}

export default definePlugin<DenyPortsOptions>({
  // kebab-case, unique per server: error messages and logs use it.
  name: 'deny-ports',

  // Runs at start-up with the options from the config. Errors name the config file, the entry
  // and the field: `socksmith.config.yaml: plugins[0] (deny-ports): ports[1]: must be a port number`.
  parseOptions(raw: unknown, at: OptionPath): DenyPortsOptions {
    if (!isPlainObject(raw)) at.fail('', `needs options { ports: [25], message?: "..." }, found ${describe(raw)}`)
    // A misspelt key fails with a hint: `prots: unknown key; did you mean "ports"?`
    checkKeys(raw, ['ports', 'message'], at)
    const { ports, message = 'port not allowed' } = raw
    if (!Array.isArray(ports) || ports.length === 0) at.fail('ports', 'must be a non-empty list of port numbers')
    ports.forEach((port, i) => {
      if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) at.fail(`ports[${i}]`, 'must be a port number')
    })
    if (typeof message !== 'string') at.fail('message', `must be a string, found ${describe(message)}`)
    return { ports: ports as number[], message }
  },

  setup(host, options) {
    // Precompiled once: the middleware does a Set lookup per connection, nothing more.
    const denied = new Set(options.ports)
    host.declareState('deniedPort', null)
    host.use('request', async function denyPorts(ctx, next) {
      if (denied.has(ctx.destination.port)) {
        ctx.state.deniedPort = ctx.destination.port
        throw new SocksError('ERR_SOCKS_NOT_ALLOWED', `${options.message} (port ${ctx.destination.port})`)
      }
      await next()
    })
  },
})
