// Name lookups against a nameserver that never answers, with the real getaddrinfo. The finding
// (adversarial review): 24 tiny UDP datagrams addressed to names took all of libuv's 4 threads for
// the resolver's whole retry schedule (10 s with glibc's defaults), and another client's CONNECT,
// even to a name in the hosts file, then waited behind them with no reply.
// libuv runs at most (threads + 1) / 2 lookups at once (it counts them as slow I/O, threadpool.c),
// so with its default 4 threads two silent lookups already make every other lookup queue.
//
// The proxy runs in a process of its own under `unshare --mount`: in that mount namespace alone,
// /etc/resolv.conf names a nameserver this test runs on loopback (it counts the queries, so
// getaddrinfo really asked, and never answers), /etc/hosts holds localhost, and nsswitch.conf
// says "files dns". The network namespace is the machine's, so loopback is shared; the mounts end
// with the namespace when the process is killed. Needs root (CI runs as root).
import { describe, test, type TestContext, type TestOptions } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Socket } from 'node:net'
import { SocksClient } from 'socks'
import { startEcho, trackClient } from '../helpers/net.js'
import { CI, needs, peer } from '../helpers/peers.js'
import { CLI, listeningPort, plainEnv, ROOT, start, tempDir, type Running } from '../helpers/spawn.js'

const unshare = peer('unshare')

function isolation(): TestOptions {
  const missing = needs(unshare)
  if (missing.skip !== undefined) return missing
  if (!CI && process.getuid?.() !== 0) return { skip: 'needs root (unshare --mount, a nameserver on port 53)' }
  return {}
}

/** Datagrams to distinct names: more than libuv's 4 threads, and than the per-association cap of 8. */
const DATAGRAMS = 24
/** How long the other client's CONNECT to a hosts-file name may take (it needs no nameserver). */
const CONNECT_WITHIN = 1500

interface SilentNameserver {
  readonly address: string
  /** Query names seen, one entry per query (A and AAAA of one lookup are two). */
  readonly names: string[]
  /** Resolves when a query for a name matching `pattern` has arrived. */
  query(pattern: RegExp, timeout: number): Promise<void>
}

/** A UDP "nameserver" on `address`:53 that reads every query and answers none. */
async function silentNameserver(t: TestContext, address: string): Promise<SilentNameserver> {
  const socket = createSocket('udp4')
  const names: string[] = []
  const waiters = new Set<() => void>()
  socket.on('message', (msg) => {
    names.push(queryName(msg) ?? '?')
    for (const waiter of [...waiters]) waiter()
  })
  socket.bind(53, address)
  await once(socket, 'listening')
  t.after(() => socket.close())
  return {
    address,
    names,
    query: (pattern, timeout) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (!names.some((name) => pattern.test(name))) return
          waiters.delete(check)
          clearTimeout(timer)
          resolve()
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`no query for ${pattern} reached ${address}:53 within ${timeout} ms (saw: ${names.join(', ') || 'none'})`))
        }, timeout)
        waiters.add(check)
        check()
      }),
  }
}

/** The QNAME of a DNS query (RFC 1035 §4.1.2), or null when it is not one. */
function queryName(msg: Buffer): string | null {
  const labels: string[] = []
  for (let i = 12; i < msg.length; ) {
    const length = msg[i]!
    if (length === 0) return labels.join('.')
    if (length > 63) return null
    labels.push(msg.toString('latin1', i + 1, i + 1 + length))
    i += 1 + length
  }
  return null
}

// $1: the folder with resolv.conf, hosts and nsswitch.conf; then the command. exec, so the pid the
// test kills is the proxy's, and with it the namespace and its mounts.
const MOUNT_AND_RUN = `set -e
for file in resolv.conf hosts nsswitch.conf; do mount --bind "$1/$file" "/etc/$file"; done
shift
exec "$@"`

/** Starts `command` in a mount namespace whose resolver asks only `nameserver` (glibc's default 5 s x 2 attempts). */
function startIsolated(t: TestContext, nameserver: SilentNameserver, command: string[], cwd: string): Running {
  const dir = tempDir(t, 'socksmith-silent-dns-')
  writeFileSync(join(dir, 'resolv.conf'), `nameserver ${nameserver.address}\noptions timeout:5 attempts:2\n`)
  writeFileSync(join(dir, 'hosts'), '127.0.0.1 localhost\n')
  writeFileSync(join(dir, 'nsswitch.conf'), 'passwd: files\ngroup: files\nhosts: files dns\n')
  const env = plainEnv()
  // libuv's default pool (4) for the library; the CLI's own choice for the CLI.
  delete env.UV_THREADPOOL_SIZE
  return start(t, unshare.path, ['--mount', '--propagation', 'private', 'sh', '-c', MOUNT_AND_RUN, 'sh', dir, ...command], { cwd, env })
}

