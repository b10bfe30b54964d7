import { lookup } from 'node:dns/promises'

/** One address a name resolved to. */
export interface ResolvedAddress {
  readonly address: string
  readonly family: 4 | 6
  /** Seconds the answer may be cached, when the resolver knows it (the system resolver does not). */
  readonly ttl?: number
}

/**
 * Turns a domain name into addresses. The server uses one resolver for CONNECT, BIND and UDP;
 * plugins (dns-cache) or tests (mapping test names to loopback) replace it with `setResolver`.
 */
export interface Resolver {
  resolve(hostname: string, options?: { signal?: AbortSignal }): Promise<ResolvedAddress[]>
}

/**
 * The operating system's resolver (getaddrinfo through dns.lookup), so the hosts file and
 * nsswitch are honoured like any other program on the machine. All answers, in the system's order.
 */
export const systemResolver: Resolver = {
  async resolve(hostname) {
    const answers = await lookup(hostname, { all: true, verbatim: true })
    return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }))
  },
}
