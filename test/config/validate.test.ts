// Config validation: every message names the file, the entry and the field, with the right code.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { loadConfig, createServer, isSocksError, type SocksErrorCode } from 'socksmith'
import { createServerFromConfig, prepareServer, reloadFromConfig, parseDuration } from 'socksmith/config'
import { silentLogger } from 'socksmith/ops'
import { join } from 'node:path'
import { maskSecrets, printableConfig } from '../../src/config/print.js'
import { project, write } from './helpers.js'

/** Loads (and builds a server from) `yaml`; resolves with the SocksError it fails with. */
async function failure(t: Parameters<typeof project>[0], files: Record<string, string>, file = 'socksmith.config.yaml'): Promise<{ code: SocksErrorCode; lines: string[] }> {
  const dir = project(t, files)
  try {
    const loaded = await loadConfig({ file, cwd: dir })
    const server = createServerFromConfig(loaded)
    await prepareServer(server, loaded).finally(() => server.close({ drainTimeout: 0 }))
  } catch (err) {
    assert.ok(isSocksError(err), `a SocksError, not ${String(err)}`)
    return { code: err.code, lines: err.message.split('\n') }
  }
  assert.fail('expected the config to be rejected')
}

test('the issue\'s example: a bad CIDR in the rules plugin\'s options', async (t) => {
  const { code, lines } = await failure(t, {
    'socksmith.config.yaml': `plugins:
  - [auth, { users: { alice: wonderland } }]
  - - rules
    - rules:
        - { action: allow, to: [127.0.0.0/8] }
        - { action: allow, to: [192.168.0.0/16] }
        - { action: deny, to: 10.0.0.0/33 }
`,
  })
  assert.equal(code, 'ERR_PLUGIN_OPTIONS')
  assert.equal(lines.length, 1)
  assert.match(lines[0] as string, /^socksmith\.config\.yaml: plugins\[1\] \(rules\): rules\[2\]\.to(\[0\])?: "10\.0\.0\.0\/33" is not a valid CIDR/)
})

test('unknown keys anywhere get a did-you-mean hint; all problems are reported at once', async (t) => {
  const { code, lines } = await failure(t, {
    'socksmith.config.yaml': `lisen: { port: 1 }
limits: { maxConnection: 5 }
timeouts: { idel: 5s }
log: { levle: info }
listen: [{ host: 127.0.0.1, prot: 1 }]
plugin: []
`,
  })
  assert.equal(code, 'ERR_CONFIG_INVALID')
  assert.deepEqual(lines, [
    'socksmith.config.yaml: lisen: unknown key; did you mean "listen"?',
    'socksmith.config.yaml: plugin: unknown key; did you mean "plugins"?',
    'socksmith.config.yaml: listen[0].prot: unknown key; did you mean "port"?',
    'socksmith.config.yaml: limits.maxConnection: unknown key; did you mean "maxConnections"?',
    'socksmith.config.yaml: timeouts.idel: unknown key; did you mean "idle"?',
    'socksmith.config.yaml: log.levle: unknown key; did you mean "level"?',
  ])
})