/**
 * Client A (127.0.0.1) sends DATAGRAMS datagrams through a UDP ASSOCIATE, each to another name only
 * the silent nameserver could answer; once it is asked, client B (127.0.0.2, another client) sends
 * CONNECT localhost:<echo> and must get REP 00 within CONNECT_WITHIN and its bytes echoed.
 */
async function starveAndConnect(t: TestContext, proxyPort: number, nameserver: SilentNameserver): Promise<void> {
  const echo = await startEcho(t)
  const proxy = { host: '127.0.0.1', port: proxyPort, type: 5 as const }

  const udp = createSocket('udp4')
  udp.bind(0, '127.0.0.1')
  await once(udp, 'listening')
  t.after(() => udp.close())
  // createConnection() does not do UDP ASSOCIATE; the event API does.
  const client = new SocksClient({ proxy, command: 'associate', destination: { host: '0.0.0.0', port: 0 }, timeout: 5000 })
  const established = new Promise<{ socket: Socket; remoteHost: { host: string; port: number } }>((resolve, reject) => {
    client.once('established', (info) => resolve(info as never))
    client.once('error', reject)
  })
  client.connect()
  const { socket: control, remoteHost: relay } = await established
  trackClient(t, control)
  for (let i = 1; i <= DATAGRAMS; i++) {
    udp.send(SocksClient.createUDPFrame({ remoteHost: { host: `n${i}.silent.test`, port: 9 }, data: Buffer.from('x') }), relay.port, relay.host)
  }
  await nameserver.query(/^n\d+\.silent\.test$/, 5000)

  let socket: Socket
  try {
    ;({ socket } = await SocksClient.createConnection({
      proxy,
      command: 'connect',
      destination: { host: 'localhost', port: echo.port },
      timeout: CONNECT_WITHIN,
      // Another client: the proxy groups clients by address (client-group.ts).
      socket_options: { host: proxy.host, port: proxy.port, localAddress: '127.0.0.2' },
    }))
  } catch (err) {
    assert.fail(`client B's CONNECT localhost got no REP 00 within ${CONNECT_WITHIN} ms (${(err as Error).message}) while A's lookups hung; the nameserver was asked for ${[...new Set(nameserver.names)].join(', ')} (${nameserver.names.length} queries)`)
  }
  trackClient(t, socket)
  socket.write('through the starved resolver')
  let received = ''
  socket.setEncoding('utf8')
  for await (const chunk of socket) {
    received += chunk as string
    if (received.length >= 'through the starved resolver'.length) break
  }
  assert.equal(received, 'through the starved resolver')
  assert.ok(!nameserver.names.includes('localhost'), 'localhost came from the hosts file, not the nameserver')
}

describe('a nameserver that never answers, real getaddrinfo', { timeout: 15_000 }, () => {
  test("library (createServer, system resolver, libuv's 4 threads): 24 datagrams to silent names do not hold up another client's CONNECT localhost", isolation(), async (t) => {
    assert.equal(process.getuid?.(), 0, 'runs as root (unshare --mount, port 53)')
    const nameserver = await silentNameserver(t, '127.53.0.1')
    const proxy = startIsolated(t, nameserver, [process.execPath, '--import', 'tsx', '--conditions=source', join(ROOT, 'test/fixtures/silent-dns-proxy.ts')], ROOT)
    const port = await listeningPort(proxy)
    assert.equal((await proxy.line(/UV_THREADPOOL_SIZE=(\S+)/))[1], 'unset')
    await starveAndConnect(t, port, nameserver)
  })

  test("CLI (its own thread pool size): 24 datagrams to silent names do not hold up another client's CONNECT localhost", isolation(), async (t) => {
    assert.equal(process.getuid?.(), 0, 'runs as root (unshare --mount, port 53)')
    const nameserver = await silentNameserver(t, '127.53.0.2')
    const proxy = startIsolated(t, nameserver, [process.execPath, CLI, '--port', '0', '--log-level', 'warn'], tempDir(t))
    await starveAndConnect(t, await listeningPort(proxy), nameserver)
  })
})
