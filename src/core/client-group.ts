import { isIP } from 'node:net'
import ipaddr from 'ipaddr.js'
import { SocksError } from './errors.js'
import { unmapIPv4 } from '../protocol/address.js'

/**
 * How many leading bits of a client address make one client, for every per-client count: the
 * connection limit, the UDP association limit and the `auth` plugin's login throttle. One
 * subscriber usually holds a whole IPv6 /64, so counting exact IPv6 addresses would let anyone
 * walk around a limit by rotating through their own block.
 */
export interface ClientPrefix {
  /** Bits of an IPv4 address, 0 to 32. Default 32 (each address is a client). */
  readonly ipv4: number
  /** Bits of an IPv6 address, 0 to 128. Default 64. */
  readonly ipv6: number
}

/** What one client is by default: each IPv4 address, each IPv6 /64. */
export const DEFAULT_CLIENT_PREFIX: Readonly<ClientPrefix> = Object.freeze({ ipv4: 32, ipv6: 64 })

/**
 * The key one client's counts are kept under: the address itself when the prefix is the whole
 * address (`192.0.2.7`), else the masked network and its length (`192.0.2.0/24`,
 * `2001:db8:0:0::/64`). IPv4-mapped IPv6 (`::ffff:192.0.2.7`) counts as IPv4; a zone index is
 * dropped; anything that is not an IP address is returned unchanged.
 *
 * @example
 * clientGroup('2001:db8:1:2::99', { ipv4: 32, ipv6: 64 }) // '2001:db8:1:2::/64'
 */
export function clientGroup(address: string, prefix: Readonly<ClientPrefix> = DEFAULT_CLIENT_PREFIX): string {
  const host = unmapIPv4(address)
  const family = isIP(host)
  if (family === 4) return prefix.ipv4 >= 32 ? host : ipv4Group(host, prefix.ipv4)
  if (family !== 6) return host
  let parts: number[]
  try {
    parts = ipaddr.IPv6.parse(host).parts
  } catch {
    return host
  }
  const bits = prefix.ipv6
  // Whole groups are kept, the group the prefix ends in is masked, the rest are left out ("::").
  const groups: string[] = []
  for (let i = 0; i * 16 < bits; i++) {
    const keep = Math.min(16, bits - i * 16)
    groups.push((parts[i]! & (0xffff << (16 - keep)) & 0xffff).toString(16))
  }
  return bits >= 128 ? groups.join(':') : `${groups.join(':')}::/${bits}`
}

function ipv4Group(host: string, bits: number): string {
  const value = host.split('.').reduce((n, octet) => n * 256 + Number(octet), 0)
  // 2 ** (32 - bits) blocks: arithmetic, not `<<`, which would wrap at 32 bits for a /0.
  const network = value - (value % 2 ** (32 - bits))
  return `${[24, 16, 8, 0].map((shift) => Math.floor(network / 2 ** shift) % 256).join('.')}/${bits}`
}

/**
 * Checks and completes a `clientPrefix` option; throws ERR_SOCKS_INVALID_ARGUMENT naming `field`.
 * A family left out gets its default.
 */
export function toClientPrefix(value: Partial<ClientPrefix> | undefined, field = 'clientPrefix'): Readonly<ClientPrefix> {
  if (value === undefined) return DEFAULT_CLIENT_PREFIX
  const problem = checkClientPrefix(value)
  if (problem !== null) throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `${field}${problem.at === '' ? '' : `.${problem.at}`}: ${problem.message}`)
  return Object.freeze({ ipv4: value.ipv4 ?? DEFAULT_CLIENT_PREFIX.ipv4, ipv6: value.ipv6 ?? DEFAULT_CLIENT_PREFIX.ipv6 })
}

/** What is wrong with a `clientPrefix` value (`at`: '' or the family's key), or null. */
export function checkClientPrefix(value: unknown): { at: string; message: string } | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { at: '', message: 'expected { ipv4?, ipv6? } (prefix lengths)' }
  for (const key of Object.keys(value)) {
    if (key !== 'ipv4' && key !== 'ipv6') return { at: key, message: 'unknown key (known: ipv4, ipv6)' }
  }
  for (const [family, max] of [['ipv4', 32], ['ipv6', 128]] as const) {
    const bits = (value as Record<string, unknown>)[family]
    if (bits !== undefined && (typeof bits !== 'number' || !Number.isInteger(bits) || bits < 0 || bits > max)) {
      return { at: family, message: `must be a prefix length from 0 to ${max}, found ${typeof bits === 'number' ? bits : typeof bits}` }
    }
  }
  return null
}
