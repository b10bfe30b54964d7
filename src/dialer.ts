import { connect, isIP, type Socket, type LookupFunction } from 'node:net'
import type { ConnectContext } from './context.js'
import type { ResolvedAddress } from './resolver.js'
import { SocksError, toSocksError } from './errors.js'
import { relayReads } from './relay.js'

export interface DialOptions {
  /** Aborts the dial (the client left). */
  readonly signal: AbortSignal
  /** Connect timeout in milliseconds; 0 disables it. */
  readonly timeout: number
}

/**
 * Opens the outgoing TCP connection of a CONNECT. The direct dialer connects to the destination;
 * the upstream plugin's dialers tunnel through other proxies. A dialer resolves the destination only
 * if it needs an IP (`ctx.resolve()`); if a middleware already resolved and vetted it, `ctx.resolved`
 * holds the addresses it may use.
 */
export interface Dialer {
  dial(ctx: ConnectContext, options: DialOptions): Promise<Socket>
}

/** Milliseconds to wait on one address family before racing the other (RFC 8305 suggests 250). */
const HAPPY_EYEBALLS_DELAY = 250

/**
 * Dials the destination directly. Several addresses are raced with happy eyeballs (Node's
 * autoSelectFamily, fed with exactly the vetted addresses through a fixed lookup, so nothing is
 * resolved twice and nothing unvetted is dialled).
 */
export const directDialer: Dialer = {
  async dial(ctx, options) {
    const destination = ctx.destination
    const addresses = isIP(destination.host) !== 0 && ctx.resolved === null ? null : await ctx.resolve()
    return dialTcp(destination.host, destination.port, addresses, options)
  },
}

/**
 * Connects to host:port. With `addresses`, only those are dialled (raced when there are several).
 * Resolves once connected; rejects with a SocksError carrying the right reply code.
 */
export function dialTcp(host: string, port: number, addresses: readonly ResolvedAddress[] | null, options: DialOptions): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    if (options.signal.aborted) {
      reject(toSocksError(options.signal.reason))
      return
    }
    let socket: Socket
    if (addresses === null || addresses.length === 1) {
      const target = addresses === null ? host : addresses[0]!.address
      socket = connect({ host: target, port, allowHalfOpen: true, noDelay: true, onread: relayReads })
    } else {
      socket = connect({
        host,
        port,
        allowHalfOpen: true,
        noDelay: true,
        onread: relayReads,
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
      options.signal.removeEventListener('abort', onAbort)
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
    const onAbort = (): void => {
      onError(options.signal.reason instanceof Error ? options.signal.reason : new SocksError('ERR_SOCKS_CLIENT_CLOSED'))
    }
    socket.once('connect', onConnect)
    socket.once('error', onError)
    options.signal.addEventListener('abort', onAbort, { once: true })
    if (options.timeout > 0) {
      timer = setTimeout(() => onError(new SocksError('ERR_SOCKS_CONNECT_TIMEOUT', `connect to ${host}:${port} timed out after ${options.timeout} ms`)), options.timeout)
    }
  })
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
