/**
 * The bundled `dns-cache` plugin: a bounded, TTL-aware cache in front of the server's resolver, one
 * query per name. Exported as `socksmith/plugins/dns-cache`; written against the public API only.
 *
 * @packageDocumentation
 * @module socksmith/plugins/dns-cache
 */
import { definePlugin, type ServerHandle } from 'socksmith'
import { DnsCache } from './cache.js'
import { parseDnsCacheOptions, type DnsCacheOptions, type ResolvedDnsCacheOptions } from './options.js'

export { DnsCache, cacheKey } from './cache.js'
export type { DnsCacheStats, DnsCacheConstructorOptions } from './cache.js'
export { DEFAULT_DNS_CACHE_OPTIONS } from './options.js'
export type { DnsCacheOptions, ResolvedDnsCacheOptions } from './options.js'
export { createDnsTtlProbe, isWorthADnsProbe } from './dns-ttl.js'
export type { DnsTtlProbe, DnsTtlProbeOptions } from './dns-ttl.js'

const caches = new WeakMap<ServerHandle, DnsCache>()

/**
 * The cache the dns-cache plugin installed on `server` (for its counters or to clear it), or
 * undefined if the plugin is not registered or the server has not started (setup runs at listen()).
 *
 * @example
 * const { hits, misses, coalesced, size } = getDnsCache(server)!.stats()
 */
export function getDnsCache(server: ServerHandle): DnsCache | undefined {
  return caches.get(server)
}

/**
 * Caches the server's resolver: wraps whatever resolver is installed when setup runs (the system
 * resolver, or the one given to `createServer({ resolver })` or set by an earlier plugin).
 *
 * @example
 * server.register(dnsCache, { max: 5000, minTtl: 10, maxTtl: 600, negativeTtl: 5 })
 */
const dnsCache = definePlugin<ResolvedDnsCacheOptions, DnsCacheOptions>({
  name: 'dns-cache',
  parseOptions: parseDnsCacheOptions,
  setup(host, options) {
    const cache = new DnsCache(host.resolver, options)
    host.setResolver(cache)
    caches.set(host.server, cache)
    // The cache counts for itself; the metrics read it at scrape time (and add what a cache this
    // one replaced at a reload had counted).
    host.registerMetrics(
      { name: 'socksmith_dns_cache_hits_total', help: 'Lookups the dns-cache plugin answered from its cache.', type: 'counter', collect: () => cache.hits },
      { name: 'socksmith_dns_cache_misses_total', help: 'Lookups the dns-cache plugin passed to the resolver.', type: 'counter', collect: () => cache.misses },
    )
    host.log.debug('dns-cache installed', { max: options.max, minTtl: options.minTtl, maxTtl: options.maxTtl, negativeTtl: options.negativeTtl, useDnsTtl: options.useDnsTtl })
  },
})

export default dnsCache
