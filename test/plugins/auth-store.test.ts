// The auth plugin's users in the shared store (usersInStore): lookups, the cache, and removals or
// password changes closing live connections at once; on one in-process memory store, on two
// servers sharing a real Redis (through the functions and the `socksmith users` commands), with
// Redis stopped (fail closed) and back; and the CLI's refusal of a store it cannot reach.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import { join } from 'node:path'
import { createServer, createStore, type ConnectionContext, type Logger, type SharedStore, type SocksServer } from 'socksmith'
import { silentLogger } from 'socksmith/ops'
import auth, { addStoredUser, hashPassword, listStoredUsers, removeStoredUser, storedUserKey, USERS_CHANNEL, type AuthOptions } from 'socksmith/plugins/auth'
import { RawClient, hex, ipv4Request, startEcho, waitFor } from '../helpers/net.js'
import { needs, peer } from '../helpers/peers.js'
import { adminClient, startRedis, whileUnsubscribed } from '../helpers/redis.js'
import { CLI, listeningPort, runCli, start, tempDir } from '../helpers/spawn.js'

const redis = peer('redis-server')
// Cheap hashes keep the suite quick (the CLI's users add uses the default cost).
const CHEAP = { N: 1024 }

interface Node {
  readonly server: SocksServer
  readonly port: number
  readonly ended: ConnectionContext[]
  /** When each ended connection's disconnect fired (Date.now()). */
  readonly endedAt: Map<ConnectionContext, number>
}

async function startNode(t: TestContext, store: SharedStore | { type: 'redis'; url: string; timeout: number } | undefined, options: AuthOptions = { usersInStore: true }, logger: Logger = silentLogger): Promise<Node> {
  const server = createServer({ logger, ...(store === undefined ? {} : { store }) })
  server.register(auth, options)
  const ended: ConnectionContext[] = []
  const endedAt = new Map<ConnectionContext, number>()
  server.on('disconnect', (ctx) => {
    endedAt.set(ctx, Date.now())
    ended.push(ctx)
  })
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 })
  t.after(async () => {
    await server.close({ drainTimeout: 0 })
    assert.equal(server.connections, 0)
  })
  return { server, port, ended, endedAt }
}

/**
 * Resolves once `count` subscribers listen to the auth plugin's channel on the Redis at `url`
 * (PUBSUB NUMSUB, asked every few ms, bounded): a node subscribes at start-up, and if its first
 * try misses the store's timeout (a cold connect on a loaded machine) it tries again a second
 * later. An announcement sent before that is not heard by it: a test of the announcement waits
 * for the subscriptions, so it measures the announcement and not the start-up.
 */
