import type { Socket } from 'node:net'
import { SocksError } from '../core/errors.js'
import { Command } from '../protocol/constants.js'
import { armDeadline, DeadlineEntry, disarmDeadline } from '../core/deadlines.js'
import { READ_SIZE_LARGE, readInto, releaseHeld, releaseReadBuffers, setReadSink, setShapedReads, type ReadSink } from './read-buffers.js'
import type { TokenBucket } from './token-bucket.js'

const kRelay = Symbol('socksmith.relay')
const kPeer = Symbol('socksmith.peer')
const kTaps = Symbol('socksmith.taps')
const kShaping = Symbol('socksmith.shaping')
const kStandIn = Symbol('socksmith.relayStandIn')

export interface RelayOptions {
  /** Milliseconds with no byte either way before both sides are closed; 0: no limit. */
  readonly idleTimeout: number
  /**
   * Read through managed buffers (src/commands/read-buffers.ts) where a socket allows it; false:
   * every byte goes through the sockets' streams. The server's `fastRelay` option.
   */
  readonly fastReads: boolean
}

/** A side of a relayed connection: `'client'` taps what the client sends, `'outbound'` what comes back. */
export type RelaySide = 'client' | 'outbound'

/**
 * Sees the bytes one side sends, in order, as the relay forwards them (see `RelayContext.tap`).
 * `chunk` is valid only during the call: it may be a view into a read buffer that the next read
 * overwrites, so copy it (`Buffer.from(chunk)`) to keep it, and never modify it.
 */
export type RelayTap = (chunk: Buffer) => void

/** Checks of the idle timeout per timeout: a relay goes idle between 1 and 1 + 1/IDLE_CHECKS timeouts after its last byte. */
const IDLE_CHECKS = 4

/**
 * Per-connection relay state: with the symbols on the two sockets, all the relay allocates. It is
 * also the idle check's deadline (deadlines.ts): no socket timer, which Node would refresh on every
 * read and write; the check looks at the client socket's byte counts, which move with traffic
 * either way, every timeout / IDLE_CHECKS.
 */
class RelayState extends DeadlineEntry {
  open = 2
  error: unknown = null
  /** What a tap threw: a bug in the middleware that added it. */
  bug: unknown = null
  /** Client-socket bytes (read + written) at the last idle check, and how many checks in a row saw none move. */
  #seenBytes = 0
  #quietChecks = 0
  readonly #checkMs: number

