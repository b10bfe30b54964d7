// The limits plugin: options checked in one pass; caps per user and per client (REP 02, and room
// again once a connection closes); bandwidth shared by a user's connections; quotas that refuse or
// cut, survive a reload that raises them, and end with their window; a reload reaching live
// connections; the refusal reason in the access fields and the metric.
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, isSocksError, type ConnectionContext, type SocksServer } from 'socksmith'
import { accessFields, collectMetrics, silentLogger } from 'socksmith/ops'
import auth from 'socksmith/plugins/auth'
import limits, { parseByteRate, parseByteSize, type LimitsOptions } from 'socksmith/plugins/limits'
import { calendarKey, windowSlots, ROLLING_SLOTS } from '../../plugins/limits/windows.js'
import { RawClient, hex, ipv4Request, startTcpServer, waitFor } from '../helpers/net.js'

const KiB = 1024
const USERS = { alice: 'wonderland', bob: 'builder' }

/** RFC 1929 request: VER ULEN UNAME PLEN PASSWD. */
function passwordRequest(user: string, password: string): Buffer {
  const u = Buffer.from(user)
  const p = Buffer.from(password)
  return Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p])
}

/** Logs in as `user` and asks for a CONNECT: the client and the REP byte it got. */
async function connectAs(t: TestContext, port: number, user: string, targetPort: number, localAddress?: string): Promise<{ client: RawClient; rep: number }> {
  const client = await RawClient.connect(t, port, '127.0.0.1', localAddress)
  client.send('050102')
  assert.deepEqual(await client.read(2), hex('0502'))
  client.send(passwordRequest(user, USERS[user as keyof typeof USERS] ?? 'x'))
  assert.deepEqual(await client.read(2), hex('0100'))
  client.send(ipv4Request(1, '127.0.0.1', targetPort))
  const reply = await client.read(10)
  return { client, rep: reply[1]! }
}

interface LimitedServer {
  server: SocksServer
  port: number
  ended: ConnectionContext[]
}

async function startLimited(t: TestContext, options: LimitsOptions, users: Record<string, string> = USERS): Promise<LimitedServer> {
  const server = createServer({ logger: silentLogger })
  server.register(auth, { users })
  server.register(limits, options)
  const ended: ConnectionContext[] = []
  server.on('disconnect', (ctx) => ended.push(ctx))
  const address = await server.listen({ host: '127.0.0.1', port: 0 })
  t.after(() => server.close({ drainTimeout: 0 }))
  return { server, port: address.port, ended }
}

/** A target that holds every connection open and sends nothing, until the client ends it. */
function quietTarget(t: TestContext) {
  return startTcpServer(t, (socket) => {
    socket.on('data', () => {})
    socket.on('end', () => socket.end())
  })
}

