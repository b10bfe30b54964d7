/**
 * A SOCKS5 client on the socksmith codec. Exported as `socksmith/client`.
 *
 * @packageDocumentation
 * @module socksmith/client
 */
export { socksConnect, socksBind } from './connect.js'
export type { Destination, ConnectOptions, ConnectResult, BindResult } from './connect.js'
export { socksAssociate, socksAssociateHop, ClientUdpAssociation } from './udp.js'
export type { AssociateOptions, AssociateHopOptions, UdpRelayHop, UdpAssociationEvents } from './udp.js'
export { DEFAULT_HANDSHAKE_TIMEOUT } from './handshake.js'
export type { ProxyOptions } from './handshake.js'
export type { Address } from '../protocol/address.js'
export { SocksError, isSocksError } from '../core/errors.js'
export type { SocksErrorCode, SocksErrorOptions } from '../core/errors.js'
export { Reply } from '../protocol/constants.js'
