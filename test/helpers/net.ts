// Loopback test fixtures: SOCKS servers, targets and a raw byte-level client. Real sockets only.
import { createServer as createNetServer, connect, type AddressInfo, type Server, type Socket } from 'node:net'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { once } from 'node:events'
import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import { createServer, type ConnectionContext, type ListenOptions, type ServerOptions, type SocksServer, type Resolver } from 'socksmith'
import { silentLogger } from 'socksmith/ops'

const clientSockets = new WeakMap<TestContext, Set<Socket>>()

/** Registers a client socket of test `t`: destroyed before the test's servers are checked for leaks. */
export function trackClient(t: TestContext, socket: Socket): Socket {
  let set = clientSockets.get(t)
  if (set === undefined) clientSockets.set(t, (set = new Set()))
  set.add(socket)
  t.after(() => socket.destroy())
  return socket
}

export interface StartedServer {
  server: SocksServer
  port: number
  host: string
}

/**
 * Starts a SocksServer on 127.0.0.1:0 (or `host`). After the test it is closed and its
 * live-connection count must have returned to 0.
 */
export async function startSocks(t: TestContext, options: ServerOptions & { host?: string } = {}, configure?: (server: SocksServer) => void): Promise<StartedServer> {
  const { host = '127.0.0.1', ...serverOptions } = options
  const server = createServer({ logger: silentLogger, ...serverOptions })
  configure?.(server)
  const address = await server.listen({ host, port: 0 })
  closeAfter(t, server)
  return { server, port: address.port, host }
}

/** After the test: the clients it left open go first, then every connection must be gone, then the server closes. */
export function closeAfter(t: TestContext, server: SocksServer): void {
  t.after(async () => {
    // What matters is that the server frees everything once the clients leave.
    for (const socket of clientSockets.get(t) ?? []) socket.destroy()
    await waitFor(() => server.connections === 0, 3000).catch(() => {})
    const live = server.connections
    await server.close({ drainTimeout: 0 })
    assert.equal(live, 0, 'every connection was closed after the test')
  })
}

/** A loopback port nobody listens on now (the kernel's pick, released at once): for a peer started on it, or a dead address. */
export async function freePort(): Promise<number> {
  const probe = createNetServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address() as AddressInfo
  await new Promise((resolve) => probe.close(resolve))
  return port
}