describe('units and windows', () => {
  test('sizes and rates as operators write them', () => {
    assert.equal(parseByteSize(1000), 1000)
    assert.equal(parseByteSize('64KiB'), 65536)
    assert.equal(parseByteSize('10GB'), 10e9)
    assert.equal(parseByteSize('1.5 MiB'), 1.5 * 1024 * 1024)
    assert.equal(parseByteSize('8mbit'), null, 'bits are for rates')
    assert.equal(parseByteRate('8mbit'), 1e6)
    assert.equal(parseByteRate('100Mbps'), 12.5e6)
    assert.equal(parseByteRate('512KiB/s'), 512 * 1024)
    for (const bad of ['', 'fast', '-1', 0, -5, '1 parsec', null, {}]) {
      assert.equal(parseByteSize(bad), null, String(bad))
      assert.equal(parseByteRate(bad), null, String(bad))
    }
  })

  test('calendar windows follow the time zone: a Sunday night in UTC is Monday in Berlin', () => {
    const sundayNight = Date.parse('2026-12-06T23:30:00Z')
    assert.equal(calendarKey('day', 'UTC', sundayNight), 'd2026-12-06')
    assert.equal(calendarKey('week', 'UTC', sundayNight), 'w2026-11-30')
    assert.equal(calendarKey('day', 'Europe/Berlin', sundayNight), 'd2026-12-07')
    assert.equal(calendarKey('week', 'Europe/Berlin', sundayNight), 'w2026-12-07')
    assert.equal(calendarKey('month', 'Europe/Berlin', Date.parse('2026-11-30T23:30:00Z')), 'm2026-12')
    assert.equal(calendarKey('month', 'America/New_York', Date.parse('2026-12-01T03:00:00Z')), 'm2026-11')
    // A week across a year's end starts on its Monday.
    assert.equal(calendarKey('week', 'UTC', Date.parse('2027-01-01T12:00:00Z')), 'w2026-12-28')
  })

  test('a rolling window is a ring of slots that moves with time; an absolute one is closed outside its dates', () => {
    const window = { kind: 'rolling', ms: 24 * 3_600_000 } as const
    const now = Date.parse('2026-12-03T10:00:00Z')
    const slots = windowSlots(window, now)!
    assert.equal(slots.keys.length, ROLLING_SLOTS)
    assert.equal(slots.current, slots.keys[ROLLING_SLOTS - 1])
    const hourLater = windowSlots(window, now + 3_600_000)!
    assert.equal(hourLater.keys[ROLLING_SLOTS - 2], slots.current, 'an hour on, the window has moved by one slot')
    assert.ok(!hourLater.keys.includes(slots.keys[0]!), 'and the oldest slot fell out')
    const absolute = { kind: 'absolute', from: now, until: now + 1000 } as const
    assert.equal(windowSlots(absolute, now - 1), null)
    assert.notEqual(windowSlots(absolute, now), null)
    assert.equal(windowSlots(absolute, now + 1000), null)
  })
})

test('bad options: every problem reported at once, each under its path', () => {
  const server = createServer({ logger: silentLogger })
  assert.throws(
    () =>
      server.register(limits, {
        timeZone: 'Mars/Olympus',
        failMode: 'maybe',
        limits: [
          { maxConnections: 2 },
          { per: 'users', maxConnections: -1 },
          { per: 'user', bandwidth: { down: 'fast' } },
          { per: 'user', quota: { bytes: '1GiB', window: 'fortnight' } },
          { per: 'client' },
          { per: 'global', match: { from: 'not-a-cidr' }, maxConnections: 1 },
        ],
      } as unknown as LimitsOptions),
    (err: unknown) => {
      assert.ok(isSocksError(err))
      assert.equal(err.code, 'ERR_PLUGIN_OPTIONS')
      for (const path of ['timeZone', 'failMode', 'limits[0].per', 'limits[1].per', 'limits[2].bandwidth.down', 'limits[3].quota.window', 'limits[4]', 'limits[5].match.from']) {
        assert.match(err.message, new RegExp(`${path.replace(/[[\].]/g, '\\$&')}: `), `${path} is reported:\n${err.message}`)
      }
      assert.match(err.message, /did you mean "user"/)
      return true
    },
  )
})

test('maxConnections per user: the third CONNECT gets REP 02 (reason limits:maxConnections), and succeeds once one closes; other users are apart', async (t) => {
  const target = await quietTarget(t)
  const { server, port, ended } = await startLimited(t, { limits: [{ per: 'user', maxConnections: 2 }] })
  const metrics = await collectMetrics(server)
  t.after(() => metrics.detach())
  const first = await connectAs(t, port, 'alice', target.port)
  const second = await connectAs(t, port, 'alice', target.port)
  assert.deepEqual([first.rep, second.rep], [0, 0])
  const third = await connectAs(t, port, 'alice', target.port)
  assert.equal(third.rep, 2)
  await third.client.expectClose()
  third.client.socket.destroy()
  const bob = await connectAs(t, port, 'bob', target.port)
  assert.equal(bob.rep, 0, "bob's connections are counted apart")
  await waitFor(() => ended.length === 1)
  const refused = accessFields(ended[0]!)
  assert.equal(refused['error'], 'ERR_SOCKS_NOT_ALLOWED')
  assert.equal(refused['reason'], 'limits:maxConnections')
  first.client.socket.destroy()
  await waitFor(() => ended.length === 2)
  const again = await connectAs(t, port, 'alice', target.port)
  assert.equal(again.rep, 0, 'room again once one closed')
  const text = await metrics.registry.metrics()
  assert.match(text, /socksmith_limit_refusals_total\{limit="limits\[0\]",reason="maxConnections"\} 1/)
  assert.match(text, /socksmith_connection_reasons_total\{reason="limits:maxConnections"\} 1/)
  for (const c of [second, bob, again]) c.client.socket.destroy()
})

