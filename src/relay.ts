import type { Socket } from 'node:net'
import { SocksError } from './errors.js'

const kRelay = Symbol('socksmith.relay')

interface RelayState {
  readonly client: Socket
  readonly upstream: Socket
  open: number
  error: unknown
  resolve: (error: unknown) => void
}

type RelaySocket = Socket & { [kRelay]?: RelayState }

/**
 * Pipes client ⇄ upstream until both sockets are closed. Resolves with the first error seen
 * (null for a clean finish); never rejects.
 *
 * Both sockets are created with allowHalfOpen, and `pipe()` ends the writable side of one when the
 * other's readable ends, so a FIN travels through in either direction while the other direction
 * keeps flowing. `pipe()` also gives backpressure both ways. No data listener of ours sits on the
 * path, and the handlers are module-level functions that find their state on the socket: the
 * per-connection cost is one small state object.
 *
 * `early` is payload the client pipelined behind its request; it goes out before anything else.
 * `idleTimeout` (ms, 0 = none) is one timer, on the client socket, which sees activity both ways.
 */
export function relay(client: Socket, upstream: Socket, early: Buffer | null, idleTimeout: number): Promise<unknown> {
  return new Promise((resolve) => {
    const state: RelayState = { client, upstream, open: 2, error: null, resolve }
    ;(client as RelaySocket)[kRelay] = state
    ;(upstream as RelaySocket)[kRelay] = state
    client.on('error', onError)
    upstream.on('error', onError)
    client.on('close', onClose)
    upstream.on('close', onClose)
    client.setTimeout(idleTimeout)
    if (idleTimeout > 0) client.on('timeout', onIdle)
    if (early !== null && early.length > 0) upstream.write(early)
    const clientEnded = client.readableEnded
    const upstreamEnded = upstream.readableEnded
    client.pipe(upstream)
    upstream.pipe(client)
    // An end that arrived during the handshake was already emitted: pass it on by hand.
    if (clientEnded) upstream.end()
    if (upstreamEnded) client.end()
    client.resume()
    upstream.resume()
    if (client.destroyed) onClose.call(client)
    if (upstream.destroyed) onClose.call(upstream)
  })
}

function onError(this: RelaySocket, err: Error): void {
  const state = this[kRelay]
  if (state === undefined) return
  state.error ??= err
  // A reset on one side is passed on as a reset: the other end must not mistake it for a clean end.
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
    // One side is gone for good. If the other still waits to write to it, nobody will read:
    // give the surviving side a moment to flush and then end it.
    const other = this === state.client ? state.upstream : state.client
    if (!other.writableEnded) other.end()
    return
  }
  state.resolve(state.error)
}
