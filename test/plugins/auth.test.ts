import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer as createHttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { SocksClient } from 'socks'
import { createServer, isSocksError, SocksError, type AuthContext, type Logger, type OptionPath } from 'socksmith'
import auth, { hashPassword, verifyPassword } from 'socksmith/plugins/auth'
import { socksConnect } from 'socksmith/client'
import { FailureThrottle } from '../../plugins/auth/throttle.js'
import { PasswordChecker } from '../../plugins/auth/verifier.js'
import { parseHash, verifyAgainst, type ScryptHash } from '../../plugins/auth/hash.js'
import { RawClient, hex, ipv4Request, startEcho, startSocks, trackClient } from '../helpers/net.js'
import { needs, peer } from '../helpers/peers.js'

const curlPeer = peer('curl')

// Cheap hashes (N=1024) keep the suite fast; the dummy hash for unknown users follows the users' parameters.
const SECRET = 'open sesame'
const SECRET_HASH = await hashPassword(SECRET, { N: 1024 })
const BOB_SECRET = 'b0b-pa55'
const BOB_HASH = await hashPassword(BOB_SECRET, { N: 1024 })

/** RFC 1929 request: VER ULEN UNAME PLEN PASSWD. */
function passwordRequest(user: string, password: string): Buffer {
  const u = Buffer.from(user)
  const p = Buffer.from(password)
  return Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p])
}

function capturingLogger(): Logger & { lines: string[] } {
  const lines: string[] = []
  const record = (level: string) => (message: string, fields?: Record<string, unknown>) => {
    lines.push(`${level} ${message} ${fields === undefined ? '' : inspect(fields, { depth: 5, showHidden: true })}`)
  }
  return { lines, error: record('error'), warn: record('warn'), info: record('info'), debug: record('debug') }
}

async function loginRaw(t: TestContext, port: number, user: string, password: string): Promise<RawClient> {
  const c = await RawClient.connect(t, port)
  c.send('050102')
  assert.deepEqual(await c.read(2), hex('0502'))
  c.send(passwordRequest(user, password))
  return c
}

test('a good login gets 05 02 then 01 00, sets ctx.user for later phases, and relays', async (t) => {
  const echo = await startEcho(t)
  const seenUsers: (string | null)[] = []
  const { port } = await startSocks(t, {}, (server) => {
    server.register(auth, { users: { alice: SECRET_HASH } })
    server.use('request', async function recordUser(ctx, next) {
      seenUsers.push(ctx.user)
      await next()
    })
  })
  const c = await RawClient.connect(t, port)
  c.send('05020002')
  assert.deepEqual(await c.read(2), hex('0502'), 'username/password is chosen over NO AUTH when both are offered')
  c.send(passwordRequest('alice', SECRET))
  assert.deepEqual(await c.read(2), hex('0100'))
  c.send(ipv4Request(1, '127.0.0.1', echo.port))
  assert.deepEqual((await c.read(10)).subarray(0, 4), hex('05000001'))
  c.send(Buffer.from('ping'))
  assert.equal((await c.read(4)).toString(), 'ping')
  c.socket.end()
  await c.readToEnd()
  assert.deepEqual(seenUsers, ['alice'])
})

test('a wrong password and an unknown user both get 01 01 and a close', async (t) => {
  const requests: string[] = []
  const { port } = await startSocks(t, {}, (server) => {
    server.register(auth, { users: { alice: SECRET_HASH }, throttle: false })
    server.use('request', async function neverReached(ctx, next) {
      requests.push(String(ctx.user))
      await next()
    })
  })
  const wrong = await loginRaw(t, port, 'alice', 'open sesame!')
  assert.deepEqual(await wrong.read(2), hex('0101'))
  assert.equal((await wrong.expectClose()).length, 0, 'nothing follows the failure status')
  const unknown = await loginRaw(t, port, 'mallory', SECRET)
  assert.deepEqual(await unknown.read(2), hex('0101'))
  assert.equal((await unknown.expectClose()).length, 0)
  const caseMatters = await loginRaw(t, port, 'Alice', SECRET)
  assert.deepEqual(await caseMatters.read(2), hex('0101'), 'user names are compared exactly')
  await caseMatters.expectClose()
  assert.deepEqual(requests, [])
})

