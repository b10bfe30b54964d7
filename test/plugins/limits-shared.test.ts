// The limits plugin on shared state: two servers on one real Redis enforce one cap and one quota;
// a quota survives a restart; the fail mode applies while Redis is down; `socksmith --workers 2`
// enforces one cap for both workers (the primary's store).
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net'
import { join } from 'node:path'
import { createServer, type ConnectionContext, type SocksServer } from 'socksmith'
import { collectMetrics } from 'socksmith/ops'
import { silentLogger } from 'socksmith/ops'
import auth from 'socksmith/plugins/auth'
import limits, { type LimitsOptions } from 'socksmith/plugins/limits'
import { RawClient, hex, ipv4Request, startTcpServer, waitFor } from '../helpers/net.js'
import { needs, peer } from '../helpers/peers.js'
import { startRedis } from '../helpers/redis.js'
import { CLI, listeningPort, start, tempDir } from '../helpers/spawn.js'

const redis = peer('redis-server')
const KiB = 1024

async function connectAs(t: TestContext, port: number, user: string, targetPort: number): Promise<{ client: RawClient; rep: number }> {
  const client = await RawClient.connect(t, port)
  const u = Buffer.from(user)
  const p = Buffer.from('pw')
  client.send(Buffer.concat([hex('050102'), Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]))
  assert.deepEqual(await client.read(4), hex('05020100'))
  client.send(ipv4Request(1, '127.0.0.1', targetPort))
  const reply = await client.read(10)
  return { client, rep: reply[1]! }
}

/** A server on the Redis at `url`; `timeout`: how long a store operation may take (short where the test stops Redis). */
async function node(t: TestContext, url: string, options: LimitsOptions, timeout = 1000): Promise<{ server: SocksServer; port: number; ended: ConnectionContext[] }> {
  const server = createServer({ logger: silentLogger, store: { type: 'redis', url, timeout } })
  server.register(auth, { users: { alice: 'pw', bob: 'pw' } })
  server.register(limits, options)
  const ended: ConnectionContext[] = []
  server.on('disconnect', (ctx) => ended.push(ctx))
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 })
  t.after(() => server.close({ drainTimeout: 0 }))
  return { server, port, ended }
}

