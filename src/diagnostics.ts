import { channel } from 'node:diagnostics_channel'

/**
 * diagnostics_channel channels. Publishing is guarded by `hasSubscribers`, so nobody pays for
 * them until something subscribes.
 *
 * - `socksmith:connection:open`  `{ ctx }` a connection was accepted
 * - `socksmith:connection:reply` `{ ctx, reply }` a reply (success or failure) went on the wire
 * - `socksmith:connection:close` `{ ctx, error }` a connection ended (error null for a clean end)
 */
export const channels = {
  open: channel('socksmith:connection:open'),
  reply: channel('socksmith:connection:reply'),
  close: channel('socksmith:connection:close'),
} as const