test('a client offering only NO AUTH gets 05 FF when auth is required', async (t) => {
  const { port } = await startSocks(t, {}, (server) => server.register(auth, { users: { alice: SECRET_HASH } }))
  const c = await RawClient.connect(t, port)
  c.send('050100')
  assert.deepEqual(await c.read(2), hex('05ff'))
  assert.equal((await c.expectClose()).length, 0)
})

test('allowNoAuth accepts NO AUTH-only clients but still logs in clients that offer 02', async (t) => {
  const echo = await startEcho(t)
  const users: (string | null)[] = []
  const { port, server } = await startSocks(t, {}, (s) => {
    s.register(auth, { users: { alice: SECRET_HASH }, allowNoAuth: true })
    s.use('request', async function recordUser(ctx, next) {
      users.push(ctx.user)
      await next()
    })
  })
  assert.equal(server.authRequired, false)
  const anonymous = await RawClient.connect(t, port)
  anonymous.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', echo.port)]))
  assert.deepEqual(await anonymous.read(2), hex('0500'))
  assert.deepEqual((await anonymous.read(10)).subarray(0, 2), hex('0500'))
  anonymous.socket.end()
  await anonymous.readToEnd()

  const named = await loginRaw(t, port, 'alice', SECRET)
  assert.deepEqual(await named.read(2), hex('0100'))
  named.send(ipv4Request(1, '127.0.0.1', echo.port))
  assert.deepEqual((await named.read(10)).subarray(0, 2), hex('0500'))
  named.socket.end()
  await named.readToEnd()

  const wrong = await loginRaw(t, port, 'alice', 'nope')
  assert.deepEqual(await wrong.read(2), hex('0101'), 'offering 02 with a bad password fails even though NO AUTH is allowed')
  await wrong.expectClose()
  assert.deepEqual(users, [null, 'alice'])
})

test('plain-text inline passwords are hashed at start-up and never printed from the parsed options', async (t) => {
  const at: OptionPath = {
    plugin: 'auth',
    fail(field, message): never {
      throw new SocksError('ERR_PLUGIN_OPTIONS', `plugin auth: ${field}: ${message}`)
    },
  }
  const parsed = auth.parseOptions!({ users: { carol: 'plain-secret-123' } }, at)
  assert.doesNotMatch(inspect(parsed, { depth: 10, showHidden: true }), /plain-secret-123/)
  assert.doesNotMatch(JSON.stringify(parsed), /plain-secret-123/)

  const { port } = await startSocks(t, {}, (server) => server.register(auth, { users: { carol: 'plain-secret-123' } }))
  const c = await loginRaw(t, port, 'carol', 'plain-secret-123')
  assert.deepEqual(await c.read(2), hex('0100'))
})

test('usersFile: comments, blank lines and CRLF; a relative path resolves against the working directory', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'socksmith-auth-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'users')
  await writeFile(file, `# socksmith users\n\nalice:${SECRET_HASH}\r\n  # bob rotates weekly\nbob : ${BOB_HASH}  \n`)
  const { port } = await startSocks(t, {}, (server) => server.register(auth, { usersFile: file }))
  const a = await loginRaw(t, port, 'alice', SECRET)
  assert.deepEqual(await a.read(2), hex('0100'))
  const b = await loginRaw(t, port, 'bob', BOB_SECRET)
  assert.deepEqual(await b.read(2), hex('0100'))

  const at: OptionPath = { plugin: 'auth', fail: (field, message) => assert.fail(`${field}: ${message}`) }
  const parsed = auth.parseOptions!({ usersFile: 'conf/users' }, at)
  assert.equal(parsed.usersFile, join(process.cwd(), 'conf/users'))
})

