// Reload: the listeners stay, new connections get the new pipeline, accepted ones keep theirs.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { loadConfig, isSocksError, type LoadedConfig, type SocksServer } from 'socksmith'
import { createServerFromConfig, reloadFromConfig } from 'socksmith/config'
import { silentLogger } from 'socksmith/ops'
import { socksAssociate, socksConnect } from 'socksmith/client'
import { hashPassword } from 'socksmith/plugins/auth'
import { encodePasswordRequest } from 'socksmith/protocol'
import { RawClient, hex, ipv4Request, startEcho, startUdpEcho, waitFor } from '../helpers/net.js'
import { echoThrough } from '../helpers/spawn.js'
import { project, write } from './helpers.js'

// Sends CONNECTs for port 9 to `to`, and prefixes outgoing datagrams with `tag`.
const REDIRECT_PLUGIN = `
export default {
  name: 'redirect',
  parseOptions(raw, at) {
    if (!Number.isInteger(raw?.to)) at.fail('to', 'must be a port')
    return raw
  },
  setup(host, { to, tag }) {
    host.use('request', async function redirect(ctx, next) {
      if (ctx.destination.port === 9) ctx.destination = { ...ctx.destination, port: to }
      await next()
    })
    host.use('datagram', async function tagDatagram(ctx, next) {
      if (ctx.direction === 'out') ctx.data = Buffer.concat([Buffer.from(tag + ':'), ctx.data])
      await next()
    })
  },
}
`

async function start(t: Parameters<typeof project>[0], dir: string): Promise<{ server: SocksServer; port: number; loaded: LoadedConfig }> {
  const loaded = await loadConfig({ cwd: dir })
  const server = createServerFromConfig(loaded, { logger: silentLogger })
  t.after(() => server.close({ drainTimeout: 0 }))
  const { port } = await server.listen(loaded.config.listen[0])
  return { server, port, loaded }
}

const config = (to: number, tag: string, extra = ''): string => `listen: { port: 0 }\n${extra}plugins:\n  - [./redirect.mjs, { to: ${to}, tag: ${tag} }]\n`

test('after a reload new connections use the new pipeline; one accepted before keeps the old', async (t) => {
  const a = await startEcho(t)
  const b = await startEcho(t)
  const dir = project(t, { 'redirect.mjs': REDIRECT_PLUGIN, 'socksmith.config.yaml': config(a.port, 'A') })
  const { server, port, loaded } = await start(t, dir)
  assert.equal(await echoThrough(port, 9), 'ping')
  assert.equal(a.accepted(), 1)

  // Accepted and half-way through its handshake when the reload happens.
  const early = await RawClient.connect(t, port)
  early.send('050100')
  assert.deepEqual(await early.read(2), hex('0500'))

  write(dir, { 'socksmith.config.yaml': config(b.port, 'B', 'limits: { perClient: 3 }\ntimeouts: { idle: 7s }\n') })
  const result = await reloadFromConfig(server, loaded, { logger: silentLogger })
  assert.deepEqual(result.needsRestart, [])
  assert.equal(server.maxConnectionsPerClient, 3)
  assert.equal(server.timeouts.idle, 7000)
  assert.equal(server.address()?.port, port, 'the same listener')

  early.send(ipv4Request(1, '127.0.0.1', 9))
  assert.deepEqual((await early.read(10)).subarray(0, 2), hex('0500'))
  early.send(Buffer.from('old'))
  assert.equal((await early.read(3)).toString(), 'old')
  assert.equal(a.accepted(), 2, 'the early connection went where the old config said')

  assert.equal(await echoThrough(port, 9), 'ping')
  assert.equal(b.accepted(), 1, 'a new connection goes where the new config says')
  early.socket.end()
})

test('a UDP association keeps the datagram chain it started with', async (t) => {
  const udpEcho = await startUdpEcho(t)
  const dir = project(t, { 'redirect.mjs': REDIRECT_PLUGIN, 'socksmith.config.yaml': config(1, 'A') })
  const { server, port, loaded } = await start(t, dir)
  const before = await socksAssociate({ host: '127.0.0.1', port })
  t.after(() => before.close())
  write(dir, { 'socksmith.config.yaml': config(1, 'B') })
  await reloadFromConfig(server, loaded, { logger: silentLogger })
  const after = await socksAssociate({ host: '127.0.0.1', port })
  t.after(() => after.close())
  const echoOf = async (association: typeof before): Promise<string> => {
    const reply = once(association, 'message')
    association.send(Buffer.from('hi'), { host: '127.0.0.1', port: udpEcho.port })
    const [data] = (await reply) as [Buffer]
    return data.toString()
  }
  assert.equal(await echoOf(before), 'A:hi')
  assert.equal(await echoOf(after), 'B:hi')
})

