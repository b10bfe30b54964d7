// All four bundled plugins in a TypeScript config. defineConfig() gives it types, and each
// [plugin, options] entry is checked against that plugin's options: a wrong key or option type is
// an editor error before it is a start-up error (entries that name a plugin by string are checked
// when the config loads).
//
//   UPSTREAM_PROXY=socks5://127.0.0.1:1081 npx socksmith --config examples/config/all-plugins.config.ts
//
// A TS config is loaded through tsx (a devDependency, so present in a clone); a JS config
// (socksmith.config.mjs) needs nothing.
import { defineConfig } from 'socksmith'
import auth from 'socksmith/plugins/auth'
import rules from 'socksmith/plugins/rules'
import dnsCache from 'socksmith/plugins/dns-cache'
import upstream from 'socksmith/plugins/upstream'

export default defineConfig({
  listen: { host: '127.0.0.1', port: 1080 },
  timeouts: { connect: '5s', idle: '15m', udpIdle: '2m' },
  log: { level: 'info' },
  plugins: [
    // A JS/TS config may read secrets from the environment instead of the file.
    [auth, { users: { alice: process.env.ALICE_PASSWORD ?? 'wonderland' } }],
    [
      rules,
      {
        default: 'deny',
        rules: [
          { action: 'deny', ports: [25] },
          // Destination rules are checked after DNS, on every address a name resolves to.
          { action: 'allow', to: ['loopback'], users: ['alice'] },
        ],
      },
    ],
    [dnsCache, { maxTtl: 600 }],
    // Last: rules vetted the destination, and the vetted address is what the upstream is sent.
    [upstream, { proxy: process.env.UPSTREAM_PROXY ?? 'socks5://127.0.0.1:1081' }],
  ],
})
