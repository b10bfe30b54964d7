// The origin connection an HTTP client's connection keeps between its forwarded requests. A plain
// request whose exchange ended cleanly leaves its origin socket here instead of closing it; the
// next request of the same client connection takes it back only if its connect phase, after
// every middleware ran as usual, would dial exactly the same thing (OriginKey). One socket at
// most: a client connection's requests run one at a time, so one parked socket serves the common
// case (a client fetching many things from one origin), and a client alternating between origins
// costs a dial per switch, as before, without the proxy holding idle sockets for it.
import type { Socket } from 'node:net'
import type { Address } from '../protocol/address.js'
import { armDeadline, DeadlineEntry, disarmDeadline } from '../core/deadlines.js'

/**
 * How long a parked origin socket waits for the next request: short, so it stays below the
 * keep-alive timeout of common origins (node 5 s, Apache 5 s, nginx 75 s) and a reused socket is
 * rarely one the origin is closing at that very moment. The pipeline's idle timeout, if shorter, bounds it.
 */
export const PARKED_ORIGIN_MS = 4000

/** What a connect phase would dial: a parked socket serves only a request with the same key. */
export interface OriginKey {
  /** The dialer object (identity only): a reload, or a middleware routing elsewhere, sets another. */
  readonly dialer: object
  readonly user: string | null
  /** ctx.destination after the connect middleware (type, host, port). */
  readonly destination: Address
  /**
   * The vetted addresses the dial was given (ctx.resolved), joined; null if nobody resolved. For
   * the direct dialer the parked socket's peer must instead be among the addresses vetted now.
   */
  readonly resolved: string | null
  /** What the dial set (ctx.dialed, ctx.via, ctx.bound), given again to the requests that reuse the socket. */
  readonly dialed: Address
  readonly via: string | null
  readonly bound: Address | null
}

export class OriginPark extends DeadlineEntry {
  #socket: Socket | null = null
  #key: OriginKey | null = null
  #closed = false
  // One set of handlers per client connection, not per parked socket.
  readonly #onGone = (): void => {
    this.#drop(true)
  }

  /** Keeps `socket` for the next request (the one parked before is closed); closed at once after close(). */
  park(socket: Socket, key: OriginKey, idleTimeout: number): void {
    this.#drop(true)
    if (this.#closed || socket.destroyed || !socket.writable || !socket.readable) {
      socket.destroy()
      return
    }
    this.#socket = socket
    this.#key = key
    // Anything the origin does while nobody asked it something ends the socket: its close or
    // reset, its FIN, or bytes (no response can come without a request).
    socket.on('close', this.#onGone)
    socket.on('error', this.#onGone)
    socket.on('end', this.#onGone)
    socket.on('data', this.#onGone)
    armDeadline(this, idleTimeout > 0 ? Math.min(idleTimeout, PARKED_ORIGIN_MS) : PARKED_ORIGIN_MS)
  }

  /**
   * The parked socket, if it was dialled for `key`'s dialer, user and destination, and (`peerIn`)
   * its peer is one of the addresses the direct dialer would dial now; null otherwise (it stays parked).
   */
  take(dialer: object, user: string | null, destination: Address, resolved: string | null, peerIn: readonly { address: string }[] | null): { socket: Socket; key: OriginKey } | null {
    const socket = this.#socket
    const key = this.#key
    if (socket === null || key === null) return null
    if (key.dialer !== dialer || key.user !== user || key.destination.port !== destination.port || key.destination.host !== destination.host || key.destination.type !== destination.type) return null
    if (peerIn !== null) {
      if (!peerIn.some((a) => a.address === key.dialed.host)) return null
    } else if (key.resolved !== resolved) return null
    this.#drop(false)
    return { socket, key }
  }

  /** The client connection ended: the parked socket closes and nothing is parked from now on. */
  close(): void {
    this.#closed = true
    this.#drop(true)
  }

  /** The parked socket waited too long (deadlines.ts). */
  onDeadline(): void {
    this.#drop(true)
  }

  #drop(destroy: boolean): void {
    const socket = this.#socket
    if (socket === null) return
    this.#socket = null
    this.#key = null
    disarmDeadline(this)
    socket.removeListener('close', this.#onGone)
    socket.removeListener('error', this.#onGone)
    socket.removeListener('end', this.#onGone)
    socket.removeListener('data', this.#onGone)
    if (destroy) socket.destroy()
    // Taken: the 'data' listener put it in flowing mode; the next request's client attaches its own.
    else socket.pause()
  }
}