test('usersFile errors name the file and the line, and stop the server from starting', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'socksmith-auth-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const cases: [string, string, RegExp][] = [
    ['plain', `# ok\nalice:${SECRET_HASH}\nbob:hunter2\n`, /plain:3: the password of "bob" is not a scrypt hash/],
    ['nocolon', `\n\nalice ${SECRET_HASH}\n`, /nocolon:3: expected "user:hash"/],
    ['dup', `alice:${SECRET_HASH}\nalice:${BOB_HASH}\n`, /dup:2: user "alice" is already defined on line 1/],
    ['badhash', `alice:$scrypt$N=1000,r=8,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA\n`, /badhash:1: the hash of "alice" is invalid: N must be a power of two/],
    ['empty', `# nobody yet\n`, /empty: the file defines no users/],
  ]
  for (const [name, text, expected] of cases) {
    const file = join(dir, name)
    await writeFile(file, text)
    const server = createServer({ logger: capturingLogger() })
    server.register(auth, { usersFile: file })
    await assert.rejects(server.listen({ port: 0 }), (err: unknown) => {
      assert.ok(isSocksError(err) && err.code === 'ERR_PLUGIN_OPTIONS', String(err))
      assert.match(err.message, /^plugin auth: setup failed: usersFile: /)
      assert.match(err.message, expected)
      assert.ok(err.message.includes(file), 'the message names the file')
      assert.doesNotMatch(err.message, /hunter2/, 'a plain-text password in the file is not echoed')
      return true
    })
    await server.close()
  }
  const missing = createServer({ logger: capturingLogger() })
  missing.register(auth, { usersFile: join(dir, 'does-not-exist') })
  await assert.rejects(missing.listen({ port: 0 }), /plugin auth: setup failed: usersFile: .*does-not-exist: cannot read the users file \(ENOENT\)/)
  await missing.close()

  const clash = join(dir, 'clash')
  await writeFile(clash, `\nalice:${SECRET_HASH}\n`)
  const both = createServer({ logger: capturingLogger() })
  both.register(auth, { users: { alice: 'x' }, usersFile: clash })
  await assert.rejects(both.listen({ port: 0 }), /clash:2: user "alice" is also defined in users/)
  await both.close()
})

test('verify gets the user, the password and the auth context, for users not in the tables', async (t) => {
  const calls: { user: string; password: string; client: string; method: number; keys: string }[] = []
  async function verify(user: string, password: string, ctx: AuthContext): Promise<boolean> {
    calls.push({ user, password, client: ctx.client.address, method: ctx.method, keys: JSON.stringify(ctx.credentials) })
    return user === 'dave' && password === 'from-ldap'
  }
  const users: (string | null)[] = []
  const { port } = await startSocks(t, {}, (server) => {
    server.register(auth, { users: { alice: SECRET_HASH }, verify, throttle: false })
    server.use('request', async function recordUser(ctx, next) {
      users.push(ctx.user)
      await next()
    })
  })
  const dave = await loginRaw(t, port, 'dave', 'from-ldap')
  assert.deepEqual(await dave.read(2), hex('0100'))
  dave.send(ipv4Request(1, '127.0.0.1', 9)) // reach the request phase; the connect result does not matter
  await dave.expectClose()
  const wrong = await loginRaw(t, port, 'dave', 'guess')
  assert.deepEqual(await wrong.read(2), hex('0101'))
  const alice = await loginRaw(t, port, 'alice', 'not-her-password')
  assert.deepEqual(await alice.read(2), hex('0101'), 'a user in the table is decided by the table alone')
  assert.deepEqual(calls, [
    { user: 'dave', password: 'from-ldap', client: '127.0.0.1', method: 2, keys: '{"username":"dave"}' },
    { user: 'dave', password: 'guess', client: '127.0.0.1', method: 2, keys: '{"username":"dave"}' },
  ])
  assert.deepEqual(users, ['dave'])
})

