// socksmith/plugin-kit: the option-checking helpers the config, the bundled plugins and
// third-party plugins share, so every plugin's messages read alike.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as root from 'socksmith'
import { createServer, definePlugin, isSocksError, type OptionPath, type Plugin } from 'socksmith'
import { silentLogger } from 'socksmith/ops'
import { checkKeys, describe, describeKind, didYouMean, editDistance, isPlainObject } from 'socksmith/plugin-kit'
import auth from 'socksmith/plugins/auth'
import rules from 'socksmith/plugins/rules'
import dnsCache from 'socksmith/plugins/dns-cache'
import upstream from 'socksmith/plugins/upstream'

/** The ERR_PLUGIN_OPTIONS message register() throws for `options`, one line per failure. */
function registerError(plugin: Plugin<unknown>, options: unknown): string[] {
  try {
    createServer({ logger: silentLogger }).register(plugin, options)
  } catch (err) {
    assert.ok(isSocksError(err) && err.code === 'ERR_PLUGIN_OPTIONS', String(err))
    return err.message.split('\n')
  }
  assert.fail('expected register() to throw')
}

test('checkKeys in a plugin: every unknown key is reported (at.collect), with a hint or the known keys, and parsing stops there', () => {
  const denyPorts = definePlugin<{ ports: number[] }>({
    name: 'deny-ports',
    parseOptions(raw: unknown, at: OptionPath) {
      if (!isPlainObject(raw)) at.fail('', `expected an object { ports }, found ${describe(raw)}`)
      checkKeys(raw, ['ports', 'message'], at)
      if (!Array.isArray(raw.ports)) at.fail('ports', `expected a list of ports, found ${describe(raw.ports)}`)
      return { ports: raw.ports as number[] }
    },
    setup() {},
  })
  assert.deepEqual(registerError(denyPorts, { prots: [25], mesage: 'no', zzz: 1 }), [
    'plugin deny-ports: prots: unknown key; did you mean "ports"?',
    'plugin deny-ports: mesage: unknown key; did you mean "message"?',
    'plugin deny-ports: zzz: unknown key (known keys: ports, message)',
  ])
  assert.deepEqual(registerError(denyPorts, { prots: [25] }), ['plugin deny-ports: prots: unknown key; did you mean "ports"?'], 'not also "ports: expected a list"')
  assert.deepEqual(registerError(denyPorts, 'all'), ['plugin deny-ports: expected an object { ports }, found "all"'])
  // A parser that checks independent parts goes on past the unknown keys inside at.collect.
  const goesOn = definePlugin<undefined>({
    name: 'goes-on',
    parseOptions(raw: unknown, at: OptionPath) {
      at.collect?.(() => checkKeys(raw as Record<string, unknown>, ['port'], at))
      at.fail('port', 'checked after the keys')
    },
    setup() {},
  })
  assert.deepEqual(registerError(goesOn, { xyz: 1, qqq: 2 }), [
    'plugin goes-on: xyz: unknown key (known keys: port)',
    'plugin goes-on: qqq: unknown key (known keys: port)',
    'plugin goes-on: port: checked after the keys',
  ])
})

test('checkKeys: a path, aliases, a reporting function, and an OptionPath that cannot collect', () => {
  const reported: string[] = []
  checkKeys({ maxFailure: 5, passwordFile: 'x', windowMs: 1 }, ['maxFailures', 'windowMs', 'usersFile'], (field, message) => reported.push(`${field}: ${message}`), {
    path: 'throttle',
    aliases: { passwordFile: 'usersFile' },
  })
  assert.deepEqual(reported, ['throttle.maxFailure: unknown key; did you mean "maxFailures"?', 'throttle.passwordFile: unknown key; did you mean "usersFile"?'])
  const at = {
    fail(field: string, message: string): never {
      throw new Error(`${field}: ${message}`)
    },
  }
  assert.throws(() => checkKeys({ a: 1, b: 2 }, [], at), { message: 'a: unknown key (known keys: )' })
  assert.doesNotThrow(() => checkKeys({ a: 1 }, ['a'], at))
  // An inherited key is not the object's own: only own keys are checked.
  assert.doesNotThrow(() => checkKeys(Object.create({ inherited: 1 }) as Record<string, unknown>, [], at))
})

