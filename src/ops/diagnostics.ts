import { channel } from 'node:diagnostics_channel'
import type { BaseContext } from '../core/context.js'

/** `socksmith:connection:open`: a connection was accepted. */
export interface ConnectionOpenMessage {
  readonly ctx: BaseContext
}

/** `socksmith:connection:reply`: a reply (success or failure) went on the wire. */
export interface ConnectionReplyMessage {
  readonly ctx: BaseContext
  /** The REP byte. */
  readonly reply: number
}

/** `socksmith:connection:close`: a connection ended. */
export interface ConnectionCloseMessage {
  readonly ctx: BaseContext
  /** What ended it; null for a clean end. */
  readonly error: unknown
}

/** `socksmith:upstream:failure`: an upstream proxy was unavailable for a connection. */
export interface UpstreamFailureMessage {
  readonly ctx: BaseContext
  /** The upstream's label, passwords left out. */
  readonly upstream: string
  readonly error: unknown
}

/** A diagnostics channel whose messages have one type (node:diagnostics_channel's Channel, typed). */
export interface TypedChannel<M> {
  readonly name: string | symbol
  readonly hasSubscribers: boolean
  /** Sends `message` to every subscriber (socksmith checks `hasSubscribers` first). */
  publish(message: M): void
  /** Calls `onMessage` with every message published on the channel, in any server of the process. */
  subscribe(onMessage: (message: M, name: string | symbol) => void): void
  /** Stops calling `onMessage`. */
  unsubscribe(onMessage: (message: M, name: string | symbol) => void): void
}

/**
 * diagnostics_channel channels. Publishing is guarded by `hasSubscribers`, so nobody pays for
 * them until something subscribes. Channels are process-wide: `ctx.server` tells servers apart.
 * `upstreamFailure` is published by routing plugins such as the bundled upstream plugin.
 *
 * @example
 * channels.reply.subscribe(({ ctx, reply }) => console.log(ctx.id, reply))
 */
export const channels: {
  readonly open: TypedChannel<ConnectionOpenMessage>
  readonly reply: TypedChannel<ConnectionReplyMessage>
  readonly close: TypedChannel<ConnectionCloseMessage>
  readonly upstreamFailure: TypedChannel<UpstreamFailureMessage>
} = {
  open: channel('socksmith:connection:open') as TypedChannel<ConnectionOpenMessage>,
  reply: channel('socksmith:connection:reply') as TypedChannel<ConnectionReplyMessage>,
  close: channel('socksmith:connection:close') as TypedChannel<ConnectionCloseMessage>,
  upstreamFailure: channel('socksmith:upstream:failure') as TypedChannel<UpstreamFailureMessage>,
}