test('repeated failures lock the client address out: even the right password is refused without being checked', async (t) => {
  const log = capturingLogger()
  let verifyCalls = 0
  const { port } = await startSocks(t, { logger: log }, (server) =>
    server.register(auth, {
      verify: (user: string, password: string) => {
        verifyCalls++
        return user === 'erin' && password === 'right'
      },
      throttle: { maxFailures: 3, windowMs: 60_000, lockoutMs: 60_000 },
    }),
  )
  const ok = await loginRaw(t, port, 'erin', 'right')
  assert.deepEqual(await ok.read(2), hex('0100'))
  for (let i = 0; i < 3; i++) {
    const c = await loginRaw(t, port, 'erin', `wrong-${i}`)
    assert.deepEqual(await c.read(2), hex('0101'))
    await c.expectClose()
  }
  assert.equal(verifyCalls, 4)
  const locked = await loginRaw(t, port, 'erin', 'right')
  assert.deepEqual(await locked.read(2), hex('0101'))
  await locked.expectClose()
  assert.equal(verifyCalls, 4, 'a locked-out client is refused before its password is looked at')
  assert.equal(log.lines.filter((l) => l.includes('locking out client')).length, 1, 'the lockout is logged once')
})

test('the throttle forgets old windows and bounds its memory', () => {
  let now = 1_000_000
  const throttle = new FailureThrottle({ maxFailures: 2, windowMs: 1000, lockoutMs: 5000, maxClients: 3 }, () => now)
  assert.equal(throttle.recordFailure('192.0.2.1'), false)
  now += 1000
  assert.equal(throttle.recordFailure('192.0.2.1'), false, 'the first failure fell out of the window')
  assert.equal(throttle.recordFailure('192.0.2.1'), true)
  assert.equal(throttle.isLocked('192.0.2.1'), true)
  now += 5000
  assert.equal(throttle.isLocked('192.0.2.1'), false, 'the lockout ends')

  for (const address of ['192.0.2.2', '192.0.2.3', '192.0.2.4', '192.0.2.5']) throttle.recordFailure(address)
  assert.equal(throttle.size, 3, 'at most maxClients addresses are tracked')
  // What one client is (IPv6 by /64) is the server's clientGroup(): test/server/client-group.test.ts.
})

/** A hash check that counts runs and their concurrency; a password of "block" waits for `release()`. */
function countingHasher() {
  let release!: () => void
  const blocked = new Promise<void>((resolve) => (release = resolve))
  const state = {
    runs: [] as ScryptHash[],
    running: 0,
    maxRunning: 0,
    release,
    async verifyHash(password: string, hash: ScryptHash): Promise<boolean> {
      state.runs.push(hash)
      state.running++
      state.maxRunning = Math.max(state.maxRunning, state.running)
      try {
        if (password === 'block') await blocked
        return await verifyAgainst(password, hash)
      } finally {
        state.running--
      }
    },
  }
  return state
}

test('login cache and shared checks: one scrypt run for a burst of logins, none while cached, always one for a wrong password', async () => {
  const alice = parseHash(SECRET_HASH)
  const hasher = countingHasher()
  const checker = await PasswordChecker.create(new Map([['alice', alice]]), { cacheTtlMs: 60_000, maxConcurrentHashes: 2, verifyHash: hasher.verifyHash })
  const burst = await Promise.all(Array.from({ length: 20 }, () => checker.check('alice', SECRET, null)))
  assert.ok(burst.every((ok) => ok))
  assert.equal(hasher.runs.length, 1, '20 concurrent identical logins share one scrypt run')
  assert.equal(await checker.check('alice', SECRET, null), true)
  assert.equal(hasher.runs.length, 1, 'a cached login skips scrypt')
  assert.equal(await checker.check('alice', 'wrong', null), false)
  assert.equal(hasher.runs.length, 2, 'a wrong password is always hashed, cache or not')
  assert.equal(await checker.check('nobody', SECRET, null), false)
  assert.equal(hasher.runs.length, 3, 'an unknown user is hashed too')
  const dummy = hasher.runs[2]!
  assert.notEqual(dummy, alice)
  assert.deepEqual(dummy.params, alice.params, 'against a dummy with the same cost as the real users')
  assert.equal(dummy.key.length, alice.key.length)
  hasher.runs.length = 0
  const unknownBurst = await Promise.all(Array.from({ length: 10 }, () => checker.check('nobody', 'guess', null)))
  assert.ok(unknownBurst.every((ok) => !ok))
  assert.equal(hasher.runs.length, 1, 'a burst for an unknown user is shared just like one for a real user')

  const uncached = await PasswordChecker.create(new Map([['alice', alice]]), { cacheTtlMs: 0, maxConcurrentHashes: 2, verifyHash: hasher.verifyHash })
  hasher.runs.length = 0
  await uncached.check('alice', SECRET, null)
  await uncached.check('alice', SECRET, null)
  assert.equal(hasher.runs.length, 2, 'cacheTtlMs: 0 hashes every login')
})