  constructor(
    readonly client: Socket,
    readonly upstream: Socket,
    idleTimeout: number,
    readonly resolve: (error: unknown) => void,
    readonly reject: (bug: unknown) => void,
  ) {
    super()
    this.#checkMs = idleTimeout > 0 ? Math.max(1, Math.round(idleTimeout / IDLE_CHECKS)) : 0
    if (this.#checkMs > 0) {
      this.#seenBytes = client.bytesRead + client.bytesWritten
      armDeadline(this, this.#checkMs)
    }
  }

  onDeadline(): void {
    if (this.open === 0) return
    const bytes = this.client.bytesRead + this.client.bytesWritten
    if (bytes !== this.#seenBytes) {
      this.#seenBytes = bytes
      this.#quietChecks = 0
    } else if (++this.#quietChecks >= IDLE_CHECKS) {
      this.error ??= new SocksError('ERR_SOCKS_IDLE_TIMEOUT')
      this.client.destroy()
      this.upstream.destroy()
      return
    }
    armDeadline(this, this.#checkMs)
  }
}

/** The buckets that shape what is read from one socket (ctx.throttle), and the wait for them. */
interface Shaping {
  readonly buckets: TokenBucket[]
  /** Set while the socket has stopped reading until its buckets are out of debt. */
  timer: NodeJS.Timeout | null
  /** The socket reads small (read-buffers.ts, setShapedReads): its slowest bucket is below SMALL_READS_BELOW. */
  small: boolean
  /** The timer was cut to MAX_SHAPING_WAIT: when it fires the debt is looked at again. */
  capped: boolean
}

/**
 * A side shaped below this rate (bytes/s) reads 16 KiB at a time, so that it moves smoothly; at or
 * above it a large read (1 MiB) is at most 1/16 s of the rate, and the side keeps the fast path's
 * large, uncopied reads: a limit set high enough never to bite costs next to nothing.
 */
const SMALL_READS_BELOW = 16 * READ_SIZE_LARGE
/** The longest a shaped side sleeps before its buckets are looked at again (ms). */
const MAX_SHAPING_WAIT = 60_000

type RelaySocket = Socket & {
  [kRelay]: RelayState | undefined
  [kPeer]: RelaySocket
  /** Taps of the bytes read from this socket (ctx.tap); absent on an untapped socket. */
  [kTaps]?: RelayTap[]
  /** Buckets the bytes read from this socket go through (ctx.throttle); absent on an unshaped socket. */
  [kShaping]?: Shaping
  /** What ctx.tap / ctx.throttle of this socket's side act on instead (relayThrough); absent on a socket relayed as it is. */
  [kStandIn]?: Socket
}

/**
 * Pumps client ⇄ upstream until both sockets are closed. Resolves with the first error seen
 * (null for a clean finish); rejects only with what a tap threw (a middleware's bug).
 *
 * This is `pipe()` without its per-pipe closures: every handler is a module-level function that
 * finds its peer on the socket, so a relayed connection costs one small state object.
 * - With `fastReads`, reads land in managed buffers (src/commands/read-buffers.ts, which owns
 *   them and states the rules) and go to the peer from there (`pump`), not through the stream.
 *   Without it, or on a socket that cannot be switched, or on a side whose stream a middleware
 *   listens to ('data', kept working for compatibility; `ctx.tap` is the way), bytes flow as
 *   'data' events, which the relay forwards too (onData).
 * - Taps (ctx.tap) see every chunk of their side before it is forwarded, on either path.
 * - Backpressure both ways: when the peer cannot take a write at once, the source stops reading
 *   until the peer drains.
 * - Shaping (ctx.throttle): a chunk read from a shaped side is forwarded and charged to its
 *   buckets; if that puts one in debt, the side stops reading until the debt is paid off. A side
 *   stopped by its buckets and by a full peer reads again only once both allow (onDrain, onShaped).
 * - Half-close: both sockets are allowHalfOpen, and an `end` on one side ends the other's
 *   writable, so a FIN travels through while the other direction keeps flowing.
 * - A reset (error) on one side destroys the other, so it is seen as a reset, not a clean end.
 * `early` is payload the client pipelined behind its request; it goes out first, tapped and
 * charged as any chunk the client side reads. The idle timeout is one check of the client socket's byte counts (RelayState).
 */
export function relay(client: Socket, upstream: Socket, early: Buffer | null, options: RelayOptions): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const state = new RelayState(client, upstream, options.idleTimeout, resolve, reject)
    const c = client as RelaySocket
    const u = upstream as RelaySocket
    c[kRelay] = state
    u[kRelay] = state
    c[kPeer] = u
    u[kPeer] = c
    // Decided before the relay adds listeners of its own: a side whose stream a middleware
    // already listens to keeps reading through it.
    const fastClient = options.fastReads && !isWatched(client) && readInto(client)
    const fastUpstream = options.fastReads && !isWatched(upstream) && readInto(upstream)
    if (fastClient) setReadSink(client, pump)
    if (fastUpstream) setReadSink(upstream, pump)
    // Early data is a chunk read from the client like any other: tapped, then written with
    // backpressure and charged to the client side's buckets. The client reads on only when both allow.
    let clientReads = true
    if (early !== null && early.length > 0 && (c[kTaps] === undefined || tapped(c, early)) && !upstream.destroyed) clientReads = forwarded(c, u, early)
    for (const socket of [client, upstream]) {
      // Bytes still in a socket's stream (read before the relay, or on the stream path) come as 'data'.
      socket.on('data', onData)
      socket.on('drain', onDrain)
      socket.on('end', onEnd)
      socket.on('error', onError)
      socket.on('close', onClose)
    }
    // After the relay's own listeners: a 'data' listener a middleware adds later moves that side
    // to the stream path, so it sees the bytes from then on.
    if (fastClient) client.on('newListener', onNewListener)
    if (fastUpstream) upstream.on('newListener', onNewListener)
    // An end that arrived during the handshake was already emitted: pass it on by hand.
    if (client.readableEnded) upstream.end()
    if (upstream.readableEnded) client.end()
    // Held back by the early data, the client side is resumed by upstream's 'drain' or its buckets' timer.
    if (clientReads) client.resume()
    upstream.resume()
    if (client.destroyed) onClose.call(c)
    if (upstream.destroyed) onClose.call(u)
  })
}

