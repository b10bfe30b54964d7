import { connect, isIP, Socket, type LookupFunction } from 'node:net'
import type { ConnectContext, ConnectionContext, Dialer, DialOptions } from '../core/context.js'
import type { ResolvedAddress } from './resolver.js'
import { SocksError, toSocksError } from '../core/errors.js'
import { dialableIp } from './destination.js'

export type { Binder, Dialer, DialOptions } from '../core/context.js'

/** Milliseconds to wait on one address family before racing the other (RFC 8305 suggests 250). */
const HAPPY_EYEBALLS_DELAY = 250

/**
 * Dials the destination directly. Several addresses are raced with happy eyeballs (Node's
 * autoSelectFamily, fed with exactly the vetted addresses through a fixed lookup, so nothing is
 * resolved twice and nothing unvetted is dialled).
 */
export const directDialer: Dialer = {
  async dial(ctx, options) {
    return dialTcp(ctx.destination.host, ctx.destination.port, await addressesToDial(ctx), options)
  },
}

/** The vetted addresses, or null for an IP destination nobody resolved (dialled as it is). */
export function addressesToDial(ctx: Pick<ConnectContext, 'destination' | 'resolved' | 'resolve'>): Promise<readonly ResolvedAddress[]> | null {
  // An IP a middleware set after the driver vetted the request goes through resolve() (which vets it) unless it is plainly dialable.
  const host = ctx.destination.host
  return isIP(host) !== 0 && ctx.resolved === null && dialableIp(host) === host ? null : ctx.resolve()
}

/**
 * The direct dialer as the server's connect phase runs it: the dial ends when the driver aborts
 * the context (the client left, or the connect phase's deadline passed, which also bounds the dial:
 * no timer of its own), which is exactly when `ctx.signal` would abort, without creating the
 * AbortController (an AbortSignal costs each connection about half a KiB and 2% of a handshake's CPU).
 * The socket is a plain one, like the public dialers' (directDialer, dialTcp) give: the relay
 * switches it to its managed reads when it starts (src/commands/read-buffers.ts readInto).
 */
export function dialDirect(ctx: ConnectionContext): Promise<Socket> {
  const addresses = addressesToDial(ctx)
  if (addresses === null) return connectDirect(ctx, null)
  return addresses.then((resolved) => connectDirect(ctx, resolved))
}

/** dialDirect() once the addresses to dial are known (addressesToDial()'s answer). */
export function connectDirect(ctx: ConnectionContext, addresses: readonly ResolvedAddress[] | null): Promise<Socket> {
  return connectTcp(ctx.destination.host, ctx.destination.port, addresses, 0, ctx, reasonOfAbort)
}

/** What the driver's abort passed on (its deadline's error, the client leaving). */
function reasonOfAbort(reason: unknown): unknown {
  return reason ?? new SocksError('ERR_SOCKS_CLIENT_CLOSED')
}

/**
 * Connects to host:port. With `addresses`, only those are dialled (raced when there are several).
 * Resolves once connected; rejects with a SocksError carrying the right reply code.
 */
export function dialTcp(host: string, port: number, addresses: readonly ResolvedAddress[] | null, options: DialOptions): Promise<Socket> {
  const signal = options.signal
  return connectTcp(host, port, addresses, options.timeout, signal, () => signal.reason)
}

/** What ends a dial early: an AbortSignal's abort, or the driver's abort of a connection's context. */
type DialWatch = AbortSignal | Pick<ConnectionContext, 'watchAbort' | 'unwatchAbort'>

function connectTcp(host: string, port: number, addresses: readonly ResolvedAddress[] | null, timeout: number, watch: DialWatch, reasonOf: (reason: unknown) => unknown): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const signal = watch instanceof AbortSignal ? watch : null
    if (signal?.aborted === true) {
      reject(toSocksError(reasonOf(undefined)))
      return
    }
    let socket: Socket
    if (addresses === null || addresses.length === 1) {
      const target = addresses === null ? host : addresses[0]!.address
      socket = newSocket()
      socket.connect(port, target)
    } else {
      socket = connect({
        host,
        port,
        allowHalfOpen: true,
        noDelay: true,
        lookup: fixedLookup(addresses),
        autoSelectFamily: true,
        autoSelectFamilyAttemptTimeout: HAPPY_EYEBALLS_DELAY,
      })
    }
    let timer: NodeJS.Timeout | null = null
    const cleanup = (): void => {
      if (timer !== null) clearTimeout(timer)
      socket.removeListener('connect', onConnect)
      socket.removeListener('error', onError)
      if (signal !== null) signal.removeEventListener('abort', onAbort)
      else (watch as Exclude<DialWatch, AbortSignal>).unwatchAbort(onAbort)
    }
    const onConnect = (): void => {
      cleanup()
      resolve(socket)
    }
    const onError = (err: Error): void => {
      cleanup()
      socket.destroy()
      reject(toSocksError(err))
    }
    const onAbort = (why?: unknown): void => {
      const reason = reasonOf(why)
      onError(reason instanceof Error ? reason : new SocksError('ERR_SOCKS_CLIENT_CLOSED'))
    }
    socket.once('connect', onConnect)
    socket.once('error', onError)
    if (signal !== null) signal.addEventListener('abort', onAbort, { once: true })
    else if (!(watch as Exclude<DialWatch, AbortSignal>).watchAbort(onAbort)) {
      onAbort()
      return
    }
    if (timeout > 0) {
      timer = setTimeout(() => onError(new SocksError('ERR_SOCKS_CONNECT_TIMEOUT', `connect to ${host}:${port} timed out after ${timeout} ms`)), timeout)
    }
  })
}

/**
 * A socket to dial, made without constructor options where it can be. Node's Socket constructor
 * copies any options object with a spread, and on Node 20 the copy gets a new hidden class every
 * time, even for one reused object: each of the ~25 option reads that follow misses V8's inline
 * caches and goes to the runtime (`node --log-ic`: 26 misses per socket, none for `new Socket()`;
 * about a tenth of a short connection's instructions under callgrind, bench/README.md). The two
 * options the dial needs are set on the bare socket instead, which is what the constructor would
 * do with them: `allowHalfOpen` is the stream's own field, and `setNoDelay()` before the connect
 * is kept and applied once connected.
 */
function newSocket(): Socket {
  const socket = new Socket()
  socket.allowHalfOpen = true
  socket.setNoDelay(true)
  return socket
}

function fixedLookup(addresses: readonly ResolvedAddress[]): LookupFunction {
  return (_hostname, opts, callback) => {
    if ((opts as { all?: boolean }).all === true) {
      ;(callback as (err: null, addresses: { address: string; family: number }[]) => void)(null, addresses.map((a) => ({ address: a.address, family: a.family })))
    } else {
      callback(null, addresses[0]!.address, addresses[0]!.family)
    }
  }
}