test('per client: clients on 127.0.0.2 and 127.0.0.3 each get their own cap', async (t) => {
  const target = await quietTarget(t)
  const { port } = await startLimited(t, { limits: [{ per: 'client', maxConnections: 1 }] })
  const a = await connectAs(t, port, 'alice', target.port, '127.0.0.2')
  const b = await connectAs(t, port, 'alice', target.port, '127.0.0.2')
  const c = await connectAs(t, port, 'bob', target.port, '127.0.0.3')
  assert.deepEqual([a.rep, b.rep, c.rep], [0, 2, 0])
  for (const x of [a, c]) x.client.socket.destroy()
})

test('maxClientIps: a user connected from 127.0.0.2 may add connections from there, not from a second address', async (t) => {
  const target = await quietTarget(t)
  const started = await startLimited(t, { limits: [{ per: 'user', maxClientIps: 1 }] })
  const { port } = started
  const a = await connectAs(t, port, 'alice', target.port, '127.0.0.2')
  const b = await connectAs(t, port, 'alice', target.port, '127.0.0.2')
  const c = await connectAs(t, port, 'alice', target.port, '127.0.0.3')
  assert.deepEqual([a.rep, b.rep, c.rep], [0, 0, 2])
  c.client.socket.destroy()
  const { server } = started
  const live = server.connections
  a.client.socket.destroy()
  b.client.socket.destroy()
  await waitFor(() => server.connections <= live - 2)
  const d = await connectAs(t, port, 'alice', target.port, '127.0.0.3')
  assert.equal(d.rep, 0, 'free again once the first address has no connection left')
  d.client.socket.destroy()
})

test('bandwidth per user: two downloads of one user together take the user rate (128 KiB/s down, 32 KiB burst)', async (t) => {
  const size = 128 * KiB
  const payload = randomBytes(size)
  const target = await startTcpServer(t, (socket) => socket.end(payload))
  const { port } = await startLimited(t, { limits: [{ per: 'user', bandwidth: { down: '128KiB', burst: '32KiB' } }] })
  const download = async (): Promise<number> => {
    const { client, rep } = await connectAs(t, port, 'alice', target.port)
    assert.equal(rep, 0)
    return (await client.readToEnd(10_000)).length
  }
  const started = performance.now()
  assert.deepEqual(await Promise.all([download(), download()]), [size, size])
  const ms = performance.now() - started
  const expected = ((2 * size - 32 * KiB) / (128 * KiB)) * 1000
  // Never faster than the limit allows; slower only by what a loaded machine's late timers add.
  assert.ok(ms >= expected * 0.85 && ms <= expected * 1.35, `took ${ms.toFixed(0)} ms, expected ${expected.toFixed(0)} ms (-15%, +35%)`)
})

