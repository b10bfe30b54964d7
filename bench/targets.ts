/**
 * The destinations the benchmark dials, in a process of their own so their work is never counted
 * as the server's and never shares an event loop with the load generators. Loopback only.
 * Tells the parent its ports over IPC, then serves until the parent says `exit` or goes away.
 */
import { createServer, Socket, type Server } from 'node:net'
import { createSocket } from 'node:dgram'
import { once } from 'node:events'
import { ECHO_BYTES, HTTP_BODY_BYTES, type TargetPorts } from './messages.js'

const HOST = '127.0.0.1'
const CHUNK = Buffer.alloc(1024 * 1024, 0x5a)

const sockets = new Set<Socket>()

function track(socket: Socket): void {
  sockets.add(socket)
  socket.on('error', noop)
  socket.on('close', () => sockets.delete(socket))
}

/** Reads the 8-byte size header from the first chunk(s); hands any rest to `rest`. */
function readSize(socket: Socket, onSize: (size: number, rest: Buffer) => void): void {
  let header: Buffer = Buffer.alloc(0)
  const onData = (chunk: Buffer): void => {
    header = header.length === 0 ? chunk : Buffer.concat([header, chunk])
    if (header.length < 8) return
    socket.removeListener('data', onData)
    onSize(Number(header.readBigUInt64BE(0)), header.subarray(8))
  }
  socket.on('data', onData)
}

function sendBytes(socket: Socket, size: number): void {
  let left = size
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length)
      left -= n
      const more = socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))
      if (!more) {
        socket.once('drain', pump)
        return
      }
    }
    socket.end()
  }
  pump()
}

function startSource(): Server {
  return createServer({ noDelay: true }, (socket) => {
    track(socket)
    readSize(socket, (size) => {
      socket.resume()
      sendBytes(socket, size)
    })
  })
}

const SINK_BUFFER = Buffer.allocUnsafe(256 * 1024)

/**
 * Re-wraps an accepted socket's handle in a Socket that reads into a reusable buffer (`onread`).
 * net.Server offers no `onread` for accepted sockets, and a 'data' listener allocates a 64 KiB
 * Buffer per read: enough to make the sink, not the server, the bottleneck of the upload test.
 * `handle` is an internal option of net.Socket (node:cluster uses it); without it, 'data' it is.
 */
function fastReader(socket: Socket, onBytes: (n: number, buf: Buffer) => void): Socket {
  const handle = (socket as unknown as { _handle?: unknown })._handle
  if (handle === undefined || handle === null) {
    socket.on('data', (chunk: Buffer) => onBytes(chunk.length, chunk))
    socket.resume()
    return socket
  }
  const options = { handle, noDelay: true, onread: { buffer: SINK_BUFFER, callback: (n: number, buf: Uint8Array) => (onBytes(n, buf as Buffer), true) } }
  const fast = new Socket(options as ConstructorParameters<typeof Socket>[0])
  track(fast)
  fast.resume()
  return fast
}

function startSink(): Server {
  return createServer({ noDelay: true, pauseOnConnect: true }, (accepted) => {
    let size = -1
    let received = 0
    const header = Buffer.alloc(8)
    const socket = fastReader(accepted, (n, buf) => {
      let offset = 0
      if (size < 0) {
        const take = Math.min(n, 8 - received)
        buf.copy(header, received, 0, take)
        received += take
        offset = take
        if (received < 8) return
        size = Number(header.readBigUInt64BE(0))
        received = 0
      }
      const before = received
      received += n - offset
      if (before < size && received >= size) {
        const ack = Buffer.alloc(8)
        ack.writeBigUInt64BE(BigInt(received))
        socket.write(ack)
      }
    })
  })
}

function startEcho(): Server {
  return createServer((socket) => {
    track(socket)
    socket.pipe(socket)
  })
}

function startEchoClose(): Server {
  // Echoes the client's ECHO_BYTES, then closes first. The side that closes first keeps the
  // TIME_WAIT entry: here that is this listener, not the proxy's outgoing socket. A proxy that binds
  // before it connects (Dante binds to its `external` address) would otherwise run out of
  // ephemeral ports within seconds and answer REP 03, and the test would measure port exhaustion
  // instead of handshakes.
  return createServer({ noDelay: true }, (socket) => {
    track(socket)
    let echoed = 0
    socket.on('data', (chunk: Buffer) => {
      if (echoed >= ECHO_BYTES) return
      socket.write(chunk)
      echoed += chunk.length
      if (echoed >= ECHO_BYTES) socket.end()
    })
  })
}

const CR = 0x0d
const LF = 0x0a
const HTTP_RESPONSE = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${HTTP_BODY_BYTES}\r\n\r\n${'h'.repeat(HTTP_BODY_BYTES)}`, 'latin1')

/**
 * The origin of the plain-HTTP forwarding rows. It must cost far less than any proxy in front of
 * it, so it is no HTTP server: it counts request heads (each ends with an empty line, CRLF CRLF,
 * matched across reads) and answers each with the same precomputed 200, keep-alive. The clients
 * and the proxies under test send GETs without a body, which is all it understands.
 */
function startHttpOrigin(): Server {
  return createServer({ noDelay: true, pauseOnConnect: true }, (accepted) => {
    // How much of CR LF CR LF the bytes read so far end with.
    let matched = 0
    const socket = fastReader(accepted, (n, buf) => {
      let heads = 0
      for (let i = 0; i < n; i++) {
        const byte = buf[i]
        if (byte === ((matched & 1) === 0 ? CR : LF)) {
          if (++matched === 4) {
            heads++
            matched = 0
          }
        } else {
          matched = byte === CR ? 1 : 0
        }
      }
      for (let i = 0; i < heads; i++) socket.write(HTTP_RESPONSE)
    })
  })
}

async function listen(server: Server, host = HOST, port = 0): Promise<number> {
  server.listen({ host, port, backlog: 4096 })
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

const echoCloseServer = startEchoClose()
const servers = [startSource(), startSink(), startEcho(), echoCloseServer, startHttpOrigin()]
const [source, sink, echo, echoClose, httpOrigin] = await Promise.all(servers.map((server) => listen(server)))

// The domain-destination handshakes name `localhost`. Where it resolves to ::1 as well (or first),
// a server that tries ::1 must find the target there too, so the same port listens on [::1] when it
// can. Where it cannot (no IPv6, port taken), the orchestrator says so in its notes.
const echoCloseV6Server = startEchoClose()
const echoCloseV6 = await new Promise<boolean>((resolve) => {
  echoCloseV6Server.once('error', () => resolve(false))
  listen(echoCloseV6Server, '::1', echoClose).then(() => resolve(true), () => resolve(false))
})
if (echoCloseV6) servers.push(echoCloseV6Server)

const udp = createSocket('udp4')
udp.on('message', (msg, rinfo) => udp.send(msg, rinfo.port, rinfo.address))
udp.on('error', noop)
udp.bind(0, HOST)
await once(udp, 'listening')

const ports: TargetPorts = { source: source!, sink: sink!, echo: echo!, echoClose: echoClose!, echoCloseV6, udpEcho: udp.address().port, httpOrigin: httpOrigin! }
process.send!({ type: 'ready', ports })

function shutdown(): void {
  for (const server of servers) server.close()
  for (const socket of sockets) socket.destroy()
  udp.close()
  process.disconnect?.()
}

process.on('message', (message: { type: string }) => {
  if (message.type === 'exit') shutdown()
})
// The parent died or closed the channel: nothing left to serve.
process.on('disconnect', () => process.exit(0))

function noop(): void {}