test('connections of users removed from auth are closed; the others are untouched', async (t) => {
  const echo = await startEcho(t)
  const users = (list: string): string => `listen: { port: 0 }\nplugins:\n  - [auth, { users: { ${list} } }]\n`
  const dir = project(t, { 'socksmith.config.yaml': users('alice: a, bob: b'), 'more-users': '' })
  const { server, port, loaded } = await start(t, dir)
  const alice = await socksConnect({ host: '127.0.0.1', port, username: 'alice', password: 'a' }, { host: '127.0.0.1', port: echo.port })
  const bob = await socksConnect({ host: '127.0.0.1', port, username: 'bob', password: 'b' }, { host: '127.0.0.1', port: echo.port })
  t.after(() => {
    alice.socket.destroy()
    bob.socket.destroy()
  })
  bob.socket.on('error', () => {})
  // The proxy ending bob's connection shows as an end of stream (or a reset) on his side.
  const bobClosed = new Promise((resolve) => {
    bob.socket.once('end', resolve).once('close', resolve)
  })
  bob.socket.resume()
  write(dir, { 'socksmith.config.yaml': users('alice: a, carol: c') })
  const result = await reloadFromConfig(server, loaded, { logger: silentLogger })
  assert.equal(result.closed, 1)
  await bobClosed
  alice.socket.write('still alive')
  const [data] = (await once(alice.socket, 'data')) as [Buffer]
  assert.equal(data.toString(), 'still alive')
  await assert.rejects(socksConnect({ host: '127.0.0.1', port, username: 'bob', password: 'b' }, { host: '127.0.0.1', port: echo.port }), (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_AUTH_FAILED')
  assert.equal(await echoThrough(port, echo.port, { user: 'carol', password: 'c' }), 'ping')
  alice.socket.end()
  await waitFor(() => server.connections === 0)
})

test('an invalid new config changes nothing and says why', async (t) => {
  const a = await startEcho(t)
  const dir = project(t, { 'redirect.mjs': REDIRECT_PLUGIN, 'socksmith.config.yaml': config(a.port, 'A') })
  const { server, port, loaded } = await start(t, dir)
  write(dir, { 'socksmith.config.yaml': 'listen: { port: 0 }\nplugins:\n  - [./redirect.mjs, { to: nope }]\n' })
  await assert.rejects(reloadFromConfig(server, loaded, { logger: silentLogger }), (err: unknown) => {
    assert.ok(isSocksError(err))
    assert.equal(err.code, 'ERR_PLUGIN_OPTIONS')
    assert.equal(err.message, 'socksmith.config.yaml: plugins[0] (redirect): to: must be a port')
    return true
  })
  write(dir, { 'socksmith.config.yaml': 'listen: { port: 0 }\nplugins: [./gone.mjs]\n' })
  await assert.rejects(reloadFromConfig(server, loaded, { logger: silentLogger }), /ERR_PLUGIN_NOT_FOUND|plugin file not found/)
  assert.equal(await echoThrough(port, 9), 'ping')
  assert.equal(a.accepted(), 1, 'still the old pipeline')
})

test('a changed listener is reported as needing a restart', async (t) => {
  const dir = project(t, { 'socksmith.config.yaml': 'listen: { port: 0 }\n' })
  const { server, loaded } = await start(t, dir)
  write(dir, { 'socksmith.config.yaml': 'listen: { port: 0, host: "::1" }\n' })
  const result = await reloadFromConfig(server, loaded, { logger: silentLogger })
  assert.deepEqual(result.needsRestart, ['listen'])
})

/** A live CONNECT through the proxy as `username`, its close awaited as an end of stream or a reset. */
async function relayAs(t: Parameters<typeof project>[0], port: number, echoPort: number, username: string, password: string) {
  const { socket } = await socksConnect({ host: '127.0.0.1', port, username, password }, { host: '127.0.0.1', port: echoPort })
  t.after(() => socket.destroy())
  socket.on('error', () => {})
  socket.resume()
  const closed = new Promise((resolve) => socket.once('end', resolve).once('close', resolve))
  return { socket, closed }
}

async function roundTrip(socket: import('node:net').Socket, text: string): Promise<string> {
  socket.write(text)
  const [data] = (await once(socket, 'data')) as [Buffer]
  return data.toString()
}

test('usersFile: a user removed from the file has their live connections closed on reload; the others keep theirs', async (t) => {
  const echo = await startEcho(t)
  const aliceHash = await hashPassword('a-pass', { N: 1024 })
  const bobHash = await hashPassword('b-pass', { N: 1024 })
  const dir = project(t, {
    'socksmith.config.yaml': 'listen: { port: 0 }\nplugins:\n  - [auth, { usersFile: users }]\n',
    users: `alice:${aliceHash}\nbob:${bobHash}\n`,
  })
  const { server, port, loaded } = await start(t, dir)
  const alice = await relayAs(t, port, echo.port, 'alice', 'a-pass')
  const bob = await relayAs(t, port, echo.port, 'bob', 'b-pass')
  // Only the users file changes: the config file reads the same.
  write(dir, { users: `bob:${bobHash}\n` })
  const result = await reloadFromConfig(server, loaded, { logger: silentLogger })
  assert.equal(result.closed, 1)
  await alice.closed
  assert.equal(await roundTrip(bob.socket, 'still here'), 'still here', "bob's connection is untouched")
  await assert.rejects(socksConnect({ host: '127.0.0.1', port, username: 'alice', password: 'a-pass' }, { host: '127.0.0.1', port: echo.port }), (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_AUTH_FAILED')
  bob.socket.end()
  await waitFor(() => server.connections === 0)
})

test('"alice : <hash>" in a users file is the user alice, for the reload as for logins', async (t) => {
  const echo = await startEcho(t)
  const aliceHash = await hashPassword('a-pass', { N: 1024 })
  const dir = project(t, {
    'socksmith.config.yaml': 'listen: { port: 0 }\nplugins:\n  - [auth, { users: { alice: a-pass } }]\n',
    users: `alice : ${aliceHash}\n`,
  })
  const { server, port, loaded } = await start(t, dir)
  const alice = await relayAs(t, port, echo.port, 'alice', 'a-pass')
  // alice moves from the inline users to the file, written with spaces around the colon.
  write(dir, { 'socksmith.config.yaml': 'listen: { port: 0 }\nplugins:\n  - [auth, { usersFile: users }]\n' })
  const result = await reloadFromConfig(server, loaded, { logger: silentLogger })
  assert.equal(result.closed, 0, 'alice is still a user')
  assert.equal(await roundTrip(alice.socket, 'still here'), 'still here')
  assert.equal(await echoThrough(port, echo.port, { user: 'alice', password: 'a-pass' }), 'ping', 'and logs in as alice')
  alice.socket.end()
  await waitFor(() => server.connections === 0)
})

test('a connection accepted before the reload cannot log in afterwards as a user the reload removed', async (t) => {
  const echo = await startEcho(t)
  const users = (list: string): string => `listen: { port: 0 }\nplugins:\n  - [auth, { users: { ${list} } }]\n`
  const dir = project(t, { 'socksmith.config.yaml': users('alice: a-pass, bob: b-pass') })
  const { server, port, loaded } = await start(t, dir)
  const early = await RawClient.connect(t, port)
  early.send('050102')
  assert.deepEqual(await early.read(2), hex('0502'))
  write(dir, { 'socksmith.config.yaml': users('bob: b-pass') })
  await reloadFromConfig(server, loaded, { logger: silentLogger })
  // It keeps the pipeline it was accepted with, but not the users that pipeline knew.
  early.send(encodePasswordRequest('alice', 'a-pass'))
  assert.deepEqual(await early.read(2), hex('0101'))
  await early.expectClose()
  assert.equal(await echoThrough(port, echo.port, { user: 'bob', password: 'b-pass' }), 'ping')
  await waitFor(() => server.connections === 0)
})
