/**
 * What a benchmark run measures: the tests `--tests` may name, and which variants (freshly started
 * processes) of a server those tests need. Pure, so that test/bench/plan.test.ts can check it; the
 * orchestrator (run.ts) runs the plan.
 */

/** Every test `--tests` takes, in the order the README lists them. */
export const TESTS = ['hold', 'down', 'up', 'multi', 'connect', 'latency', 'udp', 'auth', 'full', 'limits', 'http-connect', 'http-auth', 'http-stream', 'http-forward', 'mixed'] as const
export type Test = (typeof TESTS)[number]

/** The tests of the *open* variant (SOCKS5, no authentication). */
const OPEN_TESTS: readonly Test[] = ['hold', 'down', 'up', 'multi', 'connect', 'latency', 'udp']
/** The tests of the *http* variant (an HTTP proxy listener, no authentication). */
const HTTP_TESTS: readonly Test[] = ['http-connect', 'http-stream', 'http-forward']

/**
 * open: SOCKS5, no authentication. auth: RFC 1929, one user. full: auth + 20 rules + dns-cache
 * (socksmith only). limits: auth + the limits plugin with every kind of limit set too high to bite,
 * and a second user shaped (socksmith only). http: an HTTP proxy listener without authentication
 * (socksmith: a `mixed` listener, so it also carries the SOCKS5-on-mixed row). http-auth: the same
 * with `Proxy-Authorization: Basic` for one user.
 */
export type Variant = 'open' | 'auth' | 'full' | 'limits' | 'http' | 'http-auth'

/** What the plan needs to know of a server. */
export interface PlanSpec {
  /** Serves SOCKS5: the open, auth, full and limits variants are for it. */
  readonly socks: boolean
  /** Serves HTTP proxy clients: the http variants are for it. */
  readonly http: boolean
  /** socksmith's CLI: its http variant is a `mixed` listener, measured with SOCKS5 clients too (`mixed`). */
  readonly mixed: boolean
  /** Has the auth + 20 rules + dns-cache and limits variants. */
  readonly full: boolean
  /** null when the server has authentication here; otherwise why its auth rows are empty. */
  readonly noAuth: string | null
}

/** `--tests a,b` as a set; an unknown name fails, naming the tests there are. */
export function parseTests(arg: string | undefined): Set<Test> {
  if (arg === undefined) return new Set(TESTS)
  const tests = new Set<Test>()
  for (const name of arg.split(',').map((s) => s.trim())) {
    if (!(TESTS as readonly string[]).includes(name)) throw new Error(`--tests: unknown test "${name}"; tests are ${TESTS.join(', ')}`)
    tests.add(name as Test)
  }
  return tests
}

/**
 * The variants of a server this run measures, in order. The SOCKS5-on-mixed row (`mixed`) is read
 * against the same server's socks5-only listener, so it needs the open variant too (whose IP
 * connection row it then measures even without `connect`).
 */
export function variantsOf(spec: PlanSpec, tests: ReadonlySet<Test>): Variant[] {
  const mixed = spec.mixed && tests.has('mixed')
  const variants: Variant[] = []
  if (spec.socks && (OPEN_TESTS.some((test) => tests.has(test)) || mixed)) variants.push('open')
  if (spec.socks && tests.has('auth') && spec.noAuth === null) variants.push('auth')
  if (spec.socks && tests.has('full') && spec.full) variants.push('full')
  if (spec.socks && tests.has('limits') && spec.full) variants.push('limits')
  if (spec.http && (HTTP_TESTS.some((test) => tests.has(test)) || mixed)) variants.push('http')
  if (spec.http && tests.has('http-auth') && spec.noAuth === null) variants.push('http-auth')
  return variants
}

/** Whether the open variant measures its IP connection row: for `connect`, and as the base of `mixed`. */
export function measuresOpenConnections(spec: PlanSpec, tests: ReadonlySet<Test>): boolean {
  return tests.has('connect') || (spec.mixed && tests.has('mixed'))
}
