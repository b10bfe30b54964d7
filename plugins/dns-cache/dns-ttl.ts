import { Resolver } from 'node:dns/promises'

/** TTLs in seconds by address, as DNS gives them for a name; empty when DNS has no answer or fails. */
export type DnsTtlProbe = (hostname: string) => Promise<ReadonlyMap<string, number>>

/** How `createDnsTtlProbe()` asks DNS for TTLs (the plugin's `useDnsTtl`). */
export interface DnsTtlProbeOptions {
  /** DNS servers (`'127.0.0.1:5353'`, `'[::1]:53'`); default: the system's (resolv.conf). */
  servers?: string[]
  /** Milliseconds per try. Default 2000. */
  timeout?: number
  /** Default 2. */
  tries?: number
}

/**
 * Asks DNS for A and AAAA records with their TTLs (c-ares, not getaddrinfo: the system resolver
 * throws TTLs away). Never rejects: a failed probe only means "no TTL known".
 */
export function createDnsTtlProbe(options: DnsTtlProbeOptions = {}): DnsTtlProbe {
  // Created on first use: the constructor reads resolv.conf, which a server that never misses need not do.
  let resolver: Resolver | null = null
  return async function probeDnsTtl(hostname) {
    if (resolver === null) {
      resolver = new Resolver({ timeout: options.timeout ?? 2000, tries: options.tries ?? 2 })
      if (options.servers !== undefined) resolver.setServers(options.servers)
    }
    const answers = await Promise.allSettled([resolver.resolve4(hostname, { ttl: true }), resolver.resolve6(hostname, { ttl: true })])
    const ttls = new Map<string, number>()
    for (const answer of answers) {
      if (answer.status === 'fulfilled') for (const record of answer.value) ttls.set(record.address, record.ttl)
    }
    return ttls
  }
}

/**
 * False for names that must not go to unicast DNS just to learn a TTL: single labels (search
 * domains and the hosts file decide those), `localhost` (RFC 6761 §6.3), `.local` (mDNS, RFC 6762),
 * `.invalid` (RFC 6761 §6.4) and `.onion` (RFC 7686). Their answers get the default TTL.
 */
export function isWorthADnsProbe(name: string): boolean {
  if (!name.includes('.')) return false
  return !(name === 'localhost' || name.endsWith('.localhost') || name.endsWith('.local') || name.endsWith('.invalid') || name.endsWith('.onion'))
}
