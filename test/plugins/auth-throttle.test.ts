// The auth plugin's throttle and hashing queue under parallel logins, over real loopback sockets:
// what one client is (the server's clientPrefix), attempts in flight, and fairness between clients.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import auth, { hashPassword } from 'socksmith/plugins/auth'
import { encodePasswordRequest } from 'socksmith/protocol'
import { isSocksError } from 'socksmith'
import { FailureThrottle } from '../../plugins/auth/throttle.js'
import { RawClient, hex, startSocks } from '../helpers/net.js'

const SECRET = 'open sesame'
// Cheap hashes (N=1024) keep the tests fast; they still run on the thread pool like real ones.
const SECRET_HASH = await hashPassword(SECRET, { N: 1024 })

/** Connects from `from` (a 127/8 address) and offers username/password; the login is not sent yet. */
async function greet(t: TestContext, port: number, from = '127.0.0.1'): Promise<RawClient> {
  const c = await RawClient.connect(t, port, '127.0.0.1', from)
  c.send('050102')
  assert.deepEqual(await c.read(2), hex('0502'))
  return c
}

test('the throttle counts clients as the server groups them (clientPrefix), like the connection limits', async (t) => {
  const { port } = await startSocks(t, { clientPrefix: { ipv4: 24 } }, (server) =>
    server.register(auth, { users: { alice: SECRET_HASH }, throttle: { maxFailures: 2, windowMs: 60_000, lockoutMs: 60_000 } }),
  )
  const login = async (from: string, password: string): Promise<Buffer> => {
    const c = await greet(t, port, from)
    c.send(encodePasswordRequest('alice', password))
    return c.read(2)
  }
  assert.deepEqual(await login('127.0.0.2', 'wrong-1'), hex('0101'))
  assert.deepEqual(await login('127.0.0.3', 'wrong-2'), hex('0101'))
  assert.deepEqual(await login('127.0.0.4', SECRET), hex('0101'), 'the /24 is one client, locked out after two failures')
  assert.deepEqual(await login('127.0.1.4', SECRET), hex('0100'), 'another /24 is another client')
})

/** Counts logins reaching the auth phase (registered before the plugin, so it runs first) and resolves `reached(n)` once n did. */
function countAttempts() {
  let entered = 0
  const waiters: { n: number; resolve: () => void }[] = []
  return {
    get entered() {
      return entered
    },
    reached(n: number): Promise<void> {
      return entered >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }))
    },
    middleware: async function countAttempt(_ctx: unknown, next: () => Promise<void>): Promise<void> {
      entered++
      for (const w of waiters) if (entered >= w.n) w.resolve()
      await next()
    },
  }
}

/** A verify function whose answers the test gives: each call waits for its `answer(ok)`. */
function heldVerify() {
  const calls: { user: string; password: string; answer: (ok: boolean) => void }[] = []
  const waiters: { n: number; resolve: () => void }[] = []
  return {
    calls,
    /** Resolves once `n` calls were made. */
    called(n: number): Promise<void> {
      return calls.length >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }))
    },
    verify: (user: string, password: string) =>
      new Promise<boolean>((resolve) => {
        calls.push({ user, password, answer: resolve })
        for (const w of waiters) if (calls.length >= w.n) w.resolve()
      }),
  }
}

test('59 wrong logins then the right one, pipelined at once from one client: the right one is refused, the client locked out after 3', async (t) => {
  const lines: string[] = []
  const logger = { error() {}, warn: (m: string) => void lines.push(m), info() {}, debug() {} }
  const { port } = await startSocks(t, { logger }, (server) =>
    server.register(auth, { users: { alice: SECRET_HASH }, throttle: { maxFailures: 3, windowMs: 60_000, lockoutMs: 60_000 } }),
  )
  const clients = []
  for (let i = 0; i < 60; i++) clients.push(await greet(t, port))
  // One synchronous burst: the server reads all 60 before any scrypt run can finish.
  clients.forEach((c, i) => c.send(encodePasswordRequest('alice', i < 59 ? `wrong-${i}` : SECRET)))
  const replies = await Promise.all(clients.map((c) => c.read(2)))
  assert.deepEqual(replies[59], hex('0101'), 'the right password came after the lockout was due: refused')
  assert.ok(replies.every((r) => r.equals(hex('0101'))))
  assert.equal(lines.filter((l) => l.includes('locking out client')).length, 1)
})

test('attempts in flight count against the limit: of 40 parallel guesses only maxFailures are checked, the rest are refused unchecked', async (t) => {
  const held = heldVerify()
  const attempts = countAttempts()
  const { port } = await startSocks(t, {}, (server) => {
    server.use('auth', attempts.middleware)
    server.register(auth, { verify: held.verify, throttle: { maxFailures: 3, windowMs: 60_000, lockoutMs: 60_000 } })
  })
  const clients = []
  for (let i = 0; i < 40; i++) clients.push(await greet(t, port))
  clients.forEach((c, i) => c.send(encodePasswordRequest('erin', `guess-${i}`)))
  await attempts.reached(40)
  await new Promise(setImmediate) // whatever the 40 logins started has started
  assert.equal(held.calls.length, 3, 'three guesses are being checked; the others wait for their outcome')
  for (const call of held.calls) call.answer(false)
  const replies = await Promise.all(clients.map((c) => c.read(2)))
  assert.ok(replies.every((r) => r.equals(hex('0101'))))
  assert.equal(held.calls.length, 3, 'the client was locked out before any other guess was looked at')
})

