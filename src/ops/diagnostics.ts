import { channel } from 'node:diagnostics_channel'

/**
 * diagnostics_channel channels. Publishing is guarded by `hasSubscribers`, so nobody pays for
 * them until something subscribes. Channels are process-wide: `ctx.server` tells servers apart.
 *
 * - `socksmith:connection:open`  `{ ctx }` a connection was accepted
 * - `socksmith:connection:reply` `{ ctx, reply }` a reply (success or failure) went on the wire
 * - `socksmith:connection:close` `{ ctx, error }` a connection ended (error null for a clean end)
 * - `socksmith:upstream:failure` `{ ctx, upstream, error }` an upstream proxy (`upstream` is its
 *   label, passwords left out) was unavailable for a connection; published by routing plugins
 *   such as the bundled upstream plugin
 */
export const channels = {
  open: channel('socksmith:connection:open'),
  reply: channel('socksmith:connection:reply'),
  close: channel('socksmith:connection:close'),
  upstreamFailure: channel('socksmith:upstream:failure'),
} as const