test('describe shows a value, describeKind only its kind (for options that may be secrets)', () => {
  assert.equal(describe(5), 'number 5')
  assert.equal(describe('x'), '"x"')
  assert.equal(describe(true), 'boolean true')
  assert.equal(describe([1]), 'a list')
  assert.equal(describe({}), 'an object')
  assert.equal(describe(undefined), 'undefined')
  assert.equal(describe('y'.repeat(100)), JSON.stringify(`${'y'.repeat(57)}...`))
  assert.equal(describeKind(123456), 'a number')
  assert.equal(describeKind('hunter2'), 'a string')
  assert.equal(describeKind(true), 'a boolean')
  assert.equal(describeKind([]), 'a list')
  assert.equal(describeKind({}), 'an object')
  assert.equal(describeKind(null), 'null')
  assert.equal(isPlainObject(Object.create(null)), true)
  assert.equal(isPlainObject(new Date()), false)
  assert.equal(isPlainObject([]), false)
})

test('editDistance and didYouMean', () => {
  assert.equal(editDistance('kitten', 'sitting'), 3)
  assert.equal(editDistance('', 'abc'), 3)
  assert.equal(editDistance('prot', 'port'), 1)
  assert.equal(didYouMean('lisen', ['listen', 'limits']), 'listen')
  assert.equal(didYouMean('PLUGINS', ['plugins']), 'plugins')
  assert.equal(didYouMean('zzzzzz', ['listen', 'limits']), null)
})

test('the helpers live in socksmith/plugin-kit only, not in the root entry', () => {
  for (const name of ['didYouMean', 'editDistance', 'checkKeys', 'describe', 'isPlainObject']) assert.equal(name in root, false, name)
})

test('every bundled plugin words an unknown key and a wrong value the same way', () => {
  assert.deepEqual(registerError(auth, { users: { alice: 'x' }, throttel: false }), ['plugin auth: throttel: unknown key; did you mean "throttle"?'])
  assert.deepEqual(registerError(rules, { rules: [], defualt: 'deny' }), ['plugin rules: defualt: unknown key; did you mean "default"?'])
  assert.deepEqual(registerError(dnsCache, { maxTTL: 60 }), ['plugin dns-cache: maxTTL: unknown key; did you mean "maxTtl"?'])
  assert.deepEqual(registerError(upstream, { proxi: 'socks5://127.0.0.1:1' }), ['plugin upstream: proxi: unknown key; did you mean "proxy"?'])
  assert.deepEqual(registerError(upstream, { routes: [{ match: { user: 'alice' }, direct: true }] }), ['plugin upstream: routes[0].match.user: unknown key; did you mean "users"?'])
  // A value that is not one: an object is "an object" everywhere (upstream used to say "a object").
  assert.deepEqual(registerError(upstream, { proxy: { url: {} } }), ['plugin upstream: proxy.url: must be a proxy URL such as "socks5://127.0.0.1:1080", found an object'])
  assert.deepEqual(registerError(dnsCache, { max: 0 }), ['plugin dns-cache: max: must be a positive whole number of entries, found number 0'])
  assert.deepEqual(registerError(rules, { rules: [{ action: 'deny', users: [7] }] }), ['plugin rules: rules[0].users[0]: expected a user name, found number 7'])
  // auth names only the kind of a value that may be a password.
  assert.deepEqual(registerError(auth, { users: { alice: 123456 } }), ['plugin auth: users.alice: must be a password or a "$scrypt$..." hash string, found a number (in YAML, quote a password that looks like a number)'])
})