test('the lockout is checked again after the password: a right one that finishes after the client got locked out is refused', async (t) => {
  const held = heldVerify()
  const { port } = await startSocks(t, {}, (server) =>
    server.register(auth, { verify: held.verify, throttle: { maxFailures: 3, windowMs: 60_000, lockoutMs: 60_000 } }),
  )
  const right = await greet(t, port)
  const wrong = [await greet(t, port), await greet(t, port), await greet(t, port)]
  right.send(encodePasswordRequest('erin', 'right'))
  // The same wrong guess three times: one guess in flight, three failures when it fails.
  for (const c of wrong) c.send(encodePasswordRequest('erin', 'wrong'))
  await held.called(4)
  for (const call of held.calls.slice(1)) call.answer(false)
  for (const c of wrong) assert.deepEqual(await c.read(2), hex('0101'))
  held.calls[0]!.answer(true)
  assert.deepEqual(await right.read(2), hex('0101'), 'locked out while its password was being checked')
})

test('a burst of right logins from one client is not refused: identical ones share a slot, distinct ones wait their turn', async (t) => {
  const users: Record<string, string> = {}
  const passwords = Array.from({ length: 6 }, (_, i) => `password-${i}`)
  await Promise.all(passwords.map(async (password, i) => (users[`user${i}`] = await hashPassword(password, { N: 1024 }))))
  const { port } = await startSocks(t, {}, (server) => server.register(auth, { users, throttle: { maxFailures: 3, windowMs: 60_000, lockoutMs: 60_000 } }))
  const logins: [string, string][] = [...Array.from({ length: 20 }, (): [string, string] => ['user0', 'password-0']), ...passwords.slice(1).map((p, i): [string, string] => [`user${i + 1}`, p])]
  const clients = []
  for (let i = 0; i < logins.length; i++) clients.push(await greet(t, port))
  clients.forEach((c, i) => c.send(encodePasswordRequest(...logins[i]!)))
  const replies = await Promise.all(clients.map((c) => c.read(2)))
  assert.deepEqual(replies.map((r) => r.toString('hex')), logins.map(() => '0100'))
})

test('one client\'s flood of logins does not starve another client: the hashing queue takes clients in turn', async (t) => {
  const attempts = countAttempts()
  const { port } = await startSocks(t, {}, (server) => {
    server.use('auth', attempts.middleware)
    // No throttle, one hash at a time: only the queue's order stands between the flood and the login.
    server.register(auth, { users: { alice: SECRET_HASH }, throttle: false, maxConcurrentHashes: 1, cacheTtlMs: 0 })
  })
  const flood = []
  for (let i = 0; i < 200; i++) flood.push(await greet(t, port, '127.0.0.2'))
  let floodAnswered = 0
  for (const c of flood) c.socket.once('data', () => floodAnswered++)
  flood.forEach((c, i) => c.send(encodePasswordRequest('alice', `wrong-${i}`)))
  const legit = await greet(t, port, '127.0.0.3')
  await attempts.reached(200)
  const answeredBefore = floodAnswered
  legit.send(encodePasswordRequest('alice', SECRET))
  assert.deepEqual(await legit.read(2, 10_000), hex('0100'))
  // In turn: the hash running and the flood's next one, give or take a few finishing while the login
  // travels; first come first served would be all that is left of the 200.
  const waitedFor = floodAnswered - answeredBefore
  assert.ok(waitedFor <= 20, `the login from 127.0.0.3 waited for ${waitedFor} of the flood's hashes (${answeredBefore} were done before it came)`)
  await Promise.all(flood.map((c) => c.read(2, 10_000)))
})

test('FailureThrottle.admit: identical guesses share a place, others wait for room, a waiter whose client left is dropped', async () => {
  const throttle = new FailureThrottle({ maxFailures: 2, windowMs: 60_000, lockoutMs: 60_000, maxClients: 10 })
  assert.equal(throttle.admit('c', 'g1', null), true)
  assert.equal(throttle.admit('c', 'g1', null), true, 'the same guess again shares its place')
  assert.equal(throttle.admit('c', 'g2', null), true)
  const leaving = new AbortController()
  const gone = throttle.admit('c', 'g3', leaving.signal)
  const waiting = throttle.admit('c', 'g4', null)
  assert.ok(gone instanceof Promise && waiting instanceof Promise, 'no room: two guesses are out')
  assert.equal(throttle.admit('other', 'g3', null), true, 'another client has its own room')
  leaving.abort()
  await assert.rejects(gone, (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_CLIENT_CLOSED')
  throttle.end('c', 'g1', false)
  throttle.end('c', 'g1', false)
  assert.equal(await waiting, true, 'a right login freed a place: the next waiter goes')
  assert.equal(throttle.end('c', 'g2', true), false)
  const last = throttle.admit('c', 'g5', null)
  assert.ok(last instanceof Promise, 'one failure and one guess out fill the room of two')
  assert.equal(throttle.end('c', 'g4', true), true, 'the second failure locks the client out')
  assert.equal(await last, false, 'and the waiter is refused unchecked')
  assert.equal(throttle.admit('c', 'g6', null), false)
})
