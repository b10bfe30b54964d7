// docs/fleet.md, run: two socksmith processes behind haproxy (PROXY protocol v2, round robin), one
// Redis for their limits, Prometheus metrics on each. A per-user cap holds across both nodes; a
// quota spent through one blocks the other; a node killed with SIGKILL frees its slots once its
// leases expire; a user removed from the users kept in Redis is cut on both nodes within a second;
// with Redis stopped the fail mode applies, and with it back, connections pass.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { get } from 'node:http'
import { join } from 'node:path'
import { RawClient, canConnect, freePort, hex, ipv4Request, startTcpServer } from '../helpers/net.js'
import { needs, peer } from '../helpers/peers.js'
import { createStore } from 'socksmith'
import { addStoredUser, removeStoredUser } from 'socksmith/plugins/auth'
import { startRedis } from '../helpers/redis.js'
import { CLI, listeningPort, start, tempDir, type Running } from '../helpers/spawn.js'

const haproxy = peer('haproxy')
const redisServer = peer('redis-server')

function nodeConfig(redisUrl: string): string {
  return `listen: { host: 127.0.0.1, port: 0, proxyProtocol: { trusted: [127.0.0.1] } }
metrics: { port: 0 }
store: { type: redis, url: "${redisUrl}", timeout: 1s }
log: { level: info }
plugins:
  - [auth, { users: { alice: pw, bob: pw, carol: pw }, usersInStore: true }]
  - - limits
    - failMode: closed
      leaseTtl: 1s
      flushInterval: 100ms
      limits:
        - { name: conns, per: user, maxConnections: 2 }
        - { name: daily, per: user, match: { users: bob }, quota: { bytes: 64KiB, window: day } }
`
}

interface Node {
  readonly running: Running
  readonly port: number
  readonly metricsUrl: string
}

async function startNode(t: TestContext, dir: string, name: string, redisUrl: string): Promise<Node> {
  const file = join(dir, `${name}.yaml`)
  writeFileSync(file, nodeConfig(redisUrl))
  const running = start(t, process.execPath, [CLI, '--config', file])
  const port = await listeningPort(running)
  const metrics = await running.line(/metrics on (http:\/\/\S+)/)
  return { running, port, metricsUrl: metrics[1]! }
}

/**
 * haproxy in TCP mode: round robin over the nodes with a PROXY v2 header, health-checked every
 * 100 ms; and one frontend per node, so the test can say which node a connection lands on.
 */
async function startBalancer(t: TestContext, dir: string, nodes: readonly Node[]): Promise<{ port: number; direct: number[] }> {
  const port = await freePort()
  const direct = await Promise.all(nodes.map(() => freePort()))
  const conf = join(dir, 'haproxy.cfg')
  writeFileSync(
    conf,
    [
      'defaults',
      '  mode tcp',
      '  timeout connect 1s',
      '  timeout client 30s',
      '  timeout server 30s',
      'frontend socks',
      `  bind 127.0.0.1:${port}`,
      '  default_backend socksmith',
      'backend socksmith',
      '  balance roundrobin',
      ...nodes.map((node, i) => `  server node${i} 127.0.0.1:${node.port} send-proxy-v2 check inter 100ms fall 1 rise 1`),
      ...nodes.flatMap((node, i) => [`frontend to-node${i}`, `  bind 127.0.0.1:${direct[i]}`, `  default_backend node${i}`, `backend node${i}`, `  server node${i} 127.0.0.1:${node.port} send-proxy-v2`]),
      '',
    ].join('\n'),
  )
  const child = spawn(haproxy.path, ['-db', '-f', conf], { stdio: 'ignore' })
  t.after(() => child.kill('SIGKILL'))
  for (let i = 0; i < 100 && child.exitCode === null; i++) {
    if (await canConnect(port)) return { port, direct }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('haproxy did not start')
}

async function connectAs(t: TestContext, port: number, user: string, targetPort: number): Promise<{ client: RawClient; rep: number }> {
  const client = await RawClient.connect(t, port)
  const u = Buffer.from(user)
  const p = Buffer.from(user === 'dave' ? 'dave-pw' : 'pw')
  client.send(Buffer.concat([hex('050102'), Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]))
  assert.deepEqual(await client.read(4), hex('05020100'))
  client.send(ipv4Request(1, '127.0.0.1', targetPort))
  const reply = await client.read(10)
  return { client, rep: reply[1]! }
}

function scrape(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve(body))
    }).on('error', reject)
  })
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

