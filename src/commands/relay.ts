import type { Socket } from 'node:net'
import { SocksError } from '../core/errors.js'
import { READ_SIZE_BULK, nextReadBuffer, readInto, releaseReadBuffer, setNextReadBuffer, sharedReadBuffer, takeReadBuffer } from './read-buffers.js'

const kRelay = Symbol('socksmith.relay')
const kPeer = Symbol('socksmith.peer')
const kWatched = Symbol('socksmith.watched')
/** The read buffer of its own that a socket moving bulk data reads into (see onRelayRead). */
const kOwned = Symbol('socksmith.owned')
/** A read buffer that a write to the peer still holds; the socket reads again when the peer drains. */
const kPinned = Symbol('socksmith.pinned')

/** Per-connection relay state: with the symbols on the two sockets, all the relay allocates. */
interface RelayState {
  readonly client: Socket
  readonly upstream: Socket
  open: number
  error: unknown
  resolve: (error: unknown) => void
}

type RelaySocket = Socket & {
  [kRelay]: RelayState | undefined
  [kPeer]: RelaySocket
  /** A middleware listens to this socket's bytes: they go through its stream, as it expects. */
  [kWatched]: boolean
  [kOwned]: Buffer | undefined
  [kPinned]: Buffer | undefined
}

/**
 * Pumps client ⇄ upstream until both sockets are closed. Resolves with the first error seen
 * (null for a clean finish); never rejects.
 *
 * This is `pipe()` without its per-pipe closures: every handler is a module-level function that
 * finds its peer on the socket, so a relayed connection costs one small state object.
 * - Reads land in buffers of src/read-buffers.ts and go to the peer from there (onRelayRead), not
 *   through the stream, unless a middleware listens to a socket's 'data': then that socket's bytes
 *   flow as 'data' events, which the relay forwards too (onData).
 * - Backpressure both ways: when the peer cannot take a write at once, the source pauses until the
 *   peer drains.
 * - Half-close: both sockets are allowHalfOpen, and an `end` on one side ends the other's
 *   writable, so a FIN travels through while the other direction keeps flowing.
 * - A reset (error) on one side destroys the other, so it is seen as a reset, not a clean end.
 * `early` is payload the client pipelined behind its request; it goes out first.
 * `idleTimeout` (ms, 0 = none) is one timer, on the client socket, which sees traffic both ways.
 */
export function relay(client: Socket, upstream: Socket, early: Buffer | null, idleTimeout: number): Promise<unknown> {
  return new Promise((resolve) => {
    const state: RelayState = { client, upstream, open: 2, error: null, resolve }
    const c = client as RelaySocket
    const u = upstream as RelaySocket
    c[kRelay] = state
    u[kRelay] = state
    c[kPeer] = u
    u[kPeer] = c
    // Decided before the relay adds listeners of its own.
    c[kWatched] = isWatched(client)
    u[kWatched] = isWatched(upstream)
    if (!c[kWatched]) readInto(c, onRelayRead)
    if (!u[kWatched]) readInto(u, onRelayRead)
    client.setTimeout(idleTimeout)
    if (idleTimeout > 0) client.on('timeout', onIdle)
    if (early !== null && early.length > 0) upstream.write(early)
    for (const socket of [client, upstream]) {
      // Bytes still in a socket's stream (read before the relay, or read while watched) come as 'data'.
      socket.on('data', onData)
      socket.on('drain', onDrain)
      socket.on('end', onEnd)
      socket.on('error', onError)
      socket.on('close', onClose)
    }
    // An end that arrived during the handshake was already emitted: pass it on by hand.
    if (client.readableEnded) upstream.end()
    if (upstream.readableEnded) client.end()
    client.resume()
    upstream.resume()
    if (client.destroyed) onClose.call(c)
    if (upstream.destroyed) onClose.call(u)
  })
}

function isWatched(socket: Socket): boolean {
  return socket.listenerCount('data') > 0 || socket.listenerCount('readable') > 0
}

function onData(this: RelaySocket, chunk: Buffer): void {
  const peer = this[kPeer]
  // The peer is gone: drop the bytes and keep reading, so this side's end is seen.
  if (peer.destroyed) return
  // A chunk of highWaterMark or more makes write() return false even when the kernel took it all
  // at once; pausing then would cost a pause/resume per chunk for nothing.
  if (!peer.write(chunk) && peer.writableLength > 0) this.pause()
}