/** Tries a CONNECT every 100 ms until one is admitted (true) or `ms` pass (false). */
async function admittedWithin(t: TestContext, port: number, user: string, targetPort: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  for (;;) {
    const attempt = await connectAs(t, port, user, targetPort)
    if (attempt.rep === 0) return true
    attempt.client.socket.destroy()
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

function quietTarget(t: TestContext) {
  return startTcpServer(t, (socket) => {
    socket.on('data', () => {})
    socket.on('end', () => socket.end())
  })
}

test('two nodes on one Redis: a per-user cap of 2 holds across both, and frees when a connection ends', needs(redis), async (t) => {
  const store = await startRedis(t)
  const target = await quietTarget(t)
  const options: LimitsOptions = { limits: [{ per: 'user', maxConnections: 2 }] }
  const a = await node(t, store.url, options)
  const b = await node(t, store.url, options)
  const one = await connectAs(t, a.port, 'alice', target.port)
  const two = await connectAs(t, b.port, 'alice', target.port)
  assert.deepEqual([one.rep, two.rep], [0, 0])
  assert.equal((await connectAs(t, a.port, 'alice', target.port)).rep, 2)
  assert.equal((await connectAs(t, b.port, 'alice', target.port)).rep, 2)
  assert.equal((await connectAs(t, b.port, 'bob', target.port)).rep, 0)
  one.client.socket.destroy()
  await waitFor(() => a.ended.some((ctx) => ctx.replied))
  // A gives the lease back as the connection closes; the release reaches Redis a round trip later.
  assert.equal(await admittedWithin(t, b.port, 'alice', target.port, 2000), true, 'the slot A held is free for B')
})

test('a quota spent on node A blocks node B; a node restarted on the same Redis still refuses', needs(redis), async (t) => {
  const store = await startRedis(t)
  const target = await startTcpServer(t, (socket) => socket.end(randomBytes(100 * KiB)))
  const options: LimitsOptions = { flushInterval: 50, limits: [{ name: 'daily', per: 'user', quota: { bytes: '64KiB', window: 'day' } }] }
  const a = await node(t, store.url, options)
  const b = await node(t, store.url, options)
  const first = await connectAs(t, a.port, 'alice', target.port)
  assert.equal((await first.client.readToEnd(5000)).length, 100 * KiB)
  // B learns A's usage at its first look at the store.
  await new Promise((resolve) => setTimeout(resolve, 150))
  assert.equal((await connectAs(t, b.port, 'alice', target.port)).rep, 2)
  await a.server.close({ drainTimeout: 0 })
  await b.server.close({ drainTimeout: 0 })
  const restarted = await node(t, store.url, options)
  assert.equal((await connectAs(t, restarted.port, 'alice', target.port)).rep, 2, 'the usage is in Redis, not in the process')
})

test('Redis down: failMode open lets connections through, closed refuses them (reason limits:store)', needs(redis), async (t) => {
  const store = await startRedis(t)
  const target = await quietTarget(t)
  const open = await node(t, store.url, { failMode: 'open', limits: [{ per: 'user', maxConnections: 5 }] }, 300)
  const closed = await node(t, store.url, { failMode: 'closed', limits: [{ per: 'user', maxConnections: 5 }] }, 300)
  await store.stop()
  const passed = await connectAs(t, open.port, 'alice', target.port)
  assert.equal(passed.rep, 0)
  const refused = await connectAs(t, closed.port, 'alice', target.port)
  assert.equal(refused.rep, 2)
  refused.client.socket.destroy()
  await waitFor(() => closed.ended.length === 1, 4000)
  assert.equal(closed.ended[0]!.closeReason, 'limits:store')
  await store.start()
  // Back: the closed node admits again once Redis answers (ioredis reconnects by itself).
  assert.equal(await admittedWithin(t, closed.port, 'alice', target.port, 3000), true)
})

/**
 * A TCP relay to 127.0.0.1:`port` that can be cut (every link dropped, new ones closed at once)
 * and healed: a node's path to Redis, for a partition that leaves the other nodes connected.
 */
async function cuttableLink(t: TestContext, port: number): Promise<{ url: string; cut(): void; heal(): void }> {
  const sockets = new Set<Socket>()
  let cut = false
  const relay = createTcpServer((client) => {
    if (cut) return client.destroy()
    const upstream = connect({ host: '127.0.0.1', port })
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream).pipe(client)
  })
  relay.listen(0, '127.0.0.1')
  await once(relay, 'listening')
  t.after(() => {
    for (const socket of sockets) socket.destroy()
    relay.close()
  })
  return {
    url: `redis://127.0.0.1:${(relay.address() as AddressInfo).port}`,
    cut() {
      cut = true
      for (const socket of sockets) socket.destroy()
    },
    heal() {
      cut = false
    },
  }
}

test('Redis back after the lease TTL: a node cut off meanwhile takes its leases again only under the cap; its newest connection is closed (limits:maxConnections)', needs(redis), async (t) => {
  const store = await startRedis(t)
  const target = await quietTarget(t)
  // failMode closed: B admits nobody it cannot count, so its connections hold real leases.
  const options: LimitsOptions = { failMode: 'closed', leaseTtl: 600, limits: [{ name: 'cap', per: 'user', maxConnections: 2 }] }
  const link = await cuttableLink(t, store.port)
  const a = await node(t, link.url, options, 300)
  const b = await node(t, store.url, options, 300)
  const metrics = await collectMetrics(a.server)
  t.after(() => metrics.detach())
  const older = await connectAs(t, a.port, 'alice', target.port)
  const newer = await connectAs(t, a.port, 'alice', target.port)
  assert.deepEqual([older.rep, newer.rep], [0, 0])
  // A is cut off from Redis, which then goes down and comes back empty after more than the TTL:
  // to the store (and B) A's two leases are gone, as a dead node's would be.
  link.cut()
  await store.stop()
  await new Promise((resolve) => setTimeout(resolve, 700))
  await store.start()
  assert.equal(await admittedWithin(t, b.port, 'alice', target.port, 3000), true, 'B counts from an empty set: a slot is free')
  const started = Date.now()
  link.heal()
  // A's heartbeat reaches Redis again: one of its two leases fits under the cap of 2 next to B's.
  await newer.client.expectClose(5000)
  assert.equal(older.client.ended, false, 'the older connection keeps the slot')
  await waitFor(() => a.ended.length === 1, 3000)
  assert.equal(a.ended[0]!.closeReason, 'limits:maxConnections')
  assert.ok(Date.now() - started < 5000)
  assert.equal((await connectAs(t, a.port, 'alice', target.port)).rep, 2, 'A is at the cap too')
  assert.match(await metrics.registry.metrics(), /socksmith_limit_refusals_total\{limit="cap",reason="maxConnections"\} [1-9]/)
  // Over the next heartbeats nothing else changes: the older connection stays, the cap holds.
  await new Promise((resolve) => setTimeout(resolve, 500))
  assert.equal(older.client.ended, false)
  older.client.socket.destroy()
})

test('socksmith --workers 2: one cap of 2 per user and one quota for both workers, not two', async (t) => {
  const target = await quietTarget(t)
  const download = await startTcpServer(t, (socket) => socket.end(randomBytes(100 * KiB)))
  const dir = tempDir(t)
  writeFileSync(
    join(dir, 'socksmith.yaml'),
    [
      'listen: { port: 0 }',
      'log: { level: info }',
      'plugins:',
      '  - [auth, { users: { alice: pw, bob: pw } }]',
      '  - [limits, { flushInterval: 50ms, limits: [{ per: user, match: { users: alice }, maxConnections: 2 }, { name: daily, per: user, match: { users: bob }, quota: { bytes: 64KiB, window: day } }] }]',
      '',
    ].join('\n'),
  )
  const running = start(t, process.execPath, [CLI, '--config', join(dir, 'socksmith.yaml'), '--workers', '2', '--pid-file', join(dir, 'pid')])
  const port = await listeningPort(running, 30_000)
  // Written once every worker is ready.
  await running.errLine(/pid \d+ written to /, 30_000)
  // Enough connections that both workers take some (the kernel spreads them): only 2 are admitted.
  const results = []
  for (let i = 0; i < 10; i++) results.push(await connectAs(t, port, 'alice', target.port))
  assert.deepEqual(
    results.map((r) => r.rep),
    [0, 0, 2, 2, 2, 2, 2, 2, 2, 2],
    running.stderr(),
  )
  for (const r of results) r.client.socket.destroy()
  // bob spends his quota through one worker; every later connection is refused, whichever worker takes it.
  const spend = await connectAs(t, port, 'bob', download.port)
  assert.equal(spend.rep, 0)
  assert.equal((await spend.client.readToEnd(5000)).length, 100 * KiB)
  spend.client.socket.destroy()
  await new Promise((resolve) => setTimeout(resolve, 300))
  const after = []
  for (let i = 0; i < 8; i++) {
    const attempt = await connectAs(t, port, 'bob', download.port)
    after.push(attempt.rep)
    attempt.client.socket.destroy()
  }
  assert.deepEqual(after, Array(8).fill(2), running.stderr())
  // Each access line names the worker (pid) that served it: both did.
  await waitFor(() => (running.stderr().match(/"msg":"access"/g) ?? []).length >= 19, 5000)
  const pids = new Set([...running.stderr().matchAll(/"pid":(\d+)[^\n]*"msg":"access"/g)].map((m) => m[1]))
  assert.equal(pids.size, 2, `both workers took connections (the kernel spreads them): ${[...pids].join(', ')}`)
  running.child.kill('SIGTERM')
  assert.equal((await running.exited).code, 0)
})
