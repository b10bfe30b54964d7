import { isIP } from 'node:net'
import ipaddr from 'ipaddr.js'
import { SocksError } from '../core/errors.js'
import type { Address } from '../protocol/address.js'
import { toAsciiDomainName } from '../protocol/domain-name.js'

/**
 * What is actually dialled. Access rules, logs and the dialer must all see the address the system
 * will really connect to, so the core normalises destinations before anyone looks at them:
 *
 * - a domain name must be a real host name (see protocol/domain-name.ts): a name with NUL, control
 *   characters or whitespace is refused (REP 04) before anything resolves or forwards it, and an
 *   internationalised name becomes its A-label;
 * - the unspecified addresses are loopback in disguise: Linux (and most systems) connect
 *   `0.0.0.0` and `::` to the local host, so they are rewritten to `127.0.0.1` / `::1` and a rule
 *   that denies loopback denies them too. The rest of 0.0.0.0/8 ("this network", RFC 1122 §3.2.1.3,
 *   a source-only block) is not a destination and is refused (REP 04).
 */
export function vetDestination(address: Address): Address {
  if (address.type === 'domain') {
    const host = toAsciiDomainName(address.host)
    if (host === null) throw badName(address.host)
    return host === address.host ? address : { type: 'domain', host, port: address.port }
  }
  const host = dialableIp(address.host)
  if (host === address.host) return address
  return { type: isIP(host) === 6 ? 'ipv6' : 'ipv4', host, port: address.port }
}

/** A domain name as vetDestination accepts it (A-label form), or throws ERR_SOCKS_BAD_ADDRESS. */
export function vetDomainName(name: string): string {
  const host = toAsciiDomainName(name)
  if (host === null) throw badName(name)
  return host
}

/**
 * An IP as the system dials it: unspecified → loopback of its family; the rest of 0.0.0.0/8 (also
 * IPv4-mapped) refused; anything else unchanged. Cheap for ordinary addresses: one or two character
 * tests, ipaddr.js only for the rare IPv6 spellings that could hide `::`.
 */
export function dialableIp(host: string): string {
  const first = host.charCodeAt(0)
  if (first !== 48 /* 0 */ && first !== 58 /* : */) return host
  const family = isIP(host)
  if (family === 4) {
    if (host === '0.0.0.0') return '127.0.0.1'
    // Dotted-quad only (the codec and getaddrinfo answers never write 00.x): 0.x.y.z is this network.
    if (host.startsWith('0.')) throw unspecified(host)
    return host
  }
  if (family !== 6) return host
  let parsed: ipaddr.IPv6
  try {
    parsed = ipaddr.IPv6.parse(host)
  } catch {
    return host
  }
  if (parsed.isIPv4MappedAddress()) {
    const v4 = parsed.toIPv4Address()
    if (v4.octets[0] !== 0) return host
    if (v4.octets.every((o) => o === 0)) return '127.0.0.1'
    throw unspecified(host)
  }
  return parsed.range() === 'unspecified' ? '::1' : host
}

function badName(name: string): SocksError {
  return new SocksError('ERR_SOCKS_BAD_ADDRESS', `not a valid domain name: ${JSON.stringify(name)}`)
}

function unspecified(host: string): SocksError {
  return new SocksError('ERR_SOCKS_BAD_ADDRESS', `${host} is in 0.0.0.0/8 ("this network"), which is not a destination`)
}
