import { isIP } from 'node:net'
import { domainToASCII } from 'node:url'
import ipaddr from 'ipaddr.js'
import type { CommandName, OptionPath } from 'socksmith'
import { checkKeys, describe, didYouMean, isPlainObject } from 'socksmith/plugin-kit'
import { isPresetName, PRESET_NAMES, PRESETS } from './presets.js'

/** A parsed IP address; IPv4-mapped IPv6 is always turned into IPv4 first. */
export type IpAddress = ipaddr.IPv4 | ipaddr.IPv6

/**
 * What a matcher looks at. A fact left `undefined` is not known yet (a matcher that needs it cannot
 * say yes); `null` means known to be absent: `name: null` when the destination was an IP address,
 * `user: null` for a client that did not authenticate, `address: null` for an answer that is not an IP.
 */
export interface MatchFacts {
  /** The client's IP. */
  client?: string
  /** The destination IP (the address that is dialled or sent to). */
  address?: string | null
  /** The destination name as the client asked for it (any case, trailing dot allowed). */
  name?: string | null
  /** The destination port. */
  port?: number
  /** The authenticated user. */
  user?: string | null
  command?: CommandName
}

/**
 * MatchFacts with addresses parsed and the name normalised, built once per connection phase or
 * datagram so that a rule list costs no parsing. Every field is always present (one object shape).
 */
export interface ParsedFacts {
  client: IpAddress | null | undefined
  address: IpAddress | null | undefined
  name: string | null | undefined
  port: number | undefined
  user: string | null | undefined
  command: CommandName | undefined
}

/** The conditions a rule (or an upstream route) can have; every one present must hold. */
export const MATCH_FIELDS = ['from', 'to', 'domains', 'ports', 'users', 'commands'] as const
/**
 * The name of one condition of a rule or route: `from`, `to`, `domains`, `ports`, `users` or `commands`.
 */
export type MatchField = (typeof MATCH_FIELDS)[number]

/**
 * A compiled set of conditions. Called with plain facts it answers yes or no (a fact it needs but
 * does not get counts as no). `evaluate` is the three-valued form the rules plugin uses to decide
 * as early as possible: `true`/`false` when the known facts settle it, `undefined` when a fact it
 * needs is still unknown.
 */
export interface Matcher {
  (facts: MatchFacts): boolean
  /** The three-valued form: `undefined` while a fact the conditions need is still unknown. */
  evaluate(facts: ParsedFacts): boolean | undefined
  /** The conditions present, in MATCH_FIELDS order; empty for a matcher that matches everything. */
  readonly fields: readonly MatchField[]
}

/** The values a `commands` condition accepts. */
export const COMMAND_NAMES: readonly CommandName[] = ['connect', 'bind', 'udp']

interface IpSet {
  readonly v4: readonly [ipaddr.IPv4, number][]
  readonly v6: readonly [ipaddr.IPv6, number][]
}

interface NameSet {
  readonly any: boolean
  readonly exact: ReadonlySet<string>
  /** `.example.com` for the glob `*.example.com`. */
  readonly suffixes: readonly string[]
}

interface Conditions {
  readonly from: IpSet | null
  readonly to: IpSet | null
  readonly domains: NameSet | null
  readonly ports: readonly (readonly [number, number])[] | null
  readonly users: { readonly any: boolean; readonly names: ReadonlySet<string> } | null
  readonly commands: ReadonlySet<CommandName> | null
}

/**
 * Validates and compiles the matching part of a rule-like object (`from`, `to`, `domains`, `ports`,
 * `users`, `commands`; a single value is accepted wherever a list is). CIDRs and presets are parsed
 * here, once. Keys in `extraKeys` are left to the caller; any other key fails with a "did you mean"
 * hint. Failures go through `at.fail` with the field path under `field` (e.g. `rules[2].to[1]`).
 *
 * @example
 * const match = compileMatcher({ to: 'private', ports: '8000-8999' }, at, 'routes[0].match')
 * match({ address: '10.1.2.3', port: 8080 }) // true
 * match({ name: 'example.com', port: 8080 }) // false: the address is not known
 */
export function compileMatcher(raw: unknown, at: OptionPath, field: string, extraKeys: readonly string[] = []): Matcher {
  if (!isPlainObject(raw)) at.fail(field, `expected an object with any of ${MATCH_FIELDS.join(', ')}, found ${describe(raw)}`)
  checkKeys(raw, [...MATCH_FIELDS, ...extraKeys], at, { path: field })
  const path = (key: string): string => (field === '' ? key : `${field}.${key}`)
  const conditions: Conditions = {
    from: raw.from === undefined ? null : parseIpSet(raw.from, at, path('from')),
    to: raw.to === undefined ? null : parseIpSet(raw.to, at, path('to')),
    domains: raw.domains === undefined ? null : parseNameSet(raw.domains, at, path('domains')),
    ports: raw.ports === undefined ? null : parsePorts(raw.ports, at, path('ports')),
    users: raw.users === undefined ? null : parseUsers(raw.users, at, path('users')),
    commands: raw.commands === undefined ? null : parseCommands(raw.commands, at, path('commands')),
  }
  const fields = MATCH_FIELDS.filter((key) => conditions[key] !== null)
  const evaluate = (facts: ParsedFacts): boolean | undefined => evaluateConditions(conditions, facts)
  const matcher = (facts: MatchFacts): boolean => evaluateConditions(conditions, parseFacts(facts)) === true
  return Object.assign(matcher, { evaluate, fields })
}