describe('quotas', () => {
  test('action cut: the connection that crosses the quota is closed with the reason, and new ones get REP 02', async (t) => {
    const target = await startTcpServer(t, (socket) => socket.end(randomBytes(1024 * KiB)))
    const { port, ended } = await startLimited(t, { limits: [{ per: 'user', quota: { bytes: '200KiB', window: 'day', action: 'cut' } }] })
    const { client, rep } = await connectAs(t, port, 'alice', target.port)
    assert.equal(rep, 0)
    const got = (await client.readToEnd(5000)).length
    assert.ok(got <= 200 * KiB, `cut at the quota: got ${got} bytes`)
    await waitFor(() => ended.length === 1)
    assert.equal(ended[0]!.closeReason, 'limits:quota')
    const next = await connectAs(t, port, 'alice', target.port)
    assert.equal(next.rep, 2)
    const bob = await connectAs(t, port, 'bob', target.port)
    assert.equal(bob.rep, 0, 'a quota per user is per user')
    await bob.client.readToEnd(5000)
  })

  test('action refuse: a live connection finishes, the next is refused; a reload that raises the quota keeps the usage', async (t) => {
    const size = 150 * KiB
    const target = await startTcpServer(t, (socket) => socket.end(randomBytes(size)))
    const options = (bytes: string): LimitsOptions => ({ flushInterval: 20, limits: [{ name: 'daily', per: 'user', quota: { bytes, window: 'day' } }] })
    const { server, port } = await startLimited(t, options('100KiB'))
    const first = await connectAs(t, port, 'alice', target.port)
    assert.equal((await first.client.readToEnd(5000)).length, size, 'refuse lets the live connection finish')
    assert.equal((await connectAs(t, port, 'alice', target.port)).rep, 2)
    // Raised to 250 KiB: 150 KiB are used, so one more download of 150 KiB is admitted, and then no more.
    const next = createServer({ logger: silentLogger })
    next.register(auth, { users: USERS })
    next.register(limits, options('250KiB'))
    await server.reload(next)
    const second = await connectAs(t, port, 'alice', target.port)
    assert.equal(second.rep, 0)
    await second.client.readToEnd(5000)
    await new Promise((resolve) => setTimeout(resolve, 60))
    assert.equal((await connectAs(t, port, 'alice', target.port)).rep, 2, 'the usage was kept: 300 KiB used of 250')
  })

  test('a quota ends with its window: an absolute window that closed no longer refuses', async (t) => {
    const target = await startTcpServer(t, (socket) => socket.end(randomBytes(64 * KiB)))
    const from = new Date(Date.now() - 1000).toISOString()
    const until = new Date(Date.now() + 1500).toISOString()
    const { port } = await startLimited(t, { limits: [{ per: 'user', quota: { bytes: '10KiB', window: { from, until } } }] })
    const first = await connectAs(t, port, 'alice', target.port)
    await first.client.readToEnd(5000)
    assert.equal((await connectAs(t, port, 'alice', target.port)).rep, 2)
    await new Promise((resolve) => setTimeout(resolve, Date.parse(until) - Date.now() + 50))
    const after = await connectAs(t, port, 'alice', target.port)
    assert.equal(after.rep, 0, 'the window is over')
    await after.client.readToEnd(5000)
  })
})

test('a reload that lowers a bandwidth limit slows the live connection down', async (t) => {
  const payload = randomBytes(2048 * KiB)
  const target = await startTcpServer(t, (socket) => socket.end(payload))
  const options = (down: string): LimitsOptions => ({ limits: [{ name: 'bw', per: 'user', bandwidth: { down, burst: '16KiB' } }] })
  const { server, port } = await startLimited(t, options('4MiB'))
  const { client, rep } = await connectAs(t, port, 'alice', target.port)
  assert.equal(rep, 0)
  let received = 0
  client.socket.on('data', (chunk: Buffer) => (received += chunk.length))
  await new Promise((resolve) => setTimeout(resolve, 100))
  const next = createServer({ logger: silentLogger })
  next.register(auth, { users: USERS })
  next.register(limits, options('64KiB'))
  await server.reload(next)
  const atReload = received
  await new Promise((resolve) => setTimeout(resolve, 500))
  const moved = received - atReload
  assert.ok(moved < 128 * KiB, `after the reload it moved ${moved} bytes in 0.5 s at 64 KiB/s`)
  assert.ok(received < payload.length)
  client.socket.destroy()
  await once(client.socket, 'close')
})
