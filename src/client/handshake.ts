import { connect, type Socket } from 'node:net'
import { Command, Method, Reply } from '../protocol/constants.js'
import { formatAddress, type Address } from '../protocol/address.js'
import { encodeGreeting, parseMethodSelection } from '../protocol/greeting.js'
import { encodePasswordRequest, parsePasswordStatus } from '../protocol/password.js'
import { parseReply } from '../protocol/request.js'
import { ByteReader, type MessageParser } from '../protocol/reader.js'
import { SocksError, isSocksError } from '../core/errors.js'

/** Where a SOCKS5 proxy listens and how to log in to it. */
export interface ProxyOptions {
  host: string
  port: number
  /** With `password`, offers RFC 1929 username/password authentication besides NO AUTH. */
  username?: string
  password?: string
  /** Milliseconds allowed for the whole handshake, TCP connect included. Default 10000. */
  timeout?: number
}

/** Milliseconds a client handshake may take when `timeout` is not given. */
export const DEFAULT_HANDSHAKE_TIMEOUT = 10_000

// The longest proxy answer is a reply with a 255-byte domain: VER REP RSV ATYP LEN NAME PORT.
const MAX_ANSWER_LENGTH = 4 + 1 + 255 + 2

const GREETING_NO_AUTH = encodeGreeting([Method.NO_AUTH])
const GREETING_WITH_PASSWORD = encodeGreeting([Method.NO_AUTH, Method.USERNAME_PASSWORD])

const REPLY_TEXT: Readonly<Record<number, string>> = {
  [Reply.GENERAL_FAILURE]: 'general failure',
  [Reply.NOT_ALLOWED]: 'connection not allowed by ruleset',
  [Reply.NETWORK_UNREACHABLE]: 'network unreachable',
  [Reply.HOST_UNREACHABLE]: 'host unreachable',
  [Reply.CONNECTION_REFUSED]: 'connection refused',
  [Reply.TTL_EXPIRED]: 'TTL expired',
  [Reply.COMMAND_NOT_SUPPORTED]: 'command not supported',
  [Reply.ADDRESS_TYPE_NOT_SUPPORTED]: 'address type not supported',
}

const COMMAND_TEXT: Readonly<Record<Command, string>> = {
  [Command.CONNECT]: 'CONNECT',
  [Command.BIND]: 'BIND',
  [Command.UDP_ASSOCIATE]: 'UDP ASSOCIATE',
}

interface Waiter {
  readonly parse: MessageParser<unknown>
  readonly resolve: (value: unknown) => void
  readonly reject: (err: unknown) => void
}

/**
 * One client handshake with a proxy over one socket: reads the proxy's answers, bounds the wait,
 * and either hands the socket back clean (`finish`) or destroys it (`fail`).
 *
 * Answers are pulled with `socket.read(n)` in paused mode, never more than one answer's worth at a
 * time, so bytes the proxy sends after its last answer stay in the socket's own buffer; the few that
 * were read along with the answer are unshifted back. A sized read that returns data never ends the
 * stream, so a proxy's FIN right after its reply still reaches the caller as 'end' (a bare `read()`
 * would emit 'end' before the caller could listen, and a 'data' listener would lose the bytes).
 */
export class Handshake {
  readonly socket: Socket
  readonly #name: string
  readonly #bytes = new ByteReader()
  readonly #signal: AbortSignal | undefined
  #timer: NodeJS.Timeout | null
  #waiter: Waiter | null = null
  #failed = false
  #error: unknown = null

