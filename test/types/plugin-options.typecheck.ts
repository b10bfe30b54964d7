// Type-level tests, checked by `npm run typecheck` (part of npm test): a plugin's options are
// checked against its input type where it is used. Every @ts-expect-error line must be an error,
// or the typecheck fails; nothing here runs.
import { createServer, defineConfig, definePlugin } from 'socksmith'
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

// A plugin without an input type takes any options, as before.
const loose = definePlugin({ name: 'loose', setup() {} })
server.register(loose, { anything: true })
