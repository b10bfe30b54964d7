import { BlockList, isIP } from 'node:net'
import { SocksError } from './errors.js'
import { describe, isPlainObject } from '../plugin-kit/option-values.js'

/**
 * Who may send a PROXY protocol header on a listener. The header names the client, and limits,
 * client rules and the auth throttle all believe that name: from anyone but the load balancer it
 * is a forged identity, so a PROXY-protocol listener serves its balancers and nobody else.
 */
export interface ProxyProtocolOptions {
  /** Addresses or CIDRs of the load balancers: `10.0.0.5`, `10.0.0.0/24`, `fd00::/8`. */
  readonly trusted: readonly string[]
}

/** What `proxyProtocol: true` trusts: a balancer on this host (haproxy, a sidecar), nobody else. */
export const LOOPBACK_SOURCES: readonly string[] = Object.freeze(['127.0.0.0/8', '::1'])

/**
 * Checks a `proxyProtocol` option and returns its full form: null when off (`false`, undefined),
 * else `{ trusted }` (`true` being loopback only). Each problem goes to `fail` with its path below
 * the option (`''` for the option itself, `trusted[1]`), so a config reports them all in one run.
 * Unknown keys are the caller's to report (the config validator hints at near misses).
 */
export function checkProxyProtocol(raw: unknown, fail: (path: string, message: string) => void): ProxyProtocolOptions | null {
  if (raw === undefined || raw === false) return null
  if (raw === true) return { trusted: LOOPBACK_SOURCES }
  if (!isPlainObject(raw)) {
    fail('', `expected true, false or { trusted: [CIDRs] }, found ${describe(raw)}`)
    return null
  }
  const list = raw.trusted
  if (list === undefined) fail('trusted', 'is required: the addresses or CIDRs of the load balancers')
  else if (!Array.isArray(list)) fail('trusted', `expected a list of IP addresses or CIDRs, found ${describe(list)}`)
  else if (list.length === 0) fail('trusted', 'must list at least one address or CIDR (true trusts loopback only)')
  else {
    const trusted: string[] = []
    list.forEach((entry: unknown, i) => {
      if (typeof entry !== 'string') fail(`trusted[${i}]`, `expected an IP address or CIDR, found ${describe(entry)}`)
      else if (parseSubnet(entry.trim()) === null) fail(`trusted[${i}]`, `${JSON.stringify(entry)} is not an IP address or CIDR (such as 10.0.0.5 or 10.0.0.0/24)`)
      else trusted.push(entry.trim())
    })
    return { trusted }
  }
  return null
}

/**
 * `listen()`'s `proxyProtocol` option, compiled once for the listener: null when the listener
 * takes no header, else the set of sources that may send one. Node's native BlockList serves as
 * an allow list here; it matches an IPv4 address against IPv4-mapped IPv6 ranges and back.
 * Throws ERR_SOCKS_INVALID_ARGUMENT naming the bad field.
 */
export function compileProxyProtocol(raw: unknown): BlockList | null {
  const options = checkProxyProtocol(raw, (path, message) => {
    throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `${path === '' ? 'proxyProtocol' : `proxyProtocol.${path}`}: ${message}`)
  })
  if (options === null) return null
  const trusted = new BlockList()
  for (const source of options.trusted) {
    const subnet = parseSubnet(source.trim()) as Subnet
    trusted.addSubnet(subnet.network, subnet.prefix, subnet.family)
  }
  return trusted
}

interface Subnet {
  network: string
  prefix: number
  family: 'ipv4' | 'ipv6'
}

/**
 * `a.b.c.d/n`, `x::y/n` or a bare address (all its bits). Standard spellings only (`127.1` is a
 * typo more often than an intent), and no zone index: a balancer is not named by interface.
 */
function parseSubnet(text: string): Subnet | null {
  const slash = text.indexOf('/')
  const network = slash === -1 ? text : text.slice(0, slash)
  const version = isIP(network)
  if (version === 0 || network.includes('%')) return null
  const bits = version === 4 ? 32 : 128
  const prefix = slash === -1 ? bits : /^\d{1,3}$/.test(text.slice(slash + 1)) ? Number(text.slice(slash + 1)) : NaN
  if (!(prefix <= bits)) return null
  return { network, prefix, family: version === 4 ? 'ipv4' : 'ipv6' }
}