  constructor(socket: Socket, proxy: ProxyOptions, signal: AbortSignal | undefined) {
    this.socket = socket
    this.#name = `SOCKS proxy ${formatAddress(proxy)}`
    this.#signal = signal
    const timeout = proxy.timeout ?? DEFAULT_HANDSHAKE_TIMEOUT
    this.#timer = setTimeout(this.#onTimeout, timeout, timeout)
    signal?.addEventListener('abort', this.#onAbort, { once: true })
    socket.on('readable', this.#pull)
    socket.on('error', this.#onError)
    socket.on('end', this.#onClose)
    socket.on('close', this.#onClose)
    // A socket handed in for chaining may already be gone, and then no event would ever come.
    if (socket.destroyed) this.#onClose()
  }

  /**
   * Greets, authenticates if the proxy picks username/password, sends the request and reads the
   * first reply. Throws the SocksError for any refusal; the caller passes it to `fail`.
   * `request` may be built late, once the TCP connection exists (UDP ASSOCIATE needs its local address).
   * `onGreeted` runs once the greeting (and login) succeeded, just before the request is sent.
   */
  async negotiate(credentials: Buffer | null, command: Command, request: Buffer | (() => Promise<Buffer>), onGreeted?: () => void): Promise<Address> {
    this.socket.write(credentials === null ? GREETING_NO_AUTH : GREETING_WITH_PASSWORD)
    const method = await this.read(parseMethodSelection)
    if (method === Method.NO_ACCEPTABLE) {
      throw new SocksError('ERR_SOCKS_NO_ACCEPTABLE_METHOD', `${this.#name} accepts none of the offered authentication methods`)
    }
    if (method === Method.USERNAME_PASSWORD && credentials !== null) {
      this.socket.write(credentials)
      const status = await this.read(parsePasswordStatus)
      if (status !== 0) throw new SocksError('ERR_SOCKS_AUTH_FAILED', `${this.#name} rejected the username/password (status ${status})`)
    } else if (method !== Method.NO_AUTH) {
      throw new SocksError('ERR_SOCKS_PROXY_FAILED', `${this.#name} chose authentication method ${hex(method)}, which was not offered`)
    }
    onGreeted?.()
    this.socket.write(typeof request === 'function' ? await request() : request)
    return this.readReply(command)
  }

  /** Reads one reply; a failure REP becomes ERR_SOCKS_REPLY carrying that REP. */
  async readReply(command: Command): Promise<Address> {
    const { reply, bound } = await this.read(parseReply)
    if (reply !== Reply.SUCCEEDED) {
      const text = REPLY_TEXT[reply] ?? 'unassigned reply code'
      throw new SocksError('ERR_SOCKS_REPLY', `${this.#name} refused ${COMMAND_TEXT[command]}: ${text} (${hex(reply)})`, {
        reply: reply as Reply,
      })
    }
    return bound
  }

  /** Resolves with the next whole answer; rejects with whatever failed the handshake. */
  read<T>(parse: MessageParser<T>): Promise<T> {
    if (this.#failed) return Promise.reject(this.#error)
    return new Promise<T>((resolve, reject) => {
      this.#waiter = { parse, resolve: resolve as (value: unknown) => void, reject }
      this.#pull()
    })
  }

  /** BIND's wait for the peer is bounded by the proxy's own accept timeout and the caller's signal, not by `timeout`. */
  stopTimer(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
  }

  /** Detaches from the socket and returns it with any bytes read past the last answer put back in front. */
  finish(): Socket {
    if (this.#failed) throw this.#error
    this.#dispose()
    const socket = this.socket
    socket.off('readable', this.#pull)
    socket.off('error', this.#onError)
    socket.off('end', this.#onClose)
    socket.off('close', this.#onClose)
    const rest = this.#bytes.rest()
    if (rest !== null) socket.unshift(rest)
    return socket
  }

  /** Destroys the socket and settles the handshake with `err`. Later failures are ignored. */
  fail(err: unknown): void {
    if (this.#failed) return
    this.#failed = true
    this.#error = err
    this.#dispose()
    // Listeners stay attached so a late 'error' from the dying socket has somewhere to go.
    this.socket.destroy()
    const waiter = this.#waiter
    this.#waiter = null
    waiter?.reject(err)
  }

  readonly #pull = (): void => {
    const waiter = this.#waiter
    if (waiter === null || this.#failed) return
    const socket = this.socket
    let value: unknown
    try {
      while ((value = this.#bytes.read(waiter.parse)) === undefined) {
        const available = socket.readableLength
        if (available === 0) {
          // Starts a read, or emits 'end' if the proxy has already closed; either way an event follows.
          socket.read(0)
          return
        }
        this.#bytes.push(socket.read(Math.min(available, MAX_ANSWER_LENGTH)) as Buffer)
      }
    } catch (err) {
      this.fail(isSocksError(err)
        ? new SocksError('ERR_SOCKS_PROXY_FAILED', `malformed answer from ${this.#name}: ${err.message}`, { cause: err })
        : err)
      return
    }
    this.#waiter = null
    waiter.resolve(value)
  }

  readonly #onError = (err: Error): void => {
    this.fail(err)
  }

  readonly #onClose = (): void => {
    this.fail(new SocksError('ERR_SOCKS_PROXY_FAILED', `${this.#name} closed the connection during the handshake`))
  }

  readonly #onTimeout = (ms: number): void => {
    this.fail(new SocksError('ERR_SOCKS_CONNECT_TIMEOUT', `handshake with ${this.#name} timed out after ${ms} ms`))
  }

  readonly #onAbort = (): void => {
    this.fail(this.#signal!.reason)
  }

  #dispose(): void {
    this.stopTimer()
    this.#signal?.removeEventListener('abort', this.#onAbort)
  }
}

/**
 * Checks the options that can be checked before any socket exists and encodes the RFC 1929 request.
 * Returns null when no credentials are configured.
 */
export function prepareCredentials(proxy: ProxyOptions): Buffer | null {
  const { timeout } = proxy
  if (timeout !== undefined && !(Number.isFinite(timeout) && timeout > 0)) {
    throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `timeout must be a positive number of milliseconds, got ${timeout}`)
  }
  if (proxy.username === undefined && proxy.password === undefined) return null
  return encodePasswordRequest(proxy.username ?? '', proxy.password ?? '')
}

/**
 * Opens the TCP connection to the proxy. `allowHalfOpen` so that a relay piping this socket can
 * pass a half-close through instead of having Node end our side as soon as the far side ends.
 */
export function connectToProxy(proxy: ProxyOptions): Socket {
  return connect({ host: proxy.host, port: proxy.port, allowHalfOpen: true })
}

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, '0')}`
}
