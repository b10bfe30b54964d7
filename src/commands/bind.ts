import { createServer, type Server, type Socket } from 'node:net'
import { once } from 'node:events'
import type { ConnectionContext } from '../core/context.js'
import { toAddress, unmapIPv4, type Address } from '../protocol/address.js'
import { SocksError } from '../core/errors.js'

/**
 * BIND (RFC 1928 §4): listen on the proxy's address facing the client, send the first reply with
 * that address and port, wait for one inbound connection, and hand it over as `ctx.outbound` with
 * `ctx.bound` naming the peer (the driver sends the second reply).
 *
 * A peer that `ctx.acceptBindPeer` refuses (by default: any IP but DST.ADDR, unless DST.ADDR is
 * 0.0.0.0 or ::) is closed and the wait goes on; the wait ends at `bindAccept` ms (REP 06).
 */
export async function setUpBind(ctx: ConnectionContext, sendFirstReply: (bound: Address) => void, acceptTimeout: number): Promise<void> {
  const listener: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true })
  const signal = ctx.signal
  try {
    listener.listen({ host: ctx.local.address, port: 0, exclusive: true })
    await once(listener, 'listening', { signal })
    const info = listener.address()
    if (info === null || typeof info === 'string') throw new SocksError('ERR_SOCKS_CONNECT_FAILED', 'BIND listener has no address')
    sendFirstReply(toAddress(unmapIPv4(info.address), info.port))
    const accept = ctx.acceptBindPeer ?? (await defaultBindPeerCheck(ctx))
    const socket = await acceptOne(listener, accept, acceptTimeout, signal)
    ctx.outbound = socket
    ctx.bound = toAddress(unmapIPv4(socket.remoteAddress ?? '0.0.0.0'), socket.remotePort ?? 0)
    ctx.dialed = ctx.bound
  } finally {
    listener.close()
  }
}

async function defaultBindPeerCheck(ctx: ConnectionContext): Promise<(peer: Address) => boolean> {
  const destination = ctx.destination
  if (destination.host === '0.0.0.0' || destination.host === '::' || destination.host === '') return acceptAnyone
  const allowed = new Set((await ctx.resolve()).map((a) => unmapIPv4(a.address)))
  return (peer) => allowed.has(peer.host)
}

function acceptAnyone(): boolean {
  return true
}

function acceptOne(listener: Server, accept: (peer: Address) => boolean | Promise<boolean>, timeout: number, signal: AbortSignal): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    let done = false
    const finish = (err: unknown, socket?: Socket): void => {
      if (done) {
        socket?.destroy()
        return
      }
      done = true
      clearTimeout(timer)
      listener.removeListener('connection', onConnection)
      signal.removeEventListener('abort', onAbort)
      if (socket !== undefined) resolve(socket)
      else reject(err)
    }
    const onConnection = (socket: Socket): void => {
      const peer = toAddress(unmapIPv4(socket.remoteAddress ?? '0.0.0.0'), socket.remotePort ?? 0)
      Promise.resolve(accept(peer)).then(
        (ok) => {
          if (ok && !socket.destroyed) finish(null, socket)
          else socket.destroy()
        },
        (err: unknown) => {
          socket.destroy()
          finish(err)
        },
      )
    }
    const onAbort = (): void => finish(signal.reason)
    const timer = setTimeout(() => finish(new SocksError('ERR_SOCKS_BIND_TIMEOUT', `no inbound connection within ${timeout} ms`)), timeout)
    listener.on('connection', onConnection)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