async function subscribers(t: TestContext, url: string, count: number): Promise<void> {
  const redis = await adminClient(t, url)
  const channel = `socksmith:${USERS_CHANNEL}`
  const deadline = Date.now() + 10_000
  for (;;) {
    const [, listening] = (await redis.pubsub('NUMSUB', channel)) as [string, number]
    if (Number(listening) >= count) return
    if (Date.now() > deadline) throw new Error(`${listening} of ${count} subscribers on ${channel} after 10 s`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Logs in with RFC 1929: the status byte (0 = accepted), and the client to go on with. */
async function login(t: TestContext, port: number, user: string, password: string): Promise<{ client: RawClient; status: number }> {
  const client = await RawClient.connect(t, port)
  const u = Buffer.from(user)
  const p = Buffer.from(password)
  client.send(Buffer.concat([hex('050102'), Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]))
  assert.deepEqual(await client.read(2), hex('0502'))
  const status = (await client.read(2))[1]!
  return { client, status }
}

/** A relayed connection of `user` through `port` to the echo server, checked to relay. */
async function relayAs(t: TestContext, port: number, user: string, password: string, echoPort: number): Promise<RawClient> {
  const { client, status } = await login(t, port, user, password)
  assert.equal(status, 0, `${user} logs in`)
  client.send(ipv4Request(1, '127.0.0.1', echoPort))
  assert.equal((await client.read(10))[1], 0)
  client.send(Buffer.from('ping'))
  assert.equal((await client.read(4)).toString(), 'ping')
  return client
}

/** The connection still relays (a removal of someone else left it alone); then it is ended. */
async function stillRelays(client: RawClient): Promise<void> {
  assert.equal(client.ended, false)
  client.send(Buffer.from('pong'))
  assert.equal((await client.read(4)).toString(), 'pong')
  client.socket.end()
  await client.readToEnd()
}

async function refused(t: TestContext, port: number, user: string, password: string): Promise<void> {
  const { client, status } = await login(t, port, user, password)
  assert.equal(status, 1, `${user} is refused`)
  await client.expectClose()
}

/**
 * A clock for "closed within N ms": started before the change, it also measures how late this
 * process's event loop ran meanwhile. The nodes under test run in this process: when a loaded
 * machine does not schedule it for 300 ms, their reaction is 300 ms later without being any
 * slower, and that lag (and only that) is allowed on top of the bound.
 */
function startClock(): { since: number; lag: IntervalHistogram } {
  const lag = monitorEventLoopDelay({ resolution: 10 })
  lag.enable()
  return { since: Date.now(), lag }
}

/**
 * Waits (on the clients' close, bounded generously so a hang fails) until the nodes have closed
 * every one of `clients`, and asserts that each node ended it within `within` ms of the clock's
 * start, as its own `disconnect` event says (the moment the server acted, not when this test got
 * around to reading the close), plus the scheduling lag the clock measured.
 */
async function closedWithin(nodes: readonly Node[], clients: RawClient[], clock: { since: number; lag: IntervalHistogram }, within: number): Promise<void> {
  await Promise.all(clients.map((client) => client.expectClose(10_000)))
  const ports = new Set(clients.map((client) => client.socket.localPort))
  await waitFor(() => nodes.reduce((n, node) => n + node.ended.filter((ctx) => ports.has(ctx.client.port)).length, 0) === clients.length, 5000)
  clock.lag.disable()
  const lastEnd = Math.max(...nodes.flatMap((node) => node.ended.filter((ctx) => ports.has(ctx.client.port)).map((ctx) => node.endedAt.get(ctx)!)))
  const took = lastEnd - clock.since
  // The histogram's max is in nanoseconds; it includes its own 10 ms resolution.
  const slack = Math.round(clock.lag.max / 1e6)
  assert.ok(took < within + slack, `the last one closed ${took} ms after the change (bound ${within} ms + ${slack} ms this process was not scheduled)`)
}

test('usersInStore on the memory store: a stored user logs in; removal and a new password close its relayed connections at once', async (t) => {
  const echo = await startEcho(t)
  const node = await startNode(t, undefined, { usersInStore: true, throttle: false })
  const store = node.server.store
  assert.equal(await addStoredUser(store, 'alice', 'first', CHEAP), 'added')
  assert.equal(await addStoredUser(store, 'bob', 'bobs', CHEAP), 'added')
  assert.match((await store.getRecord(storedUserKey('alice'))) ?? '', /^\$scrypt\$N=1024,r=8,p=1\$/, 'only the hash is stored')
  assert.deepEqual(await listStoredUsers(store), ['alice', 'bob'])
  await refused(t, node.port, 'alice', 'wrong')
  await refused(t, node.port, 'nobody', 'first')

  const alice = await relayAs(t, node.port, 'alice', 'first', echo.port)
  const bob = await relayAs(t, node.port, 'bob', 'bobs', echo.port)
  // A new password: the old one's connection closes, the old password no longer logs in (the login cache is dropped too).
  let clock = startClock()
  assert.equal(await addStoredUser(store, 'alice', 'second', CHEAP), 'replaced')
  await closedWithin([node], [alice], clock, 1000)
  await refused(t, node.port, 'alice', 'first')
  const again = await relayAs(t, node.port, 'alice', 'second', echo.port)

  clock = startClock()
  assert.equal(await removeStoredUser(store, 'alice'), true)
  await closedWithin([node], [again], clock, 1000)
  await waitFor(() => node.ended.filter((ctx) => ctx.user === 'alice').length === 2)
  for (const ctx of node.ended.filter((c) => c.user === 'alice')) {
    assert.equal((ctx.error as { code?: string }).code, 'ERR_SOCKS_AUTH_FAILED')
    assert.equal(ctx.closeReason, 'auth:userChanged')
  }
  await refused(t, node.port, 'alice', 'second')
  assert.equal(await removeStoredUser(store, 'alice'), false)
  await stillRelays(bob)
})

test('usersInStore: inline users win over the store, and a change of that name in the store closes nothing', async (t) => {
  const echo = await startEcho(t)
  const node = await startNode(t, undefined, { users: { carol: 'inline' }, usersInStore: true })
  await addStoredUser(node.server.store, 'carol', 'stored', CHEAP)
  await refused(t, node.port, 'carol', 'stored')
  const carol = await relayAs(t, node.port, 'carol', 'inline', echo.port)
  await removeStoredUser(node.server.store, 'carol')
  // The announcement goes to this process's subscribers on a later tick: let it arrive.
  await new Promise((resolve) => setTimeout(resolve, 50))
  await stillRelays(carol)
})

test('after a reload the live setup closes the removed user\'s connections of both pipelines, and says so once', async (t) => {
  const echo = await startEcho(t)
  const lines: string[] = []
  const logger: Logger = { ...silentLogger, info: (message) => void lines.push(message) }
  const node = await startNode(t, undefined, { usersInStore: true }, logger)
  await addStoredUser(node.server.store, 'alice', 'pw', CHEAP)
  const before = await relayAs(t, node.port, 'alice', 'pw', echo.port)
  const next = createServer({ logger })
  next.register(auth, { usersInStore: true })
  await node.server.reload(next)
  const after = await relayAs(t, node.port, 'alice', 'pw', echo.port)
  // The add was announced too (closing nothing): only the removal's line is of interest.
  lines.length = 0
  const clock = startClock()
  await removeStoredUser(node.server.store, 'alice')
  await closedWithin([node], [before, after], clock, 1000)
  assert.deepEqual(lines.filter((line) => line.includes('changed in the store')), ['auth: user "alice" changed in the store; closed 2 of its connection(s)'])
})

test('two servers on one Redis share one user table: add on one, log in on both; removal (function, then the CLI) closes the user on both within 1 s', needs(redis), async (t) => {
  const redisServer = await startRedis(t)
  const echo = await startEcho(t)
  const storeOptions = { type: 'redis', url: redisServer.url, timeout: 300 } as const
  const a = await startNode(t, storeOptions)
  const b = await startNode(t, storeOptions)
  await subscribers(t, redisServer.url, 2)
  // Through one node's store: the other has never seen the user.
  await addStoredUser(a.server.store, 'alice', 'alice-pw', CHEAP)
  await addStoredUser(a.server.store, 'bob', 'bob-pw', CHEAP)
  const aliceOnA = await relayAs(t, a.port, 'alice', 'alice-pw', echo.port)
  const aliceOnB = await relayAs(t, b.port, 'alice', 'alice-pw', echo.port)
  const bobOnA = await relayAs(t, a.port, 'bob', 'bob-pw', echo.port)
  const bobOnB = await relayAs(t, b.port, 'bob', 'bob-pw', echo.port)

  // An admin program with a store of its own.
  const admin = createStore(storeOptions)
  t.after(() => admin.close())
  // The clock starts before the removal (which publishes it): the bound covers pub/sub delivery.
  const clock = startClock()
  assert.equal(await removeStoredUser(admin, 'alice'), true)
  await closedWithin([a, b], [aliceOnA, aliceOnB], clock, 1000)
  await refused(t, a.port, 'alice', 'alice-pw')
  await refused(t, b.port, 'alice', 'alice-pw')

  // The same through the CLI, with the config file an operator of this fleet would have.
  const dir = tempDir(t)
  const config = join(dir, 'socksmith.yaml')
  writeFileSync(config, `store: { type: redis, url: "${redisServer.url}" }\nplugins:\n  - [auth, { usersInStore: true }]\n`)
  const added = await runCli(t, ['users', 'add', 'alice', '--config', config], { input: 'cli-pw\n' })
  assert.equal(added.code, 0, added.stderr)
  assert.equal(added.stdout, 'added user "alice"\n')
  const listed = await runCli(t, ['users', 'list', '--config', config])
  assert.equal(listed.stdout, 'alice\nbob\n')
  const cliOnA = await relayAs(t, a.port, 'alice', 'cli-pw', echo.port)
  const cliOnB = await relayAs(t, b.port, 'alice', 'cli-pw', echo.port)
  // The CLI's start-up (a second or so of Node and the config) is not the plugin's: the clock
  // starts at the publish, as the admin store's own subscription sees it arrive (no later than
  // the nodes' do: the same Redis delivers to every subscriber), or at the CLI's exit if earlier.
  let published: { since: number; lag: IntervalHistogram } | null = null
  const unsubscribe = await admin.subscribe(USERS_CHANNEL, (name) => {
    if (name === 'alice') published ??= startClock()
  })
  t.after(() => unsubscribe())
  const removed = await runCli(t, ['users', 'remove', 'alice', '--config', config])
  published ??= startClock()
  assert.equal(removed.code, 0, removed.stderr)
  assert.equal(removed.stdout, 'removed user "alice"; its live connections are closed on every node\n')
  await closedWithin([a, b], [cliOnA, cliOnB], published, 1000)
  await refused(t, b.port, 'alice', 'cli-pw')
  const again = await runCli(t, ['users', 'remove', 'alice', '--config', config])
  assert.equal(again.code, 1)
  assert.match(again.stderr, /there is no user "alice" in the store/)

  // Bob's connections lived through all of it.
  await stillRelays(bobOnA)
  await stillRelays(bobOnB)
})

test('Redis stopped: logins of store users are refused (fail closed); after a restart they work again, removals included', needs(redis), async (t) => {
  const redisServer = await startRedis(t)
  const echo = await startEcho(t)
  const storeOptions = { type: 'redis', url: redisServer.url, timeout: 300 } as const
  const warnings: string[] = []
  const logger: Logger = { ...silentLogger, warn: (message) => void warnings.push(message) }
  const node = await startNode(t, storeOptions, { usersInStore: true, throttle: false }, logger)
  await addStoredUser(node.server.store, 'carol', 'carol-pw', CHEAP)
  await redisServer.stop()
  await refused(t, node.port, 'carol', 'carol-pw')
  await refused(t, node.port, 'carol', 'carol-pw')
  assert.equal(warnings.length, 1, warnings.join('\n'))
  assert.match(warnings[0]!, /^auth: the redis store did not answer \(redis store: getRecord failed: .*\); logins of users in the store are refused until it answers \(further failures this minute are not logged\)$/)
  await redisServer.start()
  // A new Redis without persistence: the user table is empty until the user is added again.
  const admin = createStore(storeOptions)
  t.after(() => admin.close())
  await addStoredUser(admin, 'carol', 'carol-pw', CHEAP)
  let carol: RawClient | null = null
  for (let i = 0; i < 40 && carol === null; i++) {
    const attempt = await login(t, node.port, 'carol', 'carol-pw')
    if (attempt.status === 0) carol = attempt.client
    else await new Promise((resolve) => setTimeout(resolve, 50))
  }
  assert.ok(carol !== null, 'logins work again once Redis answers')
  carol.send(ipv4Request(1, '127.0.0.1', echo.port))
  assert.equal((await carol.read(10))[1], 0)
  // The subscription came back with the connection (ioredis subscribes again): an announcement still closes.
  const clock = startClock()
  for (let i = 0; i < 40 && !carol.ended; i++) {
    await admin.publish(USERS_CHANNEL, 'carol')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  await closedWithin([node], [carol], clock, 3000)
})

test('socksmith users against a memory store (here: a running socksmith --workers 2) says it needs a shared store', async (t) => {
  const dir = tempDir(t)
  const config = join(dir, 'socksmith.yaml')
  writeFileSync(config, ['listen: { port: 0 }', 'plugins:', '  - [auth, { usersInStore: true }]', ''].join('\n'))
  const running = start(t, process.execPath, [CLI, '--config', config, '--workers', '2', '--pid-file', join(dir, 'pid')])
  await listeningPort(running, 30_000)
  const result = await runCli(t, ['users', 'add', 'alice', '--config', config], { input: 'pw\n' })
  assert.equal(result.code, 1)
  assert.equal(result.stdout, '')
  assert.match(result.stderr, /^socksmith: users add: \S*socksmith\.yaml: the store is memory, which lives inside a running socksmith \(under --workers, in its primary\) where this command cannot reach it\. Users for `socksmith users` need a shared store: set store: \{ type: redis, url: redis:\/\/HOST:PORT \}/)
  const usage = await runCli(t, ['users', 'frobnicate'])
  assert.equal(usage.code, 2)
  assert.match(usage.stderr, /usage: socksmith users add NAME/)
  running.child.kill('SIGTERM')
  assert.equal((await running.exited).code, 0)
})

// Announcements are fire-and-forget (PUBLISH): those sent while a node is not subscribed are lost
// for it. Once its subscription is back, the node checks its store users' live connections.
const CHANNEL = `socksmith:${USERS_CHANNEL}`
const recordOf = (name: string): string => `socksmith:record:${storedUserKey(name)}`

/** A logger that keeps the info and warn lines. */
function keptLines(): { logger: Logger; info: string[]; warn: string[] } {
  const info: string[] = []
  const warn: string[] = []
  return { logger: { ...silentLogger, info: (message) => void info.push(message), warn: (message) => void warn.push(message) }, info, warn }
}

/** The connection still relays, and stays open. */
async function relaysStill(client: RawClient, text: string): Promise<void> {
  assert.equal(client.ended, false)
  client.send(Buffer.from(text))
  assert.equal((await client.read(text.length)).toString(), text)
}

/** The node ended `user`'s connections with the reason an announcement gives. */
function assertClosedAsChanged(node: Node, user: string, count: number): void {
  const ended = node.ended.filter((ctx) => ctx.user === user)
  assert.equal(ended.length, count)
  for (const ctx of ended) {
    assert.equal((ctx.error as { code?: string }).code, 'ERR_SOCKS_AUTH_FAILED')
    assert.equal(ctx.closeReason, 'auth:userChanged')
  }
}

test('a removal announced while the node\'s subscriber connection was down: once it is back, the user\'s live connection closes within 2 s; an unchanged user keeps its own', needs(redis), async (t) => {
  const redisServer = await startRedis(t)
  const echo = await startEcho(t)
  const lines = keptLines()
  const node = await startNode(t, { type: 'redis', url: redisServer.url, timeout: 300 }, { usersInStore: true }, lines.logger)
  await subscribers(t, redisServer.url, 1)
  await addStoredUser(node.server.store, 'alice', 'alice-pw', CHEAP)
  await addStoredUser(node.server.store, 'bob', 'bob-pw', CHEAP)
  const alice = await relayAs(t, node.port, 'alice', 'alice-pw', echo.port)
  const bob = await relayAs(t, node.port, 'bob', 'bob-pw', echo.port)
  const admin = await adminClient(t, redisServer.url)
  const clock = startClock()
  // What `socksmith users remove alice` does, while the node's subscriber connection is cut.
  const { replies, subscribers: listening } = await whileUnsubscribed(admin, CHANNEL, [['DEL', recordOf('alice')], ['PUBLISH', CHANNEL, 'alice']])
  assert.equal(listening, 0)
  assert.deepEqual(replies, [1, 0], 'the record went, and nobody heard the announcement')
  await closedWithin([node], [alice], clock, 2000)
  assertClosedAsChanged(node, 'alice', 1)
  await waitFor(() => lines.info.some((line) => line.startsWith('auth: announcements of user changes may have been missed')))
  assert.deepEqual(lines.info.filter((line) => line.includes('missed')), [
    'auth: user "alice" changed in the store (found after missed announcements); closed 1 of its connection(s)',
    'auth: announcements of user changes may have been missed; checked 2 user(s) of live connections against the store, 1 had changed, closed 1 connection(s)',
  ])
  await stillRelays(bob)
  // alice's lookup was cached before the gap (lookupCacheMs 5 s): the gap dropped it.
  await refused(t, node.port, 'alice', 'alice-pw')
  // And the subscription is back: an announcement closes at once again.
  const bobAgain = await relayAs(t, node.port, 'bob', 'bob-pw', echo.port)
  const announced = startClock()
  await removeStoredUser(node.server.store, 'bob')
  await closedWithin([node], [bobAgain], announced, 1000)
})

test('a new password set while the node\'s subscriber connection was down: the connection of the old one closes once it is back; the old password is refused, the new one logs in', needs(redis), async (t) => {
  const redisServer = await startRedis(t)
  const echo = await startEcho(t)
  const node = await startNode(t, { type: 'redis', url: redisServer.url, timeout: 300 }, { usersInStore: true })
  await subscribers(t, redisServer.url, 1)
  await addStoredUser(node.server.store, 'alice', 'old-pw', CHEAP)
  const alice = await relayAs(t, node.port, 'alice', 'old-pw', echo.port)
  const admin = await adminClient(t, redisServer.url)
  const hash = await hashPassword('new-pw', CHEAP)
  const clock = startClock()
  const { replies, subscribers: listening } = await whileUnsubscribed(admin, CHANNEL, [['SET', recordOf('alice'), hash], ['PUBLISH', CHANNEL, 'alice']])
  assert.equal(listening, 0)
  assert.deepEqual(replies, ['OK', 0])
  await closedWithin([node], [alice], clock, 2000)
  assertClosedAsChanged(node, 'alice', 1)
  // Both the lookup and the login of the old password were cached: neither lets it in now.
  await refused(t, node.port, 'alice', 'old-pw')
  const again = await relayAs(t, node.port, 'alice', 'new-pw', echo.port)
  await stillRelays(again)
})

test('the store failing while the node checks after a gap: live connections stay open (a warning says why), and are checked again once it answers', needs(redis), async (t) => {
  const redisServer = await startRedis(t)
  const echo = await startEcho(t)
  const admin = await adminClient(t, redisServer.url)
  // A Redis user of the node's own, so that the test can take GET away from the node alone.
  await admin.call('ACL', 'SETUSER', 'node', 'on', '>node-pw', '~*', '&*', '+@all')
  const lines = keptLines()
  const url = `redis://node:node-pw@127.0.0.1:${redisServer.port}`
  const node = await startNode(t, { type: 'redis', url, timeout: 300 }, { usersInStore: true, throttle: false }, lines.logger)
  await subscribers(t, redisServer.url, 1)
  await addStoredUser(node.server.store, 'alice', 'alice-pw', CHEAP)
  await addStoredUser(node.server.store, 'bob', 'bob-pw', CHEAP)
  const alice = await relayAs(t, node.port, 'alice', 'alice-pw', echo.port)
  const { replies, subscribers: listening } = await whileUnsubscribed(admin, CHANNEL, [['ACL', 'SETUSER', 'node', '-get'], ['DEL', recordOf('alice')], ['PUBLISH', CHANNEL, 'alice']])
  assert.equal(listening, 0)
  assert.deepEqual(replies, ['OK', 1, 0])
  await waitFor(() => lines.warn.some((line) => line.includes('announcements of user changes may have been missed')), 3000)
  const warning = lines.warn.find((line) => line.includes('announcements of user changes'))!
  assert.match(warning, /^auth: announcements of user changes may have been missed, and the redis store did not answer while checking \(redis store: getRecord failed: .*NOPERM.*\); the live connections of 1 user\(s\) stay open and are checked again every second until it answers$/)
  // The store's silence closes nothing: alice relays on, through a retry or two.
  await relaysStill(alice, 'one')
  await new Promise((resolve) => setTimeout(resolve, 1200))
  await relaysStill(alice, 'two')
  assert.equal(lines.warn.filter((line) => line.includes('announcements of user changes')).length, 1, 'said once, not at every retry')
  // New logins fail closed meanwhile, a user of the store the node could check or not.
  await refused(t, node.port, 'bob', 'bob-pw')
  const clock = startClock()
  await admin.call('ACL', 'SETUSER', 'node', '+get')
  // Checked again within a second of the store answering.
  await closedWithin([node], [alice], clock, 1500)
  assertClosedAsChanged(node, 'alice', 1)
  await waitFor(() => lines.info.some((line) => line.includes('store answers again')))
})

test('a node whose first subscribe failed: a removal announced before its retry succeeded closes the user\'s live connection once it is subscribed', needs(redis), async (t) => {
  const redisServer = await startRedis(t)
  const echo = await startEcho(t)
  const admin = await adminClient(t, redisServer.url)
  // No channel for the node's Redis user: its SUBSCRIBE is refused (NOPERM), its GETs answered.
  await admin.call('ACL', 'SETUSER', 'node', 'on', '>node-pw', '~*', 'resetchannels', '+@all')
  const lines = keptLines()
  const node = await startNode(t, { type: 'redis', url: `redis://node:node-pw@127.0.0.1:${redisServer.port}`, timeout: 300 }, { usersInStore: true }, lines.logger)
  assert.match(lines.warn.join('\n'), /cannot subscribe to user changes/)
  const users = createStore({ type: 'redis', url: redisServer.url })
  t.after(() => users.close())
  await addStoredUser(users, 'alice', 'alice-pw', CHEAP)
  const alice = await relayAs(t, node.port, 'alice', 'alice-pw', echo.port)
  assert.equal(await removeStoredUser(users, 'alice'), true)
  const [, listening] = (await admin.pubsub('NUMSUB', CHANNEL)) as [string, number]
  assert.equal(Number(listening), 0, 'nobody heard the removal')
  await relaysStill(alice, 'still')
  const clock = startClock()
  await admin.call('ACL', 'SETUSER', 'node', '&*')
  // The retry comes within a second; the check right after it.
  await closedWithin([node], [alice], clock, 2000)
  assertClosedAsChanged(node, 'alice', 1)
})
