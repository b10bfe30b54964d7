// The auth plugin's throttle and hashing queue under parallel logins, over real loopback sockets:
// what one client is (the server's clientPrefix), attempts in flight, and fairness between clients.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { hashPassword } from 'socksmith/plugins/auth'
import auth from 'socksmith/plugins/auth'
import { encodePasswordRequest } from 'socksmith/protocol'
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