/** The connection as ctx.tap() needs it (a structural type: this module does not import the core). */
export interface TapTarget {
  readonly socket: Socket
  readonly outbound: Socket | null
  readonly command: number
}

/**
 * Adds a tap to one side of a connection's relay (ctx.tap). Before the relay starts or while it
 * runs: a tap added late sees the bytes read from then on. Misuse throws at once.
 */
export function addTap(ctx: TapTarget, side: RelaySide, tap: RelayTap): void {
  if (typeof tap !== 'function') throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `ctx.tap(${JSON.stringify(side)}, fn): fn must be a function`)
  const socket = relaySocketOf(ctx, side, 'tap')
  const taps = (socket as RelaySocket)[kTaps]
  if (taps === undefined) (socket as RelaySocket)[kTaps] = [tap]
  else taps.push(tap)
}

/**
 * Shapes one side of a connection's relay with a bucket (ctx.throttle): before the relay starts or
 * while it runs. Returns the function that takes the bucket off again. Misuse throws at once.
 */
export function addThrottle(ctx: TapTarget, side: RelaySide, bucket: TokenBucket): () => void {
  if (typeof bucket !== 'object' || bucket === null || typeof (bucket as { consume?: unknown }).consume !== 'function') {
    throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `ctx.throttle(${JSON.stringify(side)}, bucket): bucket must be a TokenBucket`)
  }
  const socket = relaySocketOf(ctx, side, 'throttle') as RelaySocket
  const shaping = (socket[kShaping] ??= { buckets: [], timer: null, small: false, capped: false })
  shaping.buckets.push(bucket)
  if (!shaping.small && bucket.rate < SMALL_READS_BELOW) {
    shaping.small = true
    setShapedReads(socket, true)
  }
  return () => {
    const at = shaping.buckets.indexOf(bucket)
    if (at < 0) return
    shaping.buckets.splice(at, 1)
    if (shaping.buckets.length > 0 || socket[kShaping] !== shaping) return
    stopShaping(socket)
    // It may have stopped to wait for the bucket just taken off.
    if (socket[kRelay] !== undefined && !socket.destroyed && !socket.readableEnded && !socket[kPeer].writableNeedDrain) socket.resume()
  }
}

/** The socket of `side`, for ctx.tap / ctx.throttle (`what`), or a throw saying why there is none. */
function relaySocketOf(ctx: TapTarget, side: RelaySide, what: 'tap' | 'throttle'): Socket {
  if (side !== 'client' && side !== 'outbound') throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `ctx.${what}(side): side must be 'client' or 'outbound', not ${JSON.stringify(side)}`)
  if (ctx.command === Command.UDP_ASSOCIATE) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `ctx.${what}(): a UDP ASSOCIATE relays datagrams, not a byte stream (use the datagram phase)`)
  const socket = side === 'client' ? ctx.socket : ctx.outbound
  if (socket === null) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `ctx.${what}('outbound'): there is no upstream yet; ${what} in the relay phase, or after the connect phase set ctx.outbound`)
  return (socket as RelaySocket)[kStandIn] ?? socket
}