/** Facts with every field unknown, to be filled in by a phase. */
export function unknownFacts(): ParsedFacts {
  return { client: undefined, address: undefined, name: undefined, port: undefined, user: undefined, command: undefined }
}

/** Parses plain facts (for callers outside the rules plugin, such as the upstream plugin's routes). */
export function parseFacts(facts: MatchFacts): ParsedFacts {
  return {
    client: facts.client === undefined ? undefined : parseIp(facts.client),
    address: facts.address === undefined ? undefined : facts.address === null ? null : parseIp(facts.address),
    name: facts.name === undefined ? undefined : facts.name === null ? null : normalizeName(facts.name),
    port: facts.port,
    user: facts.user,
    command: facts.command,
  }
}

/**
 * An IP address as a matcher sees it, or null for anything that is not an IP literal in its standard
 * form. IPv4-mapped IPv6 (`::ffff:127.0.0.1`) becomes IPv4, so an IPv4 rule applies to it.
 * Numeric spellings such as "2130706433" are not IP literals here: they are names, and a name is
 * judged by the addresses it resolves to.
 */
export function parseIp(host: string): IpAddress | null {
  if (isIP(host) === 0) return null
  try {
    return ipaddr.process(host)
  } catch {
    return null
  }
}

/** Lower case, no trailing dots, IDNA (punycode) for non-ASCII names: how names and patterns are compared. */
export function normalizeName(host: string): string {
  let name = host.toLowerCase()
  let end = name.length
  while (end > 0 && name.charCodeAt(end - 1) === 46 /* . */) end--
  if (end !== name.length) name = name.slice(0, end)
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(name)) {
    const ascii = domainToASCII(name)
    if (ascii !== '') name = ascii
  }
  return name
}

function evaluateConditions(c: Conditions, f: ParsedFacts): boolean | undefined {
  let unknown = false
  if (c.commands !== null) {
    if (f.command === undefined) unknown = true
    else if (!c.commands.has(f.command)) return false
  }
  if (c.from !== null) {
    if (f.client === undefined) unknown = true
    else if (f.client === null || !ipSetHas(c.from, f.client)) return false
  }
  if (c.users !== null) {
    if (f.user === undefined) unknown = true
    else if (f.user === null || !(c.users.any || c.users.names.has(f.user))) return false
  }
  if (c.ports !== null) {
    if (f.port === undefined) unknown = true
    else if (!portsHave(c.ports, f.port)) return false
  }
  if (c.domains !== null) {
    if (f.name === undefined) unknown = true
    else if (f.name === null || !nameSetHas(c.domains, f.name)) return false
  }
  if (c.to !== null) {
    if (f.address === undefined) unknown = true
    else if (f.address === null || !ipSetHas(c.to, f.address)) return false
  }
  return unknown ? undefined : true
}

function ipSetHas(set: IpSet, ip: IpAddress): boolean {
  if (ip.kind() === 'ipv4') {
    for (const range of set.v4) if ((ip as ipaddr.IPv4).match(range)) return true
  } else {
    for (const range of set.v6) if ((ip as ipaddr.IPv6).match(range)) return true
  }
  return false
}

function portsHave(ranges: readonly (readonly [number, number])[], port: number): boolean {
  for (const [low, high] of ranges) if (port >= low && port <= high) return true
  return false
}

function nameSetHas(set: NameSet, name: string): boolean {
  if (set.any || set.exact.has(name)) return true
  for (const suffix of set.suffixes) if (name.length > suffix.length && name.endsWith(suffix)) return true
  return false
}

// ---- option parsing ----

/** A list option: one value or a non-empty array of them; returns [value, field path] pairs. */
function listOf(raw: unknown, at: OptionPath, field: string): [unknown, string][] {
  if (!Array.isArray(raw)) return [[raw, field]]
  if (raw.length === 0) at.fail(field, 'must not be an empty list (leave it out to match anything)')
  return raw.map((value, i) => [value, `${field}[${i}]`])
}

function parseIpSet(raw: unknown, at: OptionPath, field: string): IpSet {
  const v4: [ipaddr.IPv4, number][] = []
  const v6: [ipaddr.IPv6, number][] = []
  for (const [value, path] of listOf(raw, at, field)) {
    if (typeof value !== 'string') at.fail(path, `expected a CIDR or a preset (${PRESET_NAMES.join(', ')}), found ${describe(value)}`)
    const text = value.trim()
    const cidrs: readonly string[] = isPresetName(text) ? PRESETS[text] : [text]
    for (const cidr of cidrs) {
      const range = parseCidr(cidr)
      if (range === null) at.fail(path, `${JSON.stringify(value)} is not a valid CIDR or preset${hint(text, PRESET_NAMES) || ` (presets: ${PRESET_NAMES.join(', ')})`}`)
      if (range[0].kind() === 'ipv4') v4.push(range as [ipaddr.IPv4, number])
      else v6.push(range as [ipaddr.IPv6, number])
    }
  }
  return { v4, v6 }
}

