/**
 * How socksmith reaches the network: the system resolver, the direct dialer, and what one client
 * is for per-client counts. Exported as `socksmith/net`, for plugins that resolve or dial themselves.
 *
 * @packageDocumentation
 * @module socksmith/net
 */
export { systemResolver } from './resolver.js'
export type { Resolver, ResolvedAddress, ResolveOptions, LookupOrigin } from './resolver.js'
export { directDialer, dialTcp } from './dialer.js'
export type { Binder, Dialer, DialOptions } from './dialer.js'
export { clientGroup, DEFAULT_CLIENT_PREFIX } from '../core/client-group.js'
export type { ClientPrefix } from '../core/client-group.js'
export { isLoopback } from '../core/server.js'
