import type { Socket } from 'node:net'
import { SocksError } from './errors.js'

const kRelay = Symbol('socksmith.relay')

/** Per-connection relay state: the only allocation the relay makes. */
interface RelayState {
  readonly client: Socket
  readonly upstream: Socket
  open: number
  error: unknown
  resolve: (error: unknown) => void
}

type RelaySocket = Socket & { [kRelay]: RelayState | undefined; [kPeer]: Socket }
const kPeer = Symbol('socksmith.peer')

/**
 * Pumps client ⇄ upstream until both sockets are closed. Resolves with the first error seen
 * (null for a clean finish); never rejects.
 *
 * This is `pipe()` without its per-pipe closures: every handler is a module-level function that
 * finds its peer on the socket, so a relayed connection costs one small state object.
 * - Backpressure both ways: when a write returns false the source pauses until the sink drains.
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
    c[kPeer] = upstream
    u[kPeer] = client
    client.setTimeout(idleTimeout)
    if (idleTimeout > 0) client.on('timeout', onIdle)
    if (early !== null && early.length > 0) upstream.write(early)
    for (const socket of [client, upstream]) {
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

function onData(this: RelaySocket, chunk: Buffer): void {
  if (!this[kPeer].write(chunk)) this.pause()
}

function onDrain(this: RelaySocket): void {
  const peer = this[kPeer]
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
    // writes and end it (an unclean close already destroyed both in onError).
    const peer = this[kPeer]
    if (!peer.writableEnded) peer.end()
    return
  }
  state.resolve(state.error)
}