/**
 * `a.b.c.d/n`, `x::y/n` or a bare address (a /32 or /128). Only standard spellings: "127.1" or
 * "0x7f.0.0.1" in a rule is far more likely a mistake than an intent. An IPv4-mapped IPv6 range
 * (`::ffff:10.0.0.0/104`) becomes the IPv4 range, because mapped addresses are matched as IPv4.
 */
function parseCidr(text: string): [IpAddress, number] | null {
  const slash = text.indexOf('/')
  const host = slash === -1 ? text : text.slice(0, slash)
  const family = isIP(host)
  if (family === 0 || host.includes('%')) return null
  const max = family === 4 ? 32 : 128
  let bits = max
  if (slash !== -1) {
    const prefix = text.slice(slash + 1)
    if (!/^\d{1,3}$/.test(prefix)) return null
    bits = Number(prefix)
    if (bits > max) return null
  }
  const address = ipaddr.parse(host)
  if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
    return [(address as ipaddr.IPv6).toIPv4Address(), bits - 96]
  }
  return [address, bits]
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/

function parseNameSet(raw: unknown, at: OptionPath, field: string): NameSet {
  let any = false
  const exact = new Set<string>()
  const suffixes: string[] = []
  for (const [value, path] of listOf(raw, at, field)) {
    if (typeof value !== 'string') at.fail(path, `expected a domain name or a "*.example.com" glob, found ${describe(value)}`)
    const pattern = normalizeName(value.trim())
    if (pattern === '*') {
      any = true
      continue
    }
    const wildcard = pattern.startsWith('*.')
    const name = wildcard ? pattern.slice(2) : pattern
    if (name.includes('*')) at.fail(path, `${JSON.stringify(value)}: only a leading "*." wildcard is supported`)
    const labels = name.split('.')
    if (isIP(name) !== 0 || /^\d+$/.test(labels[labels.length - 1]!) || name.includes(':')) {
      at.fail(path, `${JSON.stringify(value)} looks like an IP address; domains match names, use "to" for addresses`)
    }
    if (name.length === 0 || name.length > 253 || !labels.every((label) => LABEL.test(label))) {
      at.fail(path, `${JSON.stringify(value)} is not a valid domain name or "*.example.com" glob`)
    }
    if (wildcard) suffixes.push(`.${name}`)
    else exact.add(name)
  }
  return { any, exact, suffixes }
}

function parsePorts(raw: unknown, at: OptionPath, field: string): [number, number][] {
  const ranges: [number, number][] = []
  for (const [value, path] of listOf(raw, at, field)) {
    const range = parsePortRange(value)
    if (range === null) at.fail(path, `expected a port (0-65535) or a range like "8000-8999", found ${describe(value)}`)
    if (range[0] > range[1]) at.fail(path, `${describe(value)}: the range starts above its end`)
    ranges.push(range)
  }
  return ranges
}

function parsePortRange(value: unknown): [number, number] | null {
  if (typeof value === 'number') return isPort(value) ? [value, value] : null
  if (typeof value !== 'string') return null
  const match = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(value)
  if (match === null) return null
  const low = Number(match[1])
  const high = match[2] === undefined ? low : Number(match[2])
  return isPort(low) && isPort(high) ? [low, high] : null
}

function isPort(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= 0xffff
}

function parseUsers(raw: unknown, at: OptionPath, field: string): { any: boolean; names: Set<string> } {
  let any = false
  const names = new Set<string>()
  for (const [value, path] of listOf(raw, at, field)) {
    if (typeof value !== 'string' || value.length === 0) at.fail(path, `expected a user name, found ${describe(value)}`)
    if (Buffer.byteLength(value) > 255) at.fail(path, 'a user name is at most 255 bytes (RFC 1929)')
    if (value === '*') any = true
    else names.add(value)
  }
  return { any, names }
}

function parseCommands(raw: unknown, at: OptionPath, field: string): Set<CommandName> {
  const commands = new Set<CommandName>()
  for (const [value, path] of listOf(raw, at, field)) {
    if (typeof value !== 'string' || !(COMMAND_NAMES as readonly string[]).includes(value)) {
      at.fail(path, `${describe(value)} is not a command (${COMMAND_NAMES.join(', ')})${typeof value === 'string' ? hint(value, COMMAND_NAMES) : ''}`)
    }
    commands.add(value as CommandName)
  }
  return commands
}

// ---- messages ----

/** ` (did you mean "private"?)` when a value `word` is a near miss of one of `candidates`, else ''. */
export function hint(word: string, candidates: readonly string[]): string {
  const best = didYouMean(word, candidates)
  return best === null ? '' : ` (did you mean "${best}"?)`
}