test('a fleet: two nodes behind haproxy, one Redis, metrics on each', needs(haproxy, redisServer), async (t) => {
  const redis = await startRedis(t)
  const dir = tempDir(t)
  const [a, b] = await Promise.all([startNode(t, dir, 'a', redis.url), startNode(t, dir, 'b', redis.url)])
  const { port: balancer, direct } = await startBalancer(t, dir, [a!, b!])
  const [toA, toB] = direct as [number, number]
  const quiet = await startTcpServer(t, (socket) => {
    socket.on('data', () => {})
    socket.on('end', () => socket.end())
  })
  const download = await startTcpServer(t, (socket) => socket.end(randomBytes(100 * 1024)))

  // A cap of 2 per user over both nodes: one connection on each, then a third is refused on either.
  const first = await connectAs(t, toA, 'alice', quiet.port)
  const second = await connectAs(t, toB, 'alice', quiet.port)
  assert.deepEqual([first.rep, second.rep], [0, 0])
  for (const port of [toA, toB, balancer]) {
    const third = await connectAs(t, port, 'alice', quiet.port)
    assert.equal(third.rep, 2, 'the cap holds across the nodes')
    third.client.socket.destroy()
  }
  const refusals = (await scrape(a!.metricsUrl)) + (await scrape(b!.metricsUrl))
  const counted = [...refusals.matchAll(/socksmith_limit_refusals_total\{limit="conns",reason="maxConnections"\} (\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0)
  assert.equal(counted, 3, 'the nodes counted the three refusals between them')

  // A quota spent through one node blocks the user on the other.
  const spend = await connectAs(t, balancer, 'bob', download.port)
  assert.equal(spend.rep, 0)
  assert.equal((await spend.client.readToEnd(5000)).length, 100 * 1024)
  // Each node writes its counts every flushInterval (100 ms) and reads everybody's back.
  await sleep(400)
  for (const port of [toA, toB]) {
    const refused = await connectAs(t, port, 'bob', download.port)
    assert.equal(refused.rep, 2, `bob refused on node ${port === toA ? 'A' : 'B'}`)
    refused.client.socket.destroy()
  }

  // A user kept in Redis logs in on both nodes; removed there, both connections end within a second.
  const admin = createStore({ type: 'redis', url: redis.url })
  t.after(() => admin.close())
  await addStoredUser(admin, 'dave', 'dave-pw', { N: 1024 })
  const daveA = await connectAs(t, toA, 'dave', quiet.port)
  const daveB = await connectAs(t, toB, 'dave', quiet.port)
  assert.deepEqual([daveA.rep, daveB.rep], [0, 0])
  const removedAt = performance.now()
  assert.equal(await removeStoredUser(admin, 'dave'), true)
  await Promise.all([daveA.client.expectClose(2000), daveB.client.expectClose(2000)])
  const cutMs = performance.now() - removedAt
  assert.ok(cutMs < 1000, `cut on both nodes ${cutMs.toFixed(0)} ms after the removal`)

  // Kill node A with alice's connection on it: its lease stays in Redis until it expires (1 s).
  a!.running.child.kill('SIGKILL')
  await a!.running.exited
  await sleep(1600)
  const afterDeath = await connectAs(t, toB, 'alice', quiet.port)
  assert.equal(afterDeath.rep, 0, "once A's leases expired, B admits alice again")
  const full = await connectAs(t, balancer, 'alice', quiet.port)
  assert.equal(full.rep, 2, 'and the cap of 2 still holds on B alone (haproxy sends everything to B now)')
  full.client.socket.destroy()

  // Redis stopped: failMode closed refuses; back, B admits again (carol: alice is at her cap).
  await redis.stop()
  const down = await connectAs(t, toB, 'carol', quiet.port)
  assert.equal(down.rep, 2, 'fail closed while the store is down')
  down.client.socket.destroy()
  await redis.start()
  let rep = 2
  for (let i = 0; i < 30 && rep !== 0; i++) {
    await sleep(100)
    const attempt = await connectAs(t, toB, 'carol', quiet.port)
    rep = attempt.rep
    attempt.client.socket.destroy()
  }
  assert.equal(rep, 0, 'with Redis back, connections pass again')
  assert.match(await scrape(b!.metricsUrl), /socksmith_limits_store_errors_total [1-9]/)
  for (const c of [first, second, afterDeath]) c.client.socket.destroy()
})
