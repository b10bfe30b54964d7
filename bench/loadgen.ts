/**
 * A load generator process: a raw-socket SOCKS5 client (RFC 1928 / RFC 1929) and HTTP proxy client
 * (CONNECT tunnels, keep-alive absolute-URI GETs) written for speed, driven by the orchestrator over
 * IPC. Every socket reads into one shared buffer (`onread`), so the client allocates nothing per
 * chunk and the server under test, not this process, is the bottleneck.
 */
import { connect, type Socket } from 'node:net'
import { createSocket } from 'node:dgram'
import { performance } from 'node:perf_hooks'
import { ECHO_BYTES, HTTP_BODY_BYTES, type LatencyResult, type LoadCommand, type LoadResult, type RequestsResult, type Route } from './messages.js'

const TARGET_HOST = '127.0.0.1'
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024)
const WRITE_CHUNK = Buffer.alloc(1024 * 1024, 0xa5)
const ECHO_PAYLOAD = Buffer.alloc(ECHO_BYTES, 0x65)

type Destination = { type: 'ip' | 'domain'; port: number }

interface StreamHandlers {
  /** Handshake done (or, without a proxy, TCP connected). `reply` is the proxy's full reply, if any. */
  ready(conn: TunnelConnection, reply: Buffer | null): void
  /** Payload bytes in `buf[offset, offset + length)`; valid only during the call. */
  payload(conn: TunnelConnection, length: number, buf: Buffer, offset: number): void
  failed(conn: TunnelConnection, err: Error): void
}

// Handshake steps of a TunnelConnection (HttpHead: the answer to an HTTP CONNECT).
const Step = { Connecting: 0, Method: 1, Auth: 2, Reply: 3, HttpHead: 4, Ready: 5, Done: 6 } as const
type Step = (typeof Step)[keyof typeof Step]