/**
 * Taps and throttles of `socket`'s side go to `standIn` from now on: the stream the relay pumps
 * in its place. A forwarded HTTP request relays the origin's response body, not the raw socket
 * the connect phase dialled (commands/http-forward.ts).
 */
export function relayThrough(socket: Socket, standIn: Socket): void {
  ;(socket as RelaySocket)[kStandIn] = standIn
}

function stopShaping(socket: RelaySocket): void {
  const shaping = socket[kShaping]
  if (shaping === undefined) return
  socket[kShaping] = undefined
  if (shaping.timer !== null) clearTimeout(shaping.timer)
  shaping.timer = null
  setShapedReads(socket, false)
}

function isWatched(socket: Socket): boolean {
  return socket.listenerCount('data') > 0 || socket.listenerCount('readable') > 0
}

/** What managed reads go to while relayed (read-buffers.ts's ReadSink; `socket` is the source). */
const pump: ReadSink = {
  take(socket, chunk) {
    const source = socket as RelaySocket
    if (source[kTaps] !== undefined && !tapped(source, chunk)) return true
    const peer = source[kPeer]
    // The peer is gone: drop the bytes and keep reading, so this side's end is seen.
    if (peer.destroyed) return true
    return forwarded(source, peer, chunk)
  },
  lend(socket, view) {
    const source = socket as RelaySocket
    if (source[kTaps] !== undefined && !tapped(source, view)) return true
    const peer = source[kPeer]
    if (peer.destroyed) return true
    // A write below the peer's highWaterMark (16 KiB on Node 20, 64 KiB from Node 22) returns true
    // even when it is only buffered, and then no 'drain' comes to release a lent buffer and resume
    // this socket: such a read goes out as a copy, with take()'s backpressure.
    if (view.length < peer.writableHighWaterMark) return forwarded(source, peer, Buffer.from(view))
    peer.write(view)
    // A side shaped at a high rate reads large: in debt, it stops reading (net's pause() of a
    // managed socket stops the handle) without holding more than the write holds.
    if (source[kShaping] !== undefined && !charged(source, view.length)) source.pause()
    // The kernel took it all (the write completed synchronously): nothing holds the buffer.
    // Otherwise write() returned false (the view is at least highWaterMark): 'drain' will come.
    return peer.writableLength === 0
  },
}

/**
 * Writes a chunk that is the peer's to keep, and charges a shaped source for it: true while the
 * source may read on. A chunk of highWaterMark or more makes write() return false even when the
 * kernel took it all at once; stopping then would cost a stop/start per chunk for nothing.
 */
function forwarded(source: RelaySocket, peer: RelaySocket, chunk: Buffer): boolean {
  const flowing = peer.write(chunk) || peer.writableLength === 0
  return source[kShaping] === undefined ? flowing : charged(source, chunk.length) && flowing
}

function onData(this: RelaySocket, chunk: Buffer): void {
  if (this[kTaps] !== undefined && !tapped(this, chunk)) return
  const peer = this[kPeer]
  if (peer.destroyed) return
  if (!peer.write(chunk) && peer.writableLength > 0) this.pause()
  if (this[kShaping] !== undefined && !charged(this, chunk.length)) this.pause()
}

/**
 * Charges a chunk read from `source` to its buckets; false if that left one in debt: the source
 * then stops reading, and onShaped resumes it when the largest debt is paid off.
 */
function charged(source: RelaySocket, length: number): boolean {
  const shaping = source[kShaping]!
  const buckets = shaping.buckets
  let wait = 0
  let slowest = Number.POSITIVE_INFINITY
  for (let i = 0; i < buckets.length; i++) {
    const bucket = buckets[i]!
    const ms = bucket.consume(length)
    if (ms > wait) wait = ms
    if (bucket.rate < slowest) slowest = bucket.rate
  }
  // Rates can change (setRate): the read size follows.
  const small = slowest < SMALL_READS_BELOW
  if (small !== shaping.small) {
    shaping.small = small
    setShapedReads(source, small)
  }
  if (wait === 0) return true
  if (shaping.timer === null) sleep(shaping, source, wait)
  return false
}

