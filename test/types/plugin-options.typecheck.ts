// Type-level tests, checked by `npm run typecheck` (part of npm test): a plugin's options are
// checked against its input type where it is used. Every @ts-expect-error line must be an error,
// or the typecheck fails; nothing here runs.
import { createServer, defineConfig, definePlugin, type PluginEntry } from 'socksmith'
import auth from 'socksmith/plugins/auth'
import rules from 'socksmith/plugins/rules'
import dnsCache from 'socksmith/plugins/dns-cache'
import upstream from 'socksmith/plugins/upstream'

const server = createServer()
server.register(rules, { default: 'deny', rules: [{ action: 'allow', to: ['loopback'] }] })
// @ts-expect-error misspelt option of rules
server.register(rules, { defualt: 'deny' })
// @ts-expect-error misspelt option of auth
server.register(auth, { user: { alice: 'x' } })
// @ts-expect-error misspelt option of dns-cache
server.register(dnsCache, { maxTTL: 600 })
// @ts-expect-error misspelt option of upstream
server.register(upstream, { proxi: 'socks5://127.0.0.1:1081' })

export const good = defineConfig({
  plugins: [[auth, { users: { alice: 'wonderland' } }], [rules, { default: 'deny', rules: [] }], [dnsCache, { maxTtl: 600 }], 'upstream'],
})
export const bad = defineConfig({
  // @ts-expect-error a misspelt option in a [plugin, options] entry
  plugins: [[rules, { defualt: 'deny' }]],
})
// Each bundled plugin, the misspelt key next to valid ones and as deep as it may sit: the options
// object literal is checked against the entry's own plugin, key by key.
export const badEntries = defineConfig({
  plugins: [
    // @ts-expect-error misspelt option of auth in a config entry
    [auth, { users: { alice: 'wonderland' }, throttel: false }],
    // @ts-expect-error misspelt key of a rule, inside the rules list
    [rules, { default: 'deny', rules: [{ action: 'allow', tos: ['loopback'] }] }],
    // @ts-expect-error misspelt option of dns-cache in a config entry
    [dnsCache, { maxTtl: 600, minTTL: 5 }],
    // @ts-expect-error a duration string where upstream takes seconds
    [upstream, { proxy: 'socks5://127.0.0.1:1081', handshakeTimeout: '5s' }],
  ],
})
// Entries the compiler cannot check stay allowed: names (checked when the config loads), a list
// typed as PluginEntry[], plugins without options, inline middleware.
const entries: PluginEntry[] = ['dns-cache', [rules, { rules: [] }]]
export const unchecked = defineConfig({ plugins: entries })
export const mixed = defineConfig({
  plugins: ['auth', ['rules', { anything: 1 }], dnsCache, [dnsCache], { phase: 'request', middleware: async (ctx, next) => void (ctx.destination.port === 25 || (await next())) }],
})

// A plugin without an input type takes any options, as before.
const loose = definePlugin({ name: 'loose', setup() {} })
server.register(loose, { anything: true })
