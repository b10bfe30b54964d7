import type { Socket } from 'node:net'
import { Command } from '../protocol/constants.js'
import { toAddress, type Address } from '../protocol/address.js'
import { encodeRequest } from '../protocol/request.js'
import { Handshake, connectToProxy, prepareCredentials, type ProxyOptions } from './handshake.js'

/** Where the proxy should connect to (CONNECT) or expect a connection from (BIND). Domains are sent as ATYP 03. */
export interface Destination {
  host: string
  port: number
}

/** The third argument of `socksConnect()` and `socksBind()`. */
export interface ConnectOptions {
  /** Aborting fails the handshake with `signal.reason` and destroys the socket. */
  signal?: AbortSignal
  /**
   * An already-connected socket to run the handshake over instead of dialling `proxy`, for example
   * the socket of an earlier `socksConnect` when chaining proxies. It is destroyed if the handshake fails.
   */
  socket?: Socket
  /**
   * Called once the proxy has answered the greeting (and accepted the login), right before the
   * request goes out: the proxy is alive, and from here on the wait is for what it does with the
   * request. A caller that bounds the two waits differently re-arms its timer here (the upstream
   * plugin fails over from a proxy that never greets, but not from a slow destination).
   */
  onGreeted?: () => void
}

/** What `socksConnect()` resolves with once the proxy replied success. */
export interface ConnectResult {
  /** Carries the relayed stream. Bytes the proxy sent right after its reply are the first ones read. */
  socket: Socket
  /** BND.ADDR/BND.PORT: the address the proxy connected from. */
  bound: Address
}

/** What `socksBind()` resolves with after the first reply; `accepted` settles with the second. */
export interface BindResult extends ConnectResult {
  /** BND.ADDR/BND.PORT of the first reply: where the proxy listens for the peer. */
  bound: Address
  /**
   * Settles on the second reply: resolves once a peer connected to `bound` (read from `socket` only
   * after that), rejects with the SocksError of a failure reply, a closed proxy or `signal`.
   */
  accepted: Promise<{ peer: Address }>
}

/**
 * Opens a TCP stream to `destination` through a SOCKS5 proxy (RFC 1928 CONNECT, RFC 1929 login).
 *
 * Rejects with a SocksError: `ERR_SOCKS_REPLY` (its `reply` is the proxy's REP byte),
 * `ERR_SOCKS_NO_ACCEPTABLE_METHOD`, `ERR_SOCKS_AUTH_FAILED`, `ERR_SOCKS_CONNECT_TIMEOUT` or
 * `ERR_SOCKS_PROXY_FAILED` (closed early, malformed answer). Errors of the TCP connection to the
 * proxy are passed through as they are, so `err.code` (`ECONNREFUSED`, ...) survives.
 *
 * @example
 * const { socket } = await socksConnect(
 *   { host: '127.0.0.1', port: 1080, username: 'alice', password: 'secret' },
 *   { host: 'example.com', port: 80 },
 * )
 * socket.end('GET / HTTP/1.0\r\nHost: example.com\r\n\r\n')
 * socket.pipe(process.stdout)
 *
 * @example Chaining: the second proxy is reached through the first.
 * const hop = await socksConnect(first, { host: second.host, port: second.port })
 * const { socket } = await socksConnect(second, destination, { socket: hop.socket })
 */
export async function socksConnect(proxy: ProxyOptions, destination: Destination, options: ConnectOptions = {}): Promise<ConnectResult> {
  const { credentials, request } = prepare(proxy, Command.CONNECT, destination, options.signal)
  const handshake = new Handshake(options.socket ?? connectToProxy(proxy), proxy, options.signal)
  try {
    const bound = await handshake.negotiate(credentials, Command.CONNECT, request, options.onGreeted)
    return { socket: handshake.finish(), bound }
  } catch (err) {
    handshake.fail(err)
    throw err
  }
}

/**
 * Asks the proxy to accept one inbound connection for you (RFC 1928 BIND), as FTP active mode does.
 * Resolves after the first reply, with the address to give the peer; `accepted` settles on the second.
 * `proxy.timeout` bounds the handshake up to the first reply; the wait for the peer is bounded by the
 * proxy's own accept timeout and by `signal`.
 *
 * @example
 * const { socket, bound, accepted } = await socksBind(proxy, { host: '203.0.113.7', port: 0 })
 * await tellPeerToConnectTo(bound)
 * const { peer } = await accepted
 * socket.pipe(process.stdout)
 */
export async function socksBind(proxy: ProxyOptions, destination: Destination, options: ConnectOptions = {}): Promise<BindResult> {
  const { credentials, request } = prepare(proxy, Command.BIND, destination, options.signal)
  const handshake = new Handshake(options.socket ?? connectToProxy(proxy), proxy, options.signal)
  let bound: Address
  try {
    bound = await handshake.negotiate(credentials, Command.BIND, request, options.onGreeted)
  } catch (err) {
    handshake.fail(err)
    throw err
  }
  handshake.stopTimer()
  const accepted = acceptPeer(handshake)
  // Whoever never awaits `accepted` must not get an unhandled rejection when the socket dies.
  accepted.catch(noop)
  return { socket: handshake.socket, bound, accepted }
}

async function acceptPeer(handshake: Handshake): Promise<{ peer: Address }> {
  try {
    const peer = await handshake.readReply(Command.BIND)
    handshake.finish()
    return { peer }
  } catch (err) {
    handshake.fail(err)
    throw err
  }
}

/** Everything that can fail before a socket exists fails here, so bad arguments never open a connection. */
function prepare(proxy: ProxyOptions, command: Command, destination: Destination, signal: AbortSignal | undefined) {
  signal?.throwIfAborted()
  const credentials = prepareCredentials(proxy)
  const request = encodeRequest(command, toAddress(destination.host, destination.port))
  return { credentials, request }
}

function noop(): void {}