/** Stops a side's reads for `wait` ms; a timer past 2^31 - 1 ms would fire at once, so long waits go by MAX_SHAPING_WAIT. */
function sleep(shaping: Shaping, source: RelaySocket, wait: number): void {
  shaping.capped = wait > MAX_SHAPING_WAIT
  shaping.timer = setTimeout(onShaped, shaping.capped ? MAX_SHAPING_WAIT : wait, source)
}

/** The buckets of a side that stopped reading are out of debt. */
function onShaped(source: RelaySocket): void {
  const shaping = source[kShaping]
  if (shaping === undefined) return
  shaping.timer = null
  if (source.destroyed || source.readableEnded) return
  if (shaping.capped) {
    // The wait was longer than one timer: sleep on while still in debt. (Only then: a side that
    // woke when its own debt was paid reads its turn, even if others ran up more since.)
    let wait = 0
    for (const bucket of shaping.buckets) wait = Math.max(wait, bucket.consume(0))
    if (wait > 0) {
      sleep(shaping, source, wait)
      return
    }
  }
  // Waiting for the peer to drain as well: its 'drain' resumes the source (onDrain).
  if (source[kPeer].writableNeedDrain) return
  source.resume()
}

/** Calls the source's taps; false if one threw (both sides are then destroyed). */
function tapped(source: RelaySocket, chunk: Buffer): boolean {
  const taps = source[kTaps]!
  try {
    for (let i = 0; i < taps.length; i++) taps[i]!(chunk)
    return true
  } catch (err) {
    const state = source[kRelay]
    if (state !== undefined) {
      state.bug ??= err
      state.client.destroy()
      state.upstream.destroy()
    }
    return false
  }
}

function onNewListener(this: RelaySocket, event: string | symbol): void {
  if (event !== 'data' && event !== 'readable') return
  setReadSink(this, null)
  this.removeListener('newListener', onNewListener)
}

function onDrain(this: RelaySocket): void {
  const peer = this[kPeer]
  // Every write to this socket is done, so the buffer the peer lent for one is free.
  releaseHeld(peer)
  // A peer waiting for its buckets as well reads again when they allow (onShaped).
  if (peer[kShaping]?.timer != null) return
  if (!peer.destroyed && !peer.readableEnded) peer.resume()
}

function onEnd(this: RelaySocket): void {
  const peer = this[kPeer]
  if (!peer.destroyed) peer.end()
}

function onError(this: RelaySocket, err: Error): void {
  const state = this[kRelay]
  if (state === undefined) return
  state.error ??= err
  state.client.destroy()
  state.upstream.destroy()
}

function onClose(this: RelaySocket): void {
  const state = this[kRelay]
  if (state === undefined) return
  this[kRelay] = undefined
  stopShaping(this)
  const peer = this[kPeer]
  // Writes to this socket are over (done or dropped): the buffer the peer lent for one is free.
  releaseHeld(peer)
  if (--state.open > 0) {
    // One side is gone for good; nothing more can be delivered to it. Finish the other side's
    // writes and end it (an unclean close already destroyed both in onError). If that side was
    // stopped waiting for this one to drain, it reads on (dropping what it reads) to see its end.
    if (!peer.writableEnded) peer.end()
    if (!peer.destroyed && !peer.readableEnded) peer.resume()
    return
  }
  disarmDeadline(state)
  // Both handles are closed: no read lands in their buffers and no write holds one any more.
  releaseReadBuffers(state.client)
  releaseReadBuffers(state.upstream)
  if (state.bug !== null) state.reject(state.bug)
  else state.resolve(state.error)
}