/** Polls `predicate` (for counters that have no event) until true or `timeout` ms. */
export async function waitFor(predicate: () => boolean, timeout = 2000): Promise<void> {
  const deadline = Date.now() + timeout
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** A TCP server on loopback, closed (with its sockets) after the test. `accepted` counts connections. */
export async function startTcpServer(t: TestContext, onConnection: (socket: Socket) => void, host = '127.0.0.1'): Promise<{ server: Server; port: number; accepted: () => number; sockets: Socket[] }> {
  const sockets: Socket[] = []
  let accepted = 0
  const server = createNetServer({ allowHalfOpen: true }, (socket) => {
    accepted++
    sockets.push(socket)
    socket.on('error', () => {})
    onConnection(socket)
  })
  server.listen(0, host)
  await once(server, 'listening')
  t.after(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  return { server, port: (server.address() as AddressInfo).port, accepted: () => accepted, sockets }
}

/** An echo server: writes back what it reads, and ends when the client ends. */
export function startEcho(t: TestContext, host = '127.0.0.1') {
  return startTcpServer(t, (socket) => socket.pipe(socket), host)
}

/** A UDP echo server; `received` lists the source of every datagram it saw. */
export async function startUdpEcho(t: TestContext, type: 'udp4' | 'udp6' = 'udp4'): Promise<{ socket: UdpSocket; port: number; received: { address: string; port: number; data: Buffer }[] }> {
  const socket = createSocket(type)
  const received: { address: string; port: number; data: Buffer }[] = []
  socket.on('message', (msg, rinfo) => {
    received.push({ address: rinfo.address, port: rinfo.port, data: msg })
    socket.send(msg, rinfo.port, rinfo.address)
  })
  socket.bind(0, type === 'udp4' ? '127.0.0.1' : '::1')
  await once(socket, 'listening')
  t.after(() => socket.close())
  return { socket, port: socket.address().port, received }
}

/** A resolver for tests: maps names to addresses, counts calls, never touches the network. */
export function mapResolver(map: Record<string, string[]>): Resolver & { calls: string[] } {
  const calls: string[] = []
  return {
    calls,
    async resolve(hostname) {
      calls.push(hostname)
      const addresses = map[hostname]
      if (addresses === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' })
      return addresses.map((address) => ({ address, family: address.includes(':') ? 6 as const : 4 as const }))
    },
  }
}

/**
 * A raw client for byte-exact protocol checks: send bytes, read exactly n bytes, expect a close.
 */
export class RawClient {
  readonly socket: Socket
  #buffer: Buffer = Buffer.alloc(0)
  #ended = false
  #closed = false
  #wake: (() => void) | null = null

  private constructor(socket: Socket) {
    this.socket = socket
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk])
      this.#wake?.()
    })
    socket.on('end', () => {
      this.#ended = true
      this.#wake?.()
    })
    socket.on('close', () => {
      this.#closed = true
      this.#wake?.()
    })
    socket.on('error', () => {})
  }

  /** `localAddress` picks the client's own address (another 127/8 address, to be a different client). */
  static async connect(t: TestContext, port: number, host = '127.0.0.1', localAddress?: string): Promise<RawClient> {
    const socket = connect({ port, host, allowHalfOpen: true, ...(localAddress === undefined ? {} : { localAddress }) })
    socket.setNoDelay(true)
    await once(socket, 'connect')
    trackClient(t, socket)
    return new RawClient(socket)
  }

  send(bytes: Buffer | number[] | string): this {
    this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes.replace(/\s+/g, ''), 'hex') : Buffer.from(bytes))
    return this
  }

  /** Reads exactly n bytes, failing if the connection ends first or `timeout` ms pass. */
  async read(n: number, timeout = 3000): Promise<Buffer> {
    await this.#until(() => this.#buffer.length >= n || this.#ended || this.#closed, timeout)
    if (this.#buffer.length < n) throw new Error(`connection ended after ${this.#buffer.length} of ${n} bytes: ${this.#buffer.toString('hex')}`)
    const out = this.#buffer.subarray(0, n)
    this.#buffer = this.#buffer.subarray(n)
    return out
  }

  /** Reads until the peer ends, returning everything left. */
  async readToEnd(timeout = 3000): Promise<Buffer> {
    await this.#until(() => this.#ended || this.#closed, timeout)
    const out = this.#buffer
    this.#buffer = Buffer.alloc(0)
    return out
  }

  /** Waits for the server to end or close the connection; returns any bytes that came first. */
  async expectClose(timeout = 3000): Promise<Buffer> {
    return this.readToEnd(timeout)
  }

  get ended(): boolean {
    return this.#ended || this.#closed
  }

  async #until(predicate: () => boolean, timeout: number): Promise<void> {
    const deadline = Date.now() + timeout
    while (!predicate()) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out; have ${this.#buffer.toString('hex')}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.#wake = null
    }
  }
}

export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')

/** A raw client through the proxy at socksPort: NO AUTH, CONNECT 127.0.0.1:targetPort, success checked. */
export async function connectThrough(t: TestContext, socksPort: number, targetPort: number): Promise<RawClient> {
  const c = await RawClient.connect(t, socksPort)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', targetPort)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.deepEqual((await c.read(10)).subarray(0, 2), hex('0500'))
  return c
}

/** Encodes a CONNECT-style request for 127.0.0.1:port (or any IPv4). */
export function ipv4Request(command: number, ip: string, port: number): Buffer {
  const b = Buffer.alloc(10)
  b[0] = 5
  b[1] = command
  b[3] = 1
  ip.split('.').forEach((p, i) => (b[4 + i] = Number(p)))
  b.writeUInt16BE(port, 8)
  return b
}

export function domainRequest(command: number, name: string, port: number): Buffer {
  const n = Buffer.from(name)
  const b = Buffer.alloc(7 + n.length)
  b[0] = 5
  b[1] = command
  b[3] = 3
  b[4] = n.length
  n.copy(b, 5)
  b.writeUInt16BE(port, 5 + n.length)
  return b
}

/** True if something accepts a TCP connection on 127.0.0.1:`port` (for waiting on a spawned server). */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/**
 * A server listening on 127.0.0.1 with `protocols` (ListenOptions.protocols), recording every ended
 * connection; after the test, every connection must have been closed (as with startSocks).
 */
export async function startListening(t: TestContext, protocols: ListenOptions['protocols'], options: ServerOptions = {}, configure?: (server: SocksServer) => void): Promise<{ server: SocksServer; port: number; ended: ConnectionContext[] }> {
  const server = createServer({ logger: silentLogger, ...options })
  configure?.(server)
  const ended: ConnectionContext[] = []
  server.on('disconnect', (ctx) => ended.push(ctx))
  const { port } = await server.listen({ host: '127.0.0.1', port: 0, protocols })
  closeAfter(t, server)
  return { server, port, ended }
}