function onDrain(this: RelaySocket): void {
  const peer = this[kPeer]
  releasePinned(peer)
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

function onIdle(this: RelaySocket): void {
  const state = this[kRelay]
  if (state === undefined) return
  state.error ??= new SocksError('ERR_SOCKS_IDLE_TIMEOUT')
  state.client.destroy()
  state.upstream.destroy()
}

function onClose(this: RelaySocket): void {
  const state = this[kRelay]
  if (state === undefined) return
  this[kRelay] = undefined
  if (--state.open > 0) {
    // One side is gone for good; nothing more can be delivered to it. Finish the other side's
    // writes and end it (an unclean close already destroyed both in onError). If that side was
    // paused waiting for this one to drain, it reads on (dropping what it reads) to see its end.
    const peer = this[kPeer]
    if (!peer.writableEnded) peer.end()
    releasePinned(peer)
    if (!peer.destroyed && !peer.readableEnded) peer.resume()
    return
  }
  // Both handles are closed: no read lands in their buffers and no write holds one any more.
  releaseBuffers(state.client as RelaySocket)
  releaseBuffers(state.upstream as RelaySocket)
  state.resolve(state.error)
}

function releaseBuffers(socket: RelaySocket): void {
  dropOwned(socket)
  releasePinned(socket)
}

/** The write that held the socket's pinned buffer is done (drained) or can never be (closed). */
function releasePinned(socket: RelaySocket): void {
  const pinned = socket[kPinned]
  socket[kPinned] = undefined
  if (pinned !== undefined) releaseReadBuffer(pinned)
}

/**
 * What a relayed socket's reads go through (net's `onread` callback, `this` the socket): the
 * kernel reads straight into a buffer of src/read-buffers.ts, instead of into a fresh allocation
 * per read that becomes a Buffer, goes through the stream and comes out as a 'data' event.
 * - A socket starts on the shared buffer. Its bytes must be used before this returns (a copy goes
 *   out), since the next read of any socket overwrites them.
 * - A read of READ_SIZE_BULK or more means bulk data: the socket gets a buffer of its own, and its
 *   reads go to the peer without a copy. If the kernel takes the write at once, the socket reads
 *   into the same buffer again. If not, the write holds the buffer (pinned) until the peer drains,
 *   the socket pauses, and its next read goes into another buffer of its own.
 * - A read below the peer's highWaterMark means the burst is over: back to the shared buffer.
 * Outside the relay (the upstream plugin's handshakes), while bytes from before wait in the stream,
 * or when a middleware watches, a copy is pushed into the socket's stream, as for a plain socket.
 * Returning false pauses the socket (net calls readStop).
 */
function onRelayRead(this: RelaySocket, length: number, buffer: Buffer): boolean {
  if (this[kRelay] === undefined || this[kWatched] || this.readableLength > 0) {
    dropOwned(this)
    return this.push(copyOf(buffer, length))
  }
  const peer = this[kPeer]
  if (peer.destroyed) {
    dropOwned(this)
    return true
  }
  if (buffer === sharedReadBuffer || length < peer.writableHighWaterMark) {
    const ok = peer.write(copyOf(buffer, length))
    if (buffer !== sharedReadBuffer) dropOwned(this)
    else if (length >= READ_SIZE_BULK) setNextReadBuffer((this[kOwned] = takeReadBuffer()))
    return ok || peer.writableLength === 0
  }
  peer.write(buffer.subarray(0, length))
  if (peer.writableLength === 0) {
    // The kernel took it all: read into the same buffer again.
    setNextReadBuffer(buffer)
    return true
  }
  this[kPinned] = buffer
  setNextReadBuffer((this[kOwned] = takeReadBuffer()))
  return false
}

/** Back to the shared buffer (the socket's buffer of its own, if it had one, is spare again). */
function dropOwned(socket: RelaySocket): void {
  const owned = socket[kOwned]
  socket[kOwned] = undefined
  if (owned !== undefined) releaseReadBuffer(owned)
}

function copyOf(buffer: Buffer, length: number): Buffer {
  const copy = Buffer.allocUnsafe(length)
  buffer.copy(copy, 0, 0, length)
  return copy
}

/**
 * `onread` for outgoing sockets the relay may carry: the dialler passes it to `net.connect()`, so
 * their reads take the relay's path even where readInto() cannot switch a socket over.
 */
export const relayReads = { buffer: nextReadBuffer, callback: onRelayRead as (length: number, buffer: Buffer) => boolean }