test('wrong types and values name the field and what was found', async (t) => {
  const { lines } = await failure(t, {
    'socksmith.config.yaml': `listen: { host: "", port: 70000 }
limits: { maxConnections: 0, perClient: 1.5 }
timeouts: { idle: forever, connect: -1, handshake: true }
log: { level: loud }
allowOpenProxy: "yes"
udp: { acceptFromAnyPeer: 1 }
plugins: { auth: {} }
`,
  })
  assert.deepEqual(lines, [
    'socksmith.config.yaml: listen.host: expected an address such as 127.0.0.1 or ::1, found ""',
    'socksmith.config.yaml: listen.port: expected an integer from 0 to 65535, found number 70000',
    'socksmith.config.yaml: limits.maxConnections: expected an integer from 1 up, found number 0',
    'socksmith.config.yaml: limits.perClient: expected an integer from 0 up, found number 1.5',
    'socksmith.config.yaml: timeouts.handshake: expected milliseconds or a duration such as "30s", "5m", "250ms", found boolean true',
    'socksmith.config.yaml: timeouts.connect: expected milliseconds or a duration such as "30s", "5m", "250ms", found number -1',
    'socksmith.config.yaml: timeouts.idle: expected milliseconds or a duration such as "30s", "5m", "250ms", found "forever"',
    'socksmith.config.yaml: log.level: expected one of silent, error, warn, info, debug, found "loud"',
    'socksmith.config.yaml: allowOpenProxy: expected true or false, found "yes"',
    'socksmith.config.yaml: udp.acceptFromAnyPeer: expected true or false, found number 1',
    'socksmith.config.yaml: plugins: expected a list of plugin entries (name or [name, options]), found an object',
  ])
})

test('a file that is not an object, and a YAML syntax error', async (t) => {
  const list = await failure(t, { 'socksmith.config.yaml': '- a\n- b\n' })
  assert.deepEqual(list.lines, ['socksmith.config.yaml: the config must be an object of settings, found a list'])
  const syntax = await failure(t, { 'socksmith.config.yaml': 'listen: { port: 1\n' })
  assert.equal(syntax.code, 'ERR_CONFIG_INVALID')
  assert.match(syntax.lines[0] as string, /^socksmith\.config\.yaml: YAML: /)
})

