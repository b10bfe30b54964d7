import { lookup } from 'node:dns/promises'
import { LookupScheduler, threadPoolSize, type LookupOrigin } from './lookup-scheduler.js'

export type { LookupOrigin } from './lookup-scheduler.js'

/** One address a name resolved to. */
export interface ResolvedAddress {
  readonly address: string
  readonly family: 4 | 6
  /** Seconds the answer may be cached, when the resolver knows it (the system resolver does not). */
  readonly ttl?: number
}

/**
 * What a resolver is told about a lookup: a signal that ends the wait (the client left, the
 * deadline passed), and who asks (resolvers that share a scarce resource, like the system
 * resolver's threads, share it out by client; a wrapping resolver passes it on).
 */
export interface ResolveOptions extends LookupOrigin {
  readonly signal?: AbortSignal
}

/**
 * Turns a domain name into addresses. The server uses one resolver for CONNECT, BIND and UDP;
 * plugins (dns-cache) or tests (mapping test names to loopback) replace it with `setResolver`.
 */
export interface Resolver {
  /** Every address `hostname` resolves to; rejects with the system's code (ENOTFOUND, ...) when none. */
  resolve(hostname: string, options?: ResolveOptions): Promise<ResolvedAddress[]>
}

let scheduler: LookupScheduler | null = null

function toResolved(answers: readonly { address: string; family: number }[]): ResolvedAddress[] {
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }))
}

/**
 * The operating system's resolver (getaddrinfo through dns.lookup), so the hosts file and
 * nsswitch are honoured like any other program on the machine. All answers, in the system's order.
 * Lookups share libuv's thread pool fairly between clients, and datagram lookups never take all of
 * it (lookup-scheduler.ts); the CLI runs with a larger pool (UV_THREADPOOL_SIZE).
 */
export const systemResolver: Resolver = {
  resolve(hostname, options) {
    // Created on first use, when UV_THREADPOOL_SIZE is what the process runs with.
    scheduler ??= new LookupScheduler(threadPoolSize())
    // The signal is read only if the lookup has to wait for a thread (options.signal may be a getter that makes it).
    return scheduler.schedule(() => lookup(hostname, { all: true, verbatim: true }), options, () => options?.signal).then(toResolved)
  },
}
