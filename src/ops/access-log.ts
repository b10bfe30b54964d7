import type { ConnectionContext } from '../core/context.js'
import { isSocksError } from '../core/errors.js'
import { isLogLevelEnabled } from './logger.js'
import { formatAddress } from '../protocol/address.js'

/**
 * The access-log line of a connection that ended: `info`, message `access`. Listens to the
 * server's `disconnect` event, so nothing runs per connection while the access log is off, and
 * nothing is built while `info` is off.
 */
export function logAccess(ctx: ConnectionContext): void {
  if (!isLogLevelEnabled(ctx.log, 'info') || onlyForwarded(ctx)) return
  ctx.log.info('access', accessFields(ctx))
}

/**
 * What the access log says about a connection: who, what was asked, where it went, how it ended,
 * how much went each way and how long it took. Credentials never appear, only the user name.
 * `command` and `destination` are null when the client never got as far as its request.
 */
export function accessFields(ctx: ConnectionContext): Record<string, unknown> {
  const requested = ctx.handshakeMs !== null
  // Before the success reply the socket counts are handshake bytes, not payload.
  const relayed = ctx.replied
  const fields: Record<string, unknown> = {
    id: ctx.id,
    client: formatAddress({ host: ctx.client.address, port: ctx.client.port }),
    user: ctx.user,
    protocol: ctx.protocol,
    command: requested ? ctx.commandName : null,
    destination: requested ? formatAddress(ctx.destination) : null,
    dialed: ctx.dialed === null ? null : formatAddress(ctx.dialed),
    via: ctx.via,
    reply: ctx.reply,
    bytesFromClient: relayed ? ctx.bytesFromClient : 0,
    bytesToClient: relayed ? ctx.bytesToClient : 0,
    durationMs: Date.now() - ctx.startedAt,
    error: errorCode(ctx.error),
    reason: ctx.closeReason,
  }
  // A forwarded HTTP request: its method (the URL's host and port are the destination; its path
  // and query, which may carry secrets, are not logged).
  if (ctx.exchange !== null) fields.method = ctx.exchange.request.method ?? null
  return fields
}

/**
 * An HTTP client's connection that only carried forwarded requests, each reported as a
 * connection of its own: its own end (the client left, or sent nothing more) is not one more.
 */
export function onlyForwarded(ctx: ConnectionContext): boolean {
  if (ctx.forwardedRequests === 0 || ctx.handshakeMs !== null) return false
  const error = ctx.error
  return error === null || (isSocksError(error) && (error.code === 'ERR_SOCKS_CLIENT_CLOSED' || error.code === 'ERR_SOCKS_IDLE_TIMEOUT'))
}

/** A stable name for what ended a connection: the SocksError or errno code, never message text. */
export function errorCode(err: unknown): string | null {
  if (err === null || err === undefined) return null
  if (isSocksError(err)) return err.code
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string') return code
  return err instanceof Error ? err.name : 'unknown'
}