test('at most maxConcurrentHashes scrypt runs at once; a login whose client left is dropped from the queue', async () => {
  const alice = parseHash(SECRET_HASH)
  const hasher = countingHasher()
  const wide = await PasswordChecker.create(new Map([['alice', alice]]), { cacheTtlMs: 60_000, maxConcurrentHashes: 2, verifyHash: hasher.verifyHash })
  const results = await Promise.all(Array.from({ length: 6 }, (_, i) => wide.check('alice', `wrong-${i}`, null)))
  assert.deepEqual(results, [false, false, false, false, false, false])
  assert.equal(hasher.maxRunning, 2)

  const narrow = await PasswordChecker.create(new Map([['alice', alice]]), { cacheTtlMs: 60_000, maxConcurrentHashes: 1, verifyHash: hasher.verifyHash })
  hasher.runs.length = 0
  const blocker = narrow.check('alice', 'block', null)
  const leaving = new AbortController()
  const owner = narrow.check('alice', SECRET, leaving.signal)
  const joiner = narrow.check('alice', SECRET, null)
  leaving.abort()
  await assert.rejects(owner, (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_CLIENT_CLOSED')
  hasher.release()
  assert.equal(await blocker, false)
  assert.equal(await joiner, true, 'a login that joined an abandoned check runs its own')
  assert.equal(hasher.runs.length, 2, 'the abandoned check never hashed')
})

test('option errors name the plugin and the field', () => {
  const cases: [unknown, RegExp][] = [
    [undefined, /^plugin auth: needs options/],
    [{}, /^plugin auth: no users: give at least one user in users, a usersFile, usersInStore: true, or a verify function/],
    [{ usersInStore: 'redis' }, /^plugin auth: usersInStore: must be true, false or \{ lookupCacheMs, lookupCacheSize \}, found a string/],
    [{ usersInStore: { lookupCacheMs: -1 } }, /^plugin auth: usersInStore\.lookupCacheMs: must be an integer from 0/],
    [{ usersInStore: { cacheMs: 5 } }, /^plugin auth: usersInStore\.cacheMs: unknown key/],
    [{ usersFrom: 'store' }, /^plugin auth: usersFrom: unknown key; did you mean "usersInStore"\?/],
    [{ usersInStore: false }, /^plugin auth: no users/],
    [{ users: {} }, /^plugin auth: users: no users/],
    [{ user: { alice: 'x' } }, /^plugin auth: user: unknown key; did you mean "users"\?/],
    [{ users: { alice: 'x' }, passwordFile: '/etc/x' }, /^plugin auth: passwordFile: unknown key; did you mean "usersFile"\?/],
    [{ users: { alice: 123456 } }, /^plugin auth: users\.alice: must be a password or a "\$scrypt\$\.\.\." hash string, found a number/],
    [{ users: { 'a b': '' } }, /^plugin auth: users\["a b"\]: a password must be 1 to 255 bytes/],
    [{ users: { '': 'x' } }, /^plugin auth: users\[""\]: a user name must not be empty/],
    [{ users: { alice: '$scrypt$N=16384,r=8$AAAA$AAAA' } }, /^plugin auth: users\.alice: invalid hash: scrypt parameters must include N, r and p/],
    [{ users: { alice: 'x'.repeat(256) } }, /^plugin auth: users\.alice: a password must be 1 to 255 bytes/],
    [{ users: ['alice'] }, /^plugin auth: users: must be an object/],
    [{ usersFile: 42 }, /^plugin auth: usersFile: must be a file path/],
    [{ verify: 'ldap' }, /^plugin auth: verify: must be a function/],
    [{ users: { alice: 'x' }, allowNoAuth: 'yes' }, /^plugin auth: allowNoAuth: must be true or false/],
    [{ users: { alice: 'x' }, throttle: { maxFailures: 0 } }, /^plugin auth: throttle\.maxFailures: must be an integer from 1/],
    [{ users: { alice: 'x' }, throttle: { maxFailure: 5 } }, /^plugin auth: throttle\.maxFailure: unknown key; did you mean "maxFailures"\?/],
    [{ users: { alice: 'x' }, throttle: 'on' }, /^plugin auth: throttle: must be an object or false/],
    [{ users: { alice: 'x' }, cacheTtlMs: -1 }, /^plugin auth: cacheTtlMs: must be an integer from 0/],
  ]
  for (const [options, expected] of cases) {
    const server = createServer()
    assert.throws(
      () => server.register(auth, options),
      (err: unknown) => isSocksError(err) && err.code === 'ERR_PLUGIN_OPTIONS' && expected.test(err.message),
      `${inspect(options)} should fail with ${expected}`,
    )
  }
  // The compiler refuses it too (AuthOptions); at run time it must fail without echoing the value.
  // @ts-expect-error a password is a string
  assert.throws(() => createServer().register(auth, { users: { alice: 123456 } }), (err: Error) => !err.message.includes('123456'), 'a numeric password is not echoed')
})

test('hash format: self-describing scrypt, round trip, canonical base64, bounded parameters', async () => {
  assert.match(SECRET_HASH, /^\$scrypt\$N=1024,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/)
  const standard = await hashPassword('correct horse battery staple')
  assert.match(standard, /^\$scrypt\$N=16384,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/)
  assert.notEqual(await hashPassword('correct horse battery staple'), standard, 'every hash has its own salt')
  assert.equal(await verifyPassword('correct horse battery staple', standard), true)
  assert.equal(await verifyPassword('correct horse battery stapl', standard), false)
  assert.equal(await verifyPassword('pässwörd ✓', await hashPassword('pässwörd ✓', { N: 1024 })), true, 'UTF-8 passwords')
  const padded = SECRET_HASH.replace(/\$([^$]+)\$([^$]+)$/, (_, salt: string, key: string) => `$${salt}==$${key}=`)
  assert.equal(await verifyPassword(SECRET, padded), true, 'padded base64 is accepted too')
  for (const bad of ['', 'hunter2', '$scrypt$N=1024,r=8,p=1$@@@@$AAAA', '$scrypt$N=1024,r=8,p=1,x=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA', '$scrypt$N=2097152,r=8,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA']) {
    await assert.rejects(verifyPassword('x', bad), (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_INVALID_ARGUMENT')
  }
  await assert.rejects(hashPassword(''), /1 to 255 bytes/)
  await assert.rejects(hashPassword('x'.repeat(256)), /1 to 255 bytes/)
  await assert.rejects(hashPassword('x', { N: 1000 }), /power of two/)
})

test('passwords never reach the log, at any level, whatever happens', async (t) => {
  const log = capturingLogger()
  const echo = await startEcho(t)
  const errors: unknown[] = []
  const { port, server } = await startSocks(t, { logger: log }, (s) => {
    s.register(auth, {
      users: { alice: SECRET_HASH, frank: 'frank-plain-pw' },
      verify: (_user: string, password: string) => password === 'verify-pw-777',
      throttle: { maxFailures: 2 },
    })
    s.use('request', async function logEverything(ctx, next) {
      ctx.log.debug('request', { ctx: inspect(ctx, { depth: 3, showHidden: false }), credentials: ctx.user })
      await next()
    })
  })
  server.on('error', (err) => errors.push(err))
  const attempts: [string, string][] = [
    ['alice', SECRET],
    ['frank', 'frank-plain-pw'],
    ['gina', 'verify-pw-777'],
    ['alice', 'wrong-pw-1'],
    ['nobody', 'wrong-pw-2'],
    ['alice', 'wrong-pw-3'],
  ]
  for (const [user, password] of attempts) {
    const c = await loginRaw(t, port, user, password)
    const status = await c.read(2)
    if (status[1] === 0) {
      c.send(ipv4Request(1, '127.0.0.1', echo.port))
      await c.read(10)
      c.socket.end()
    }
    await c.expectClose()
  }
  assert.ok(log.lines.some((l) => l.includes('login failed')), 'failures are logged')
  assert.ok(log.lines.some((l) => l.includes('locking out')), 'the lockout is logged')
  const everything = log.lines.join('\n')
  for (const [, password] of attempts) assert.ok(!everything.includes(password), `"${password}" appears in the log`)
  assert.deepEqual(errors, [])
})

test('interop: the socks npm client logs in with userId/password', async (t) => {
  const echo = await startEcho(t)
  const { port } = await startSocks(t, {}, (server) => server.register(auth, { users: { alice: SECRET_HASH } }))
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port, type: 5, userId: 'alice', password: SECRET },
    command: 'connect',
    destination: { host: '127.0.0.1', port: echo.port },
  })
  trackClient(t, socket)
  socket.end('hello through socks')
  const chunks: Buffer[] = []
  for await (const chunk of socket) chunks.push(chunk as Buffer)
  assert.equal(Buffer.concat(chunks).toString(), 'hello through socks')

  await assert.rejects(
    SocksClient.createConnection({
      proxy: { host: '127.0.0.1', port, type: 5, userId: 'alice', password: 'wrong' },
      command: 'connect',
      destination: { host: '127.0.0.1', port: echo.port },
    }),
    /Authentication/i,
  )
})

test('interop: socksmith/client logs in and a rejected login surfaces as ERR_SOCKS_AUTH_FAILED', async (t) => {
  const echo = await startEcho(t)
  const { port } = await startSocks(t, {}, (server) => server.register(auth, { users: { alice: SECRET_HASH } }))
  const { socket } = await socksConnect({ host: '127.0.0.1', port, username: 'alice', password: SECRET }, { host: '127.0.0.1', port: echo.port })
  trackClient(t, socket)
  socket.end('x')
  const chunks: Buffer[] = []
  for await (const chunk of socket) chunks.push(chunk as Buffer)
  assert.equal(Buffer.concat(chunks).toString(), 'x')
  await assert.rejects(
    socksConnect({ host: '127.0.0.1', port, username: 'alice', password: 'nope' }, { host: '127.0.0.1', port: echo.port }),
    (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_AUTH_FAILED',
  )
})

test('interop: curl --socks5 user:pass@host fetches a page through the proxy', needs(curlPeer), async (t) => {
  const http = createHttpServer((req, res) => res.end(`hello ${req.url}`))
  http.listen(0, '127.0.0.1')
  await once(http, 'listening')
  t.after(() => {
    http.closeAllConnections()
    http.close()
  })
  const httpPort = (http.address() as AddressInfo).port
  const { port } = await startSocks(t, {}, (server) => server.register(auth, { users: { alice: SECRET_HASH } }))
  const curl = (proxyUser: string) =>
    new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(curlPeer.path, ['-sS', '--max-time', '10', '--socks5', `${proxyUser}@127.0.0.1:${port}`, `http://127.0.0.1:${httpPort}/page`], (err, stdout) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout })
      })
    })
  const ok = await curl(`alice:${encodeURIComponent(SECRET)}`)
  assert.deepEqual(ok, { code: 0, stdout: 'hello /page' })
  const refused = await curl('alice:wrong')
  assert.notEqual(refused.code, 0, 'curl fails when the login is refused')
  assert.equal(refused.stdout, '')
})
