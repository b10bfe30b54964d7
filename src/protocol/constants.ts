/** SOCKS protocol version byte (RFC 1928 §3). */
export const SOCKS_VERSION = 0x05
/** Version byte of the username/password sub-negotiation (RFC 1929 §2). */
export const PASSWORD_AUTH_VERSION = 0x01

/** Authentication method codes (RFC 1928 §3). Any other byte is a valid, if unknown, method. */
export const Method = {
  NO_AUTH: 0x00,
  GSSAPI: 0x01,
  USERNAME_PASSWORD: 0x02,
  NO_ACCEPTABLE: 0xff,
} as const
export type Method = (typeof Method)[keyof typeof Method]

/** Request commands (RFC 1928 §4). */
export const Command = {
  CONNECT: 0x01,
  BIND: 0x02,
  UDP_ASSOCIATE: 0x03,
} as const
export type Command = (typeof Command)[keyof typeof Command]

/** Address types (RFC 1928 §5). */
export const AddressType = {
  IPV4: 0x01,
  DOMAIN: 0x03,
  IPV6: 0x04,
} as const
export type AddressType = (typeof AddressType)[keyof typeof AddressType]

/** Reply codes, the REP field (RFC 1928 §6). */
export const Reply = {
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05,
  TTL_EXPIRED: 0x06,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
} as const
export type Reply = (typeof Reply)[keyof typeof Reply]

/** Status byte of the username/password sub-negotiation reply (RFC 1929 §2): 0 is success, anything else failure. */
export const PasswordStatus = {
  SUCCESS: 0x00,
  FAILURE: 0x01,
} as const

/** Lower-case command names used in logs, rules and config files. */
export type CommandName = 'connect' | 'bind' | 'udp'

/** The lower-case name of a command byte, as logs, rules and config files write it. */
export function commandName(command: Command): CommandName {
  return command === Command.CONNECT ? 'connect' : command === Command.BIND ? 'bind' : 'udp'
}