function encodeRequest(command: number, destination: Destination, domain: string): Buffer {
  const port = Buffer.from([destination.port >> 8, destination.port & 0xff])
  if (destination.type === 'domain') {
    const name = Buffer.from(domain, 'ascii')
    return Buffer.concat([Buffer.from([5, command, 0, 3, name.length]), name, port])
  }
  // UDP ASSOCIATE names no destination: 0.0.0.0:0, "whatever I send from".
  if (command === 3) return Buffer.from([5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
  return Buffer.concat([Buffer.from([5, command, 0, 1, 127, 0, 0, 1]), port])
}

function encodeAuth(auth: { username: string; password: string }): Buffer {
  const user = Buffer.from(auth.username)
  const pass = Buffer.from(auth.password)
  return Buffer.concat([Buffer.from([1, user.length]), user, Buffer.from([pass.length]), pass])
}

/** `Proxy-Authorization: Basic …` and its CRLF, or nothing. */
function proxyAuthorization(auth: Route['auth']): string {
  return auth === null ? '' : `Proxy-Authorization: Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}\r\n`
}

/** An HTTP CONNECT request head (RFC 9110 §9.3.6: authority-form, Host the same). */
function encodeConnect(destination: Destination, route: Route): Buffer {
  const authority = `${destination.type === 'domain' ? route.domain : TARGET_HOST}:${destination.port}`
  return Buffer.from(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${proxyAuthorization(route.auth)}\r\n`, 'latin1')
}

/** Precomputed bytes of one route and destination, shared by all connections of a test. */
class Dialogue {
  readonly greeting: Buffer
  readonly auth: Buffer | null
  /** The SOCKS5 request, or the whole HTTP CONNECT head. */
  readonly request: Buffer
  readonly http: boolean

  constructor(readonly route: Route, command: number, readonly destination: Destination) {
    this.http = route.protocol === 'http'
    if (this.http && command !== 1) throw new Error('an HTTP proxy has CONNECT only')
    this.greeting = Buffer.from(route.auth === null ? [5, 1, 0] : [5, 1, 2])
    this.auth = route.auth === null ? null : encodeAuth(route.auth)
    this.request = this.http ? encodeConnect(destination, route) : encodeRequest(command, destination, route.domain)
  }
}

const CR = 0x0d
const LF = 0x0a

/**
 * Finds the end of an HTTP head (the empty line: CR LF CR LF) in `buf[offset, end)`, carrying how
 * much of it the earlier bytes ended with in `matched` (0–3). Returns the offset after the head's
 * last byte, or -1 with `state.matched` updated.
 */
function findHeadEnd(state: { matched: number }, buf: Buffer, offset: number, end: number): number {
  let matched = state.matched
  for (let i = offset; i < end; i++) {
    const byte = buf[i]
    if (byte === ((matched & 1) === 0 ? CR : LF)) {
      if (++matched === 4) {
        state.matched = 0
        return i + 1
      }
    } else {
      matched = byte === CR ? 1 : 0
    }
  }
  state.matched = matched
  return -1
}

/** The status code of a status line at the start of `head` ("HTTP/1.1 200 …"), or 0. */
function statusOf(head: Buffer, length: number): number {
  if (length < 12 || head[0] !== 0x48 /* H */ || head[8] !== 0x20) return 0
  const code = (head[9]! - 48) * 100 + (head[10]! - 48) * 10 + (head[11]! - 48)
  return code >= 100 && code <= 999 ? code : 0
}

/** A proxy's answer that was not 2xx: the test reports the status, not a broken connection. */
class HttpStatusError extends Error {
  constructor(readonly status: number) {
    super(`HTTP status ${status}`)
  }
}

/** One client connection: handshake as a small state machine over the bytes `onread` delivers. */
class TunnelConnection {
  readonly socket: Socket
  step: Step = Step.Connecting
  readonly #dialogue: Dialogue
  readonly #handlers: StreamHandlers
  readonly #handshake = Buffer.alloc(300)
  #have = 0
  #need = 2
  readonly #headState = { matched: 0 }
  /** Per-test scratch: bytes seen, bytes expected, the upload's 8-byte acknowledgement. */
  seen = 0
  expected = 0
  ack: Buffer | null = null

  constructor(dialogue: Dialogue, handlers: StreamHandlers) {
    this.#dialogue = dialogue
    this.#handlers = handlers
    const proxy = dialogue.route.proxy
    const direct = proxy === null
    const host = direct ? (dialogue.destination.type === 'domain' ? 'localhost' : TARGET_HOST) : proxy.host
    this.socket = connect({
      host,
      port: direct ? dialogue.destination.port : proxy.port,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => this.#feed(n, buf as Buffer) },
    })
    this.socket.on('connect', () => this.#onConnect())
    this.socket.on('error', (err) => this.fail(err))
    this.socket.on('close', () => this.fail(new Error('closed by peer')))
  }

  fail(err: Error): void {
    if (this.step === Step.Done) return
    this.step = Step.Done
    this.socket.destroy()
    this.#handlers.failed(this, err)
  }

  /** Ends the connection on purpose: no failure is reported. */
  close(): void {
    this.step = Step.Done
    this.socket.destroy()
  }

  #onConnect(): void {
    if (this.#dialogue.route.proxy === null) {
      this.step = Step.Ready
      this.#handlers.ready(this, null)
      return
    }
    if (this.#dialogue.http) {
      this.step = Step.HttpHead
      this.socket.write(this.#dialogue.request)
      return
    }
    this.step = Step.Method
    this.socket.write(this.#dialogue.greeting)
  }

  /** Returns true: `onread` pauses the socket on false. */
  #feed(n: number, buf: Buffer): boolean {
    let offset = 0
    if (this.step === Step.HttpHead) {
      offset = this.#feedHttpHead(n, buf)
      if (offset < 0) return true
    }
    while (this.step !== Step.Ready && offset < n) {
      if (this.step === Step.Done) return true
      const take = Math.min(this.#need - this.#have, n - offset)
      buf.copy(this.#handshake, this.#have, offset, offset + take)
      this.#have += take
      offset += take
      if (this.#have === this.#need) this.#advance()
    }
    if (offset < n && this.step === Step.Ready) this.#handlers.payload(this, n - offset, buf, offset)
    return true
  }

  /**
   * The answer to an HTTP CONNECT: keeps the status line's first 12 bytes, skips the headers up to
   * the empty line. Returns where the tunnel's bytes begin in `buf`, or -1 (head not complete, or
   * the connection failed).
   */
  #feedHttpHead(n: number, buf: Buffer): number {
    if (this.#have < 12) {
      const take = Math.min(12 - this.#have, n)
      buf.copy(this.#handshake, this.#have, 0, take)
      this.#have += take
    }
    const end = findHeadEnd(this.#headState, buf, 0, n)
    if (end < 0) return -1
    const status = statusOf(this.#handshake, this.#have)
    if (status < 200 || status > 299) {
      this.fail(status === 0 ? new Error('not an HTTP answer') : new HttpStatusError(status))
      return -1
    }
    this.step = Step.Ready
    this.#handlers.ready(this, null)
    return end
  }

  #advance(): void {
    const hs = this.#handshake
    switch (this.step) {
      case Step.Method: {
        if (hs[0] !== 5) return this.fail(new Error(`bad version ${hs[0]}`))
        this.#have = 0
        if (hs[1] === 2 && this.#dialogue.auth !== null) {
          this.step = Step.Auth
          this.socket.write(this.#dialogue.auth)
        } else if (hs[1] === 0) {
          this.#sendRequest()
        } else {
          return this.fail(new Error(`method 0x${hs[1]!.toString(16)} selected`))
        }
        return
      }
      case Step.Auth: {
        if (hs[1] !== 0) return this.fail(new Error(`auth status ${hs[1]}`))
        this.#have = 0
        this.#sendRequest()
        return
      }
      case Step.Reply: {
        if (this.#need === 5) {
          if (hs[1] !== 0) return this.fail(new Error(`reply ${hs[1]}`))
          const atyp = hs[3]
          this.#need = atyp === 1 ? 10 : atyp === 4 ? 22 : 7 + hs[4]!
          return
        }
        this.step = Step.Ready
        this.#handlers.ready(this, hs.subarray(0, this.#need))
        return
      }
      default:
    }
  }

  #sendRequest(): void {
    this.step = Step.Reply
    this.#need = 5
    this.socket.write(this.#dialogue.request)
  }
}

function now(): number {
  return performance.timeOrigin + performance.now()
}

interface Outcome {
  errors: number
  firstError: string | null
}

function noteError(outcome: Outcome, err: Error): void {
  outcome.errors++
  outcome.firstError ??= err.message
}

function sizeHeader(size: number): Buffer {
  const header = Buffer.alloc(8)
  header.writeBigUInt64BE(BigInt(size))
  return header
}

function pump(socket: Socket, bytes: number, done: () => void): void {
  let left = bytes
  const write = (): void => {
    while (left > 0) {
      const n = Math.min(left, WRITE_CHUNK.length)
      left -= n
      if (!socket.write(n === WRITE_CHUNK.length ? WRITE_CHUNK : WRITE_CHUNK.subarray(0, n))) {
        socket.once('drain', write)
        return
      }
    }
    done()
  }
  write()
}

/** Several streams at once; resolves when all finished. Download: target sends; upload: we send. */
function streams(command: Extract<LoadCommand, { type: 'download' | 'upload' }>): Promise<LoadResult & { startedAt: number; endedAt: number }> {
  return new Promise((resolve) => {
    const outcome: Outcome = { errors: 0, firstError: null }
    const dialogue = new Dialogue(command.route, 1, { type: 'ip', port: command.port })
    let open = command.streams
    let bytes = 0
    let startedAt = Infinity
    let endedAt = 0
    const finish = (conn: TunnelConnection): void => {
      endedAt = Math.max(endedAt, now())
      conn.close()
      if (--open === 0) resolve({ id: command.id, count: bytes, ...outcome, elapsedMs: endedAt - startedAt, startedAt, endedAt })
    }
    const upload = command.type === 'upload'
    const handlers: StreamHandlers = {
      ready(conn) {
        conn.expected = command.bytesPerStream
        startedAt = Math.min(startedAt, now())
        conn.socket.write(sizeHeader(command.bytesPerStream))
        if (upload) pump(conn.socket, command.bytesPerStream, () => {})
      },
      payload(conn, length, buf, offset) {
        if (upload) {
          conn.ack ??= Buffer.alloc(8)
          buf.copy(conn.ack, conn.seen, offset, offset + Math.min(length, 8 - conn.seen))
          conn.seen += length
          if (conn.seen < 8) return
          const acked = Number(conn.ack.readBigUInt64BE(0))
          if (acked !== conn.expected) noteError(outcome, new Error(`sink got ${acked} of ${conn.expected} bytes`))
          else bytes += acked
          finish(conn)
          return
        }
        conn.seen += length
        if (conn.seen >= conn.expected) {
          bytes += conn.expected
          finish(conn)
        }
      },
      failed(conn, err) {
        noteError(outcome, err)
        finish(conn)
      },
    }
    for (let i = 0; i < command.streams; i++) new TunnelConnection(dialogue, handlers)
  })
}

/**
 * Handlers of the echo tests. After the success reply the client sends ECHO_BYTES to the
 * echo-and-close target; once they are back through the proxy it closes, `done` counts it and
 * `next` opens the next connection. So a connection counts only when data made it both ways. A
 * refused or reset connection is retried on the next tick, not in a tight loop.
 */
function echoHandlers(outcome: Outcome, done: () => void, next: () => void): StreamHandlers {
  return {
    ready(conn) {
      conn.socket.write(ECHO_PAYLOAD)
    },
    payload(conn, length) {
      conn.seen += length
      if (conn.seen < ECHO_BYTES) return
      conn.close()
      done()
      next()
    },
    failed(_conn, err) {
      noteError(outcome, err)
      setImmediate(next)
    },
  }
}

/** `concurrency` loops of connect → handshake → 32 B echo → close for `durationMs`. */
function handshakes(command: Extract<LoadCommand, { type: 'handshakes' }>): Promise<LoadResult & { total: number }> {
  return new Promise((resolve) => {
    const outcome: Outcome = { errors: 0, firstError: null }
    const dialogue = new Dialogue(command.route, 1, { type: command.destination, port: command.port })
    const startedAt = now()
    const deadline = startedAt + command.durationMs
    let inWindow = 0
    let total = 0
    let loops = command.concurrency
    const next = (): void => {
      if (now() >= deadline) {
        if (--loops === 0) resolve({ id: command.id, count: inWindow, total, ...outcome, elapsedMs: command.durationMs })
        return
      }
      new TunnelConnection(dialogue, handlers)
    }
    const handlers = echoHandlers(
      outcome,
      () => {
        total++
        if (now() <= deadline) inWindow++
      },
      next,
    )
    for (let i = 0; i < command.concurrency; i++) next()
  })
}

/**
 * One connection at a time for `durationMs` (at least 50): the time from connect() to the echo's
 * last byte, then close. p50 and p99 of those times: what one client waits, with nothing queued.
 */
function latency(command: Extract<LoadCommand, { type: 'latency' }>): Promise<LatencyResult> {
  return new Promise((resolve) => {
    const outcome: Outcome = { errors: 0, firstError: null }
    const dialogue = new Dialogue(command.route, 1, { type: command.destination, port: command.port })
    const samples: number[] = []
    const startedAt = performance.now()
    let began = 0
    const next = (): void => {
      if (performance.now() - startedAt >= command.durationMs && samples.length >= 50) {
        samples.sort((a, b) => a - b)
        const at = (q: number): number => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!
        resolve({ id: command.id, count: samples.length, ...outcome, elapsedMs: performance.now() - startedAt, p50Ms: at(0.5), p99Ms: at(0.99) })
        return
      }
      if (outcome.errors > 100 && samples.length === 0) {
        resolve({ id: command.id, count: 0, ...outcome, elapsedMs: performance.now() - startedAt, p50Ms: NaN, p99Ms: NaN })
        return
      }
      began = performance.now()
      new TunnelConnection(dialogue, handlers)
    }
    const handlers = echoHandlers(outcome, () => samples.push(performance.now() - began), next)
    next()
  })
}

/** Opens `count` connections to the echo target, each proven by one echoed message, and keeps them. */
const held: TunnelConnection[] = []

function hold(command: Extract<LoadCommand, { type: 'hold' }>): Promise<LoadResult> {
  return new Promise((resolve) => {
    const outcome: Outcome = { errors: 0, firstError: null }
    const dialogue = new Dialogue(command.route, 1, { type: 'ip', port: command.port })
    const probe = Buffer.alloc(16, 0x42)
    const startedAt = now()
    let started = 0
    let settled = 0
    let holding = 0
    const settle = (): void => {
      settled++
      if (started < command.count) start()
      else if (settled === command.count) resolve({ id: command.id, count: holding, ...outcome, elapsedMs: now() - startedAt })
    }
    const handlers: StreamHandlers = {
      ready(conn) {
        conn.socket.write(probe)
      },
      payload(conn, length) {
        conn.seen += length
        if (conn.seen === probe.length) {
          holding++
          held.push(conn)
          settle()
        }
      },
      failed(conn, err) {
        // A held connection that breaks later is only reported, not settled twice.
        if (conn.seen >= probe.length) {
          noteError(outcome, err)
          return
        }
        noteError(outcome, err)
        settle()
      },
    }
    const start = (): void => {
      started++
      new TunnelConnection(dialogue, handlers)
    }
    for (let i = 0; i < Math.min(command.concurrency, command.count); i++) start()
  })
}

function release(id: number): LoadResult {
  const count = held.length
  for (const conn of held.splice(0)) conn.close()
  return { id, count, errors: 0, firstError: null, elapsedMs: 0 }
}

/** One association; a window of datagrams in flight to the UDP echo; counts the echoes that come back. */
function udp(command: Extract<LoadCommand, { type: 'udp' }>): Promise<LoadResult> {
  return new Promise((resolve) => {
    const outcome: Outcome = { errors: 0, firstError: null }
    const payload = Buffer.alloc(command.payload, 0x33)
    const finish = (count: number, elapsedMs: number): void => resolve({ id: command.id, count, ...outcome, elapsedMs })
    const run = (relayHost: string, relayPort: number, control: TunnelConnection | null): void => {
      const header = Buffer.from([0, 0, 0, 1, 127, 0, 0, 1, command.port >> 8, command.port & 0xff])
      const packet = control === null ? payload : Buffer.concat([header, payload])
      const socket = createSocket('udp4')
      let received = 0
      let inFlight = 0
      let lastTickReceived = 0
      let running = true
      const send = (): void => {
        inFlight++
        socket.send(packet, relayPort, relayHost)
      }
      socket.on('error', (err) => noteError(outcome, err))
      socket.on('message', () => {
        if (!running) return
        received++
        inFlight--
        send()
      })
      socket.bind(0, TARGET_HOST, () => {
        const startedAt = now()
        for (let i = 0; i < command.window; i++) send()
        // Datagrams get lost under load: when nothing came back for a tick, refill the window.
        const tick = setInterval(() => {
          if (received === lastTickReceived && inFlight > 0) {
            inFlight = 0
            for (let i = 0; i < command.window; i++) send()
          }
          lastTickReceived = received
        }, 20)
        setTimeout(() => {
          running = false
          const elapsed = now() - startedAt
          clearInterval(tick)
          socket.close()
          control?.close()
          finish(received, elapsed)
        }, command.durationMs)
      })
    }
    if (command.route.proxy === null) return run(TARGET_HOST, command.port, null)
    const proxy = command.route.proxy
    const dialogue = new Dialogue(command.route, 3, { type: 'ip', port: 0 })
    new TunnelConnection(dialogue, {
      ready(conn, reply) {
        // BND.ADDR 0.0.0.0 means "the address you reached me on".
        const r = reply!
        const host = r[3] === 1 ? `${r[4]}.${r[5]}.${r[6]}.${r[7]}` : proxy.host
        const port = r[3] === 1 ? r.readUInt16BE(8) : proxy.port
        run(host === '0.0.0.0' ? proxy.host : host, port, conn)
      },
      payload() {},
      failed(_conn, err) {
        noteError(outcome, err)
        finish(0, 0)
      },
    })
  })
}

// Body framing of a response (RFC 9112 §6.3): a length, chunks, or until the connection closes.
const Body = { Head: 0, Length: 1, ChunkSize: 2, ChunkData: 3, ChunkEnd: 4, Trailers: 5, UntilClose: 6 } as const
type Body = (typeof Body)[keyof typeof Body]

/** What one keep-alive client of a 'requests' test reports to its loop. */
interface RequestHandlers {
  /** A whole 2xx response came in; the connection is ready for the next request (unless `reconnect`). */
  response(client: HttpClient): void
  /** A status that was not 2xx: the loop stops. */
  refused(client: HttpClient, status: number): void
  failed(client: HttpClient, err: Error): void
}

/**
 * One keep-alive HTTP/1.1 client connection: sends a GET, reads the response (its head into a
 * buffer of its own, its body counted, not kept), and sends the next GET on the same connection. A
 * response with `Connection: close` ends the connection; the loop opens the next one.
 */
class HttpClient {
  readonly socket: Socket
  /** The server said `Connection: close` (or framed the body by closing): open a new connection. */
  reconnect = false
  #body: Body = Body.Head
  #left = 0
  #lineEmpty = true
  #pastDigits = false
  #done = false
  readonly #head = Buffer.alloc(4096)
  #headLength = 0
  readonly #headState = { matched: 0 }
  readonly #request: Buffer
  readonly #handlers: RequestHandlers

  constructor(route: Route, port: number, request: Buffer, handlers: RequestHandlers) {
    this.#request = request
    this.#handlers = handlers
    const proxy = route.proxy
    this.socket = connect({
      host: proxy === null ? TARGET_HOST : proxy.host,
      port: proxy === null ? port : proxy.port,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => this.#feed(n, buf as Buffer) },
    })
    this.socket.on('connect', () => this.send())
    this.socket.on('error', (err) => this.#fail(err))
    this.socket.on('close', () => {
      if (this.#body === Body.UntilClose && !this.#done) {
        this.#done = true
        this.reconnect = true
        this.#handlers.response(this)
        return
      }
      this.#fail(new Error('closed by peer'))
    })
  }

  send(): void {
    this.#body = Body.Head
    this.#headLength = 0
    this.socket.write(this.#request)
  }

  close(): void {
    this.#done = true
    this.socket.destroy()
  }

  #fail(err: Error): void {
    if (this.#done) return
    this.#done = true
    this.socket.destroy()
    this.#handlers.failed(this, err)
  }

  #feed(n: number, buf: Buffer): boolean {
    let offset = 0
    while (offset < n && !this.#done) {
      switch (this.#body) {
        case Body.Head: {
          const end = findHeadEnd(this.#headState, buf, offset, n)
          const stop = end < 0 ? n : end
          if (this.#headLength + stop - offset > this.#head.length) {
            this.#fail(new Error('response head over 4 KiB'))
            return true
          }
          buf.copy(this.#head, this.#headLength, offset, stop)
          this.#headLength += stop - offset
          offset = stop
          if (end >= 0 && !this.#startBody()) return true
          break
        }
        case Body.Length: {
          const take = Math.min(this.#left, n - offset)
          this.#left -= take
          offset += take
          if (this.#left === 0) this.#complete()
          break
        }
        case Body.ChunkSize: {
          // Hex digits, then maybe ";extensions", then CR LF.
          const byte = buf[offset++]!
          if (byte === LF) {
            this.#body = this.#left === 0 ? Body.Trailers : Body.ChunkData
            this.#lineEmpty = true
            this.#pastDigits = false
          } else if (!this.#pastDigits) {
            const lower = byte | 0x20
            if (byte >= 48 && byte <= 57) this.#left = this.#left * 16 + byte - 48
            else if (lower >= 97 && lower <= 102) this.#left = this.#left * 16 + lower - 87
            else this.#pastDigits = true
          }
          break
        }
        case Body.ChunkData: {
          const take = Math.min(this.#left, n - offset)
          this.#left -= take
          offset += take
          if (this.#left === 0) {
            this.#body = Body.ChunkEnd
            this.#left = 2
          }
          break
        }
        case Body.ChunkEnd: {
          offset++
          if (--this.#left === 0) this.#body = Body.ChunkSize
          break
        }
        case Body.Trailers: {
          const byte = buf[offset++]!
          if (byte === LF) {
            if (this.#lineEmpty) this.#complete()
            this.#lineEmpty = true
          } else if (byte !== CR) {
            this.#lineEmpty = false
          }
          break
        }
        case Body.UntilClose:
          offset = n
          break
      }
    }
    return true
  }

  /** The head is in: its status and how its body is framed. False when the connection is given up. */
  #startBody(): boolean {
    const status = statusOf(this.#head, this.#headLength)
    if (status === 0) {
      this.#fail(new Error('not an HTTP response'))
      return false
    }
    if (status < 200 || status > 299) {
      this.#done = true
      this.socket.destroy()
      this.#handlers.refused(this, status)
      return false
    }
    // One small string per response head: the headers that frame the body and end the connection.
    const head = this.#head.toString('latin1', 0, this.#headLength)
    this.reconnect = /\r\nconnection:[^\r]*\bclose\b/i.test(head)
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)
    if (/\r\ntransfer-encoding:[^\r]*\bchunked\b/i.test(head)) {
      this.#body = Body.ChunkSize
      this.#left = 0
    } else if (length !== null) {
      this.#left = Number(length[1])
      this.#body = Body.Length
      if (this.#left === 0) this.#complete()
    } else if (status === 204) {
      this.#complete()
    } else {
      this.#body = Body.UntilClose
    }
    return true
  }

  #complete(): void {
    this.#body = Body.Head
    if (this.reconnect) {
      this.#done = true
      this.socket.destroy()
    }
    this.#handlers.response(this)
  }
}

/**
 * `concurrency` keep-alive clients, each sending a GET of the origin's page and, once the response
 * is in, the next, for `durationMs`. Through a proxy the request is absolute-form
 * (`GET http://127.0.0.1:O/`, RFC 9112 §3.2.2), straight to the origin origin-form. The first
 * status that is not 2xx (a proxy that does not forward answers 501) stops every loop.
 */
function requests(command: Extract<LoadCommand, { type: 'requests' }>): Promise<RequestsResult> {
  return new Promise((resolve) => {
    const outcome: Outcome = { errors: 0, firstError: null }
    const authority = `${TARGET_HOST}:${command.port}`
    const target = command.route.proxy === null ? '/' : `http://${authority}/`
    const request = Buffer.from(`GET ${target} HTTP/1.1\r\nHost: ${authority}\r\n${command.route.proxy === null ? '' : proxyAuthorization(command.route.auth)}\r\n`, 'latin1')
    const deadline = now() + command.durationMs
    let inWindow = 0
    let total = 0
    let connections = 0
    let badStatus: number | null = null
    let loops = command.concurrency
    const end = (): void => {
      if (--loops === 0) resolve({ id: command.id, count: inWindow, total, connections, badStatus, ...outcome, elapsedMs: command.durationMs })
    }
    const open = (): void => {
      if (now() >= deadline || badStatus !== null) return end()
      connections++
      new HttpClient(command.route, command.port, request, handlers)
    }
    const handlers: RequestHandlers = {
      response(client) {
        total++
        const t = now()
        if (t <= deadline) inWindow++
        if (client.reconnect) return open()
        if (t >= deadline || badStatus !== null) {
          client.close()
          return end()
        }
        client.send()
      },
      refused(_client, status) {
        badStatus ??= status
        end()
      },
      failed(_client, err) {
        noteError(outcome, err)
        setImmediate(open)
      },
    }
    for (let i = 0; i < command.concurrency; i++) open()
  })
}

async function execute(command: LoadCommand): Promise<LoadResult> {
  switch (command.type) {
    case 'download':
    case 'upload':
      return streams(command)
    case 'handshakes':
      return handshakes(command)
    case 'latency':
      return latency(command)
    case 'hold':
      return hold(command)
    case 'release':
      return release(command.id)
    case 'udp':
      return udp(command)
    case 'requests':
      return requests(command)
    case 'exit':
      release(command.id)
      process.disconnect?.()
      return { id: command.id, count: 0, errors: 0, firstError: null, elapsedMs: 0 }
  }
}

process.on('message', (command: LoadCommand) => {
  execute(command).then(
    (result) => {
      if (process.connected) process.send!(result)
    },
    (err: unknown) => {
      if (process.connected) process.send!({ id: command.id, count: 0, errors: 1, firstError: String(err), elapsedMs: 0 })
    },
  )
})
process.on('disconnect', () => process.exit(0))
process.send!({ type: 'ready' })