test('missing plugin files and packages are ERR_PLUGIN_NOT_FOUND, naming the entry', async (t) => {
  const { code, lines } = await failure(t, { 'socksmith.config.yaml': 'plugins: [./nope.js, rule, not-installed, "Bad Name!"]\n' })
  assert.equal(code, 'ERR_PLUGIN_NOT_FOUND')
  assert.match(lines[0] as string, /^socksmith\.config\.yaml: plugins\[0\] \(\.\/nope\.js\): plugin file not found: .*nope\.js \(a path is resolved against the config file's folder/)
  assert.match(lines[1] as string, /^socksmith\.config\.yaml: plugins\[1\] \(rule\): package "rule" not found from .*; did you mean the bundled plugin "rules"\?$/)
  assert.match(lines[2] as string, /^socksmith\.config\.yaml: plugins\[2\] \(not-installed\): package "not-installed" not found from .* \(install it there: npm install not-installed\)$/)
  assert.match(lines[3] as string, /^socksmith\.config\.yaml: plugins\[3\] \(Bad Name!\): "Bad Name!" is not a bundled plugin \(auth, rules, dns-cache, upstream, limits\), a path/)
})

test('a module whose default export is not a plugin is ERR_PLUGIN_INVALID, saying what was found', async (t) => {
  const { code, lines } = await failure(t, {
    'socksmith.config.yaml': 'plugins: [./none.mjs, ./factory.mjs, ./noname.mjs, ./nosetup.mjs, ./broken.mjs]\n',
    'none.mjs': 'export const plugin = { name: "x", setup() {} }\n',
    'factory.mjs': 'export default function makePlugin() { return { name: "x", setup() {} } }\n',
    'noname.mjs': 'export default { setup() {} }\n',
    'nosetup.mjs': 'export default { name: "no-setup" }\n',
    'broken.mjs': 'export default {\n',
  })
  assert.equal(code, 'ERR_PLUGIN_INVALID')
  assert.deepEqual(lines.slice(0, 4), [
    'socksmith.config.yaml: plugins[0] (./none.mjs): the module has no default export (it exports plugin); export the plugin as default',
    'socksmith.config.yaml: plugins[1] (./factory.mjs): the default export is a function (makePlugin), not a plugin object ({ name, setup }); if it is a factory, call it in a JS/TS config: plugins: [factory(options)]',
    'socksmith.config.yaml: plugins[2] (./noname.mjs): plugin "name" must be a kebab-case string, found undefined',
    'socksmith.config.yaml: plugins[3] (./nosetup.mjs): plugin "no-setup" has no setup() function',
  ])
  assert.match(lines[4] as string, /^socksmith\.config\.yaml: plugins\[4\] \(\.\/broken\.mjs\): .*broken\.mjs failed to load: /)
})

test('duplicate plugins and dependencies that are missing or listed later', async (t) => {
  const { code, lines } = await failure(t, {
    'socksmith.config.yaml': 'plugins: [./needs-cache.mjs, dns-cache, dns-cache, ./needs-auth.mjs]\n',
    'needs-cache.mjs': 'export default { name: "needs-cache", dependencies: ["dns-cache"], setup() {} }\n',
    'needs-auth.mjs': 'export default { name: "needs-auth", dependencies: ["auth"], setup() {} }\n',
  })
  assert.equal(code, 'ERR_PLUGIN_DEPENDENCY')
  assert.deepEqual(lines, [
    'socksmith.config.yaml: plugins[0] (needs-cache): needs plugin "dns-cache" listed before it, but it comes later (plugins[1]); move it up',
    'socksmith.config.yaml: plugins[2] (dns-cache): plugin "dns-cache" is already listed at plugins[1]; list each plugin once',
    'socksmith.config.yaml: plugins[3] (needs-auth): needs plugin "auth", which is not listed; add it before this entry',
  ])
})

test('malformed entries and inline middleware', async (t) => {
  const { lines } = await failure(
    t,
    {
      'socksmith.config.mjs': `export default {
  plugins: [
    42,
    ['rules', {}, 'extra'],
    { phase: 'conect', middleware: async () => {} },
    { phase: 'request', middleware: 'nope' },
    { phase: 'request', middlewares: [] },
    () => {},
  ],
}
`,
    },
    'socksmith.config.mjs',
  )
  assert.deepEqual(lines, [
    'socksmith.config.mjs: plugins[0]: expected a plugin name or [name, options], found number 42',
    'socksmith.config.mjs: plugins[1]: expected [name, options], found a list of 3',
    'socksmith.config.mjs: plugins[2] (inline conect).phase: expected one of negotiate, auth, request, connect, relay, datagram (did you mean "connect"?), found "conect"',
    'socksmith.config.mjs: plugins[3] (inline request).middleware: expected an async (ctx, next) => {} function or a list of them, found "nope"',
    'socksmith.config.mjs: plugins[4] (inline request).middlewares: unknown key; did you mean "middleware"?',
    'socksmith.config.mjs: plugins[5]: expected a plugin name or [name, options] (a plugin is an object with name and setup; call a plugin factory to get one), found a function',
  ])
})

test('options errors of several plugins are reported together, each under its entry', async (t) => {
  const { code, lines } = await failure(t, {
    'socksmith.config.yaml': `plugins:
  - [dns-cache, { maxTll: 5 }]
  - [upstream, { proxy: "ftp://127.0.0.1:21" }]
`,
  })
  assert.equal(code, 'ERR_PLUGIN_OPTIONS')
  assert.equal(lines.length, 2)
  assert.match(lines[0] as string, /^socksmith\.config\.yaml: plugins\[0\] \(dns-cache\): maxTll: unknown key; did you mean "maxTtl"\?$/)
  assert.match(lines[1] as string, /^socksmith\.config\.yaml: plugins\[1\] \(upstream\): proxy: /)
})

test('upstream: every bad hop of a pool\'s chain members is reported in one pass, naming the file, the entry and the field', async (t) => {
  const { code, lines } = await failure(t, {
    'socksmith.config.yaml': `plugins:
  - - upstream
    - pool:
        - socks5://127.0.0.1:1
        - [socks5://127.0.0.1:2, ftp://127.0.0.1:3]
        - - url: socks5s://127.0.0.1:4
            tls: { pin: nope }
          - socks5h://127.0.0.1:5
        - []
      routes:
        - { match: { users: alice }, pool: [[http://127.0.0.1:6, "socks9://x"]] }
`,
  })
  assert.equal(code, 'ERR_PLUGIN_OPTIONS')
  assert.deepEqual(lines.map((line) => line.replace(/^(socksmith\.config\.yaml: plugins\[0\] \(upstream\): [^:]+):.*$/, '$1')), [
    'socksmith.config.yaml: plugins[0] (upstream): pool[1][1]',
    'socksmith.config.yaml: plugins[0] (upstream): pool[2][0].tls.pin',
    'socksmith.config.yaml: plugins[0] (upstream): pool[3]',
    'socksmith.config.yaml: plugins[0] (upstream): routes[0].pool[0][1]',
  ])
  assert.match(lines[0] as string, /pool\[1\]\[1\]: unsupported scheme "ftp:"/)
})

test('core-key, duplicate-plugin and option problems are all reported in one pass', async (t) => {
  const { code, lines } = await failure(t, {
    'socksmith.config.yaml': `lisen: { port: 1 }
plugins:
  - [dns-cache, { maxTll: 5 }]
  - dns-cache
  - - rules
    - rules:
        - { action: deny, to: 10.0.0.0/33 }
        - { action: allow }
        - { action: alow }
`,
  })
  assert.equal(code, 'ERR_CONFIG_INVALID')
  assert.equal(lines.length, 5, lines.join('\n'))
  assert.equal(lines[0], 'socksmith.config.yaml: lisen: unknown key; did you mean "listen"?')
  assert.equal(lines[1], 'socksmith.config.yaml: plugins[1] (dns-cache): plugin "dns-cache" is already listed at plugins[0]; list each plugin once')
  assert.match(lines[2] as string, /^socksmith\.config\.yaml: plugins\[0\] \(dns-cache\): maxTll: unknown key; did you mean "maxTtl"\?$/)
  assert.match(lines[3] as string, /^socksmith\.config\.yaml: plugins\[2\] \(rules\): rules\[0\]\.to: "10\.0\.0\.0\/33" is not a valid CIDR/)
  assert.match(lines[4] as string, /^socksmith\.config\.yaml: plugins\[2\] \(rules\): rules\[2\]\.action: expected "allow" or "deny", found "alow"/)
})

test('a plugin whose setup() fails: the file and the entry are named, ERR_PLUGIN_SETUP with the cause', async (t) => {
  const files = {
    'boom.mjs': "export default { name: 'boom', setup() { if (process.env.SOCKSMITH_TEST_BOOM !== '0') throw new Error('boom') } }\n",
    'socksmith.config.yaml': 'plugins: [dns-cache, ./boom.mjs]\n',
  }
  const { code, lines } = await failure(t, files)
  assert.equal(code, 'ERR_PLUGIN_SETUP')
  assert.deepEqual(lines, ['socksmith.config.yaml: plugins[1] (boom): setup failed: boom'])

  // A program's own register(): the plugin is named, the original error is the cause.
  const boom = { name: 'boom', setup(): void { throw new TypeError('no socket') } }
  const server = createServer({ logger: silentLogger })
  t.after(() => server.close({ drainTimeout: 0 }))
  server.register(boom)
  await assert.rejects(server.listen({ port: 0 }), (err: unknown) => {
    assert.ok(isSocksError(err))
    assert.equal(err.code, 'ERR_PLUGIN_SETUP')
    assert.equal(err.message, 'plugin boom: setup failed: no socket')
    assert.ok(err.cause instanceof TypeError)
    return true
  })

  // A reload that fails in setup names the file and the entry once.
  const dir = project(t, { ...files, 'socksmith.config.yaml': 'plugins: [dns-cache]\n' })
  const loaded = await loadConfig({ cwd: dir })
  const running = createServerFromConfig(loaded, { logger: silentLogger })
  t.after(() => running.close({ drainTimeout: 0 }))
  await prepareServer(running, loaded)
  write(dir, { 'socksmith.config.yaml': 'plugins: [dns-cache, ./boom.mjs]\n' })
  await assert.rejects(reloadFromConfig(running, loaded, { logger: silentLogger }), (err: unknown) => {
    assert.ok(isSocksError(err))
    assert.equal(err.code, 'ERR_PLUGIN_SETUP')
    assert.equal(err.message, 'socksmith.config.yaml: plugins[1] (boom): setup failed: boom')
    return true
  })
})

test('a config that would be an open proxy is refused before any port opens', async (t) => {
  const { code, lines } = await failure(t, { 'socksmith.config.yaml': 'listen: [{ host: 127.0.0.1, port: 0 }, { host: 0.0.0.0, port: 0 }]\n' })
  assert.equal(code, 'ERR_SOCKS_OPEN_PROXY')
  assert.match(lines[0] as string, /^socksmith\.config\.yaml: listen: refusing to listen on 0\.0\.0\.0 without authentication/)
})

test('a JS config without a default export', async (t) => {
  const { code, lines } = await failure(t, { 'socksmith.config.mjs': 'export const config = {}\n' }, 'socksmith.config.mjs')
  assert.equal(code, 'ERR_CONFIG_INVALID')
  assert.match(lines[0] as string, /^socksmith\.config\.mjs: a JS\/TS config must export the config as default/)
})

test('parseDuration', () => {
  assert.equal(parseDuration(1500), 1500)
  assert.equal(parseDuration('250ms'), 250)
  assert.equal(parseDuration('30s'), 30_000)
  assert.equal(parseDuration('1.5s'), 1500)
  assert.equal(parseDuration('5m'), 300_000)
  assert.equal(parseDuration('2h'), 7_200_000)
  assert.equal(parseDuration('42'), 42)
  assert.equal(parseDuration(' 10 s '), 10_000)
  for (const bad of ['-1s', '1d', 's', '', 'ten seconds', -5, Infinity, NaN, null, true, {}]) assert.equal(parseDuration(bad), null, String(bad))
})

test('maskSecrets hides passwords in secret option paths (auth users), URLs and password-like keys', () => {
  const masked = maskSecrets(
    {
      users: { alice: 'secret', bob: '$scrypt$...' },
      proxy: 'socks5://carol:pa55@127.0.0.1:1080',
      chain: ['http://dave:x@127.0.0.1:8080', 'socks5://127.0.0.1:1081', 'socks5h://erin@127.0.0.1:1082'],
      login: { password: 'p', apiKey: 'k', token: 't', user: 'frank' },
      verify: function checkLogin() {},
    },
    ['users'],
  )
  assert.deepEqual(masked, {
    users: { alice: '********', bob: '********' },
    proxy: 'socks5://carol:********@127.0.0.1:1080',
    chain: ['http://dave:********@127.0.0.1:8080', 'socks5://127.0.0.1:1081', 'socks5h://erin@127.0.0.1:1082'],
    login: { password: '********', apiKey: '********', token: '********', user: 'frank' },
    verify: '[function checkLogin]',
  })
})

test('maskSecrets: a password with "@" is masked whole (userinfo ends at the last "@"); secret-ish keys in any case', () => {
  const masked = maskSecrets({
    proxy: 'socks5://carol:p@ss@w0rd@127.0.0.1:1080',
    path: 'http://dave:x@y@127.0.0.1:8080/a@b?c=d@e',
    list: 'socks5://a:b@c@h1:1,socks5://d:e@f@h2:2',
    plain: 'http://127.0.0.1:8080/user@example',
    passwd: 'p1',
    PWD: 'p2',
    Authorization: 'Bearer t1',
    client_secret: 's1',
    'api-key': 'k1',
    APIKey: 'k2',
    accessToken: 't2',
    sessionCookie: 'c1',
    privateKey: 'pk',
    credentials: { alice: 'c2' },
    bypass: ['localhost'],
    passwordFile: '/etc/secret-path',
  })
  assert.doesNotMatch(JSON.stringify(masked), /ss@w0rd|w0rd|y@127|"p1"|"p2"|t1|s1|k1|k2|t2|c1|"pk"|c2|secret-path/)
  assert.deepEqual(masked, {
    proxy: 'socks5://carol:********@127.0.0.1:1080',
    path: 'http://dave:********@127.0.0.1:8080/a@b?c=d@e',
    list: 'socks5://a:********@h1:1,socks5://d:********@h2:2',
    plain: 'http://127.0.0.1:8080/user@example',
    passwd: '********',
    PWD: '********',
    Authorization: '********',
    client_secret: '********',
    'api-key': '********',
    APIKey: '********',
    accessToken: '********',
    sessionCookie: '********',
    privateKey: '********',
    credentials: { alice: '********' },
    bypass: ['localhost'],
    passwordFile: '********',
  })
})

test('--print-config masks the option paths a plugin declares secret (secretOptions), whatever its name', async (t) => {
  const dir = project(t, {
    'vault.mjs': "export default { name: 'vault', secretOptions: ['logins', 'nested.keys'], setup() {} }\n",
    'socksmith.config.yaml': 'plugins:\n  - [./vault.mjs, { logins: { alice: hunter2, bob: [x1, x2] }, nested: { keys: [k9], visible: shown } }]\n',
  })
  const loaded = await loadConfig({ cwd: dir })
  assert.deepEqual(printableConfig(loaded).plugins, [
    { name: 'vault', from: join(dir, 'vault.mjs'), options: { logins: { alice: '********', bob: ['********', '********'] }, nested: { keys: ['********'], visible: 'shown' } } },
  ])
})

test('a JS config that throws or does not parse is ERR_CONFIG_INVALID, naming the file once', async (t) => {
  const broken = await failure(t, { 'socksmith.config.mjs': 'export default {\n' }, 'socksmith.config.mjs')
  assert.equal(broken.code, 'ERR_CONFIG_INVALID')
  assert.match(broken.lines[0] as string, /^socksmith\.config\.mjs: the config failed to load: /)
  const throws = await failure(t, { 'socksmith.config.mjs': 'throw new Error("no PORT in the environment")\n' }, 'socksmith.config.mjs')
  assert.equal(throws.lines[0], 'socksmith.config.mjs: the config failed to load: no PORT in the environment')
})

test("a listener's http options: via and forwardedFor checked, naming the file and field; --print-config shows them resolved", async (t) => {
  const { code, lines } = await failure(t, {
    'socksmith.config.yaml': `listen:
  - { port: 0, protocols: [http], http: { via: "two words", forwardedFor: yes please, forwardFor: true } }
`,
  })
  assert.equal(code, 'ERR_CONFIG_INVALID')
  assert.ok(lines.some((line) => /^socksmith\.config\.yaml: listen\[0\]\.http\.via: must be one token/.test(line)), lines.join('\n'))
  assert.ok(lines.some((line) => /listen\[0\]\.http\.forwardedFor: must be true or false/.test(line)), lines.join('\n'))
  assert.ok(lines.some((line) => /listen\[0\]\.http\.forwardFor.*did you mean "forwardedFor"/.test(line)), lines.join('\n'))
  const dir = project(t, { 'socksmith.config.yaml': 'listen:\n  - { port: 0, protocols: [mixed], http: { via: true, forwardedFor: true } }\n' })
  const loaded = await loadConfig({ file: 'socksmith.config.yaml', cwd: dir })
  assert.deepEqual(loaded.config.listen[0]!.http, { via: 'socksmith', forwardedFor: true })
})
