/**
 * The pure SOCKS5 (and SOCKS4/4a) codec: no sockets, no timers, no policy. Exported as `socksmith/protocol`.
 *
 * @packageDocumentation
 * @module socksmith/protocol
 */
export * from './constants.js'
export * from './address.js'
export * from './domain-name.js'
export * from './reader.js'
export * from './greeting.js'
export * from './password.js'
export * from './request.js'
export * from './datagram.js'
export * from './proxy-header.js'
export * from './socks4.js'
