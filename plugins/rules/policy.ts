import type { OptionPath } from 'socksmith'
import { checkKeys, describe, isPlainObject } from 'socksmith/plugin-kit'
import { compileMatcher, hint, type Matcher, type ParsedFacts } from './compile.js'

/** What a rule, or the default, does with a connection that matches it. */
export type RuleAction = 'allow' | 'deny'

/** Conditions as written in a config, all of which must hold (any value of a list). Also the upstream plugin's route `match`. */
export interface MatchOptions {
  /** Client addresses: CIDRs or presets. */
  from?: string | string[]
  /** Destination addresses (checked after DNS, on every answer): CIDRs or presets. */
  to?: string | string[]
  /** Destination names as requested: `example.com`, `*.example.com` (sub-domains only) or `*` (any name). */
  domains?: string | string[]
  /** Destination ports: `443`, `[80, 443]`, `'8000-8999'`. */
  ports?: number | string | (number | string)[]
  /** Authenticated user names; `*` is any authenticated user. */
  users?: string | string[]
  commands?: ('connect' | 'bind' | 'udp') | ('connect' | 'bind' | 'udp')[]
}

/** One rule as written in a config: an action and conditions that must all hold. */
export interface RuleOptions extends MatchOptions {
  action: RuleAction
}

/** Options of the rules plugin. */
export interface RulesOptions {
  /** What happens when no rule matches. Default `allow`. */
  default?: RuleAction
  /** Checked in order; the first rule that matches decides. */
  rules: RuleOptions[]
}

/** A decision and the rule that made it, for logs and error messages. */
export interface Verdict {
  readonly action: RuleAction
  /** Index in `rules`, or -1 for the default action. */
  readonly rule: number
  /** `rules[2]` or `default`. */
  readonly source: string
}

interface CompiledRule {
  readonly matcher: Matcher
  readonly verdict: Verdict
}

const TOP_KEYS = ['default', 'rules']
const ACTIONS: readonly RuleAction[] = ['allow', 'deny']

/** The compiled rule list: what parseOptions returns and setup receives. */
export class RulesPolicy {
  readonly rules: readonly CompiledRule[]
  readonly defaultVerdict: Verdict

  constructor(rules: readonly CompiledRule[], defaultAction: RuleAction) {
    this.rules = rules
    this.defaultVerdict = Object.freeze({ action: defaultAction, rule: -1, source: 'default' })
  }

  /**
   * First match wins, as far as the known facts go: a rule that fails on a known fact is skipped;
   * a rule that needs an unknown fact (and does not fail on the known ones) stops the walk with
   * null, "undecided", because whether it matches decides what happens. Consequently a decision
   * made here is final: more facts cannot change it.
   */
  decide(facts: ParsedFacts): Verdict | null {
    for (const rule of this.rules) {
      const matched = rule.matcher.evaluate(facts)
      if (matched === true) return rule.verdict
      if (matched === undefined) return null
    }
    return this.defaultVerdict
  }

  /** True when some rule could be undecided for a UDP ASSOCIATE request, so datagrams need checking. */
  get checksDatagrams(): boolean {
    return this.rules.some(({ matcher }) => matcher.evaluate(UDP_REQUEST_PROBE) !== false && matcher.fields.some((f) => f === 'to' || f === 'domains' || f === 'ports'))
  }

  /** True when no rule and no default can deny anything (a configuration that changes nothing). */
  get allowsEverything(): boolean {
    return this.defaultVerdict.action === 'allow' && this.rules.every((r) => r.verdict.action === 'allow')
  }
}

// Only the command is known; the rest stay unknown so that only `commands` can rule a rule out.
const UDP_REQUEST_PROBE: ParsedFacts = { client: undefined, address: undefined, name: undefined, port: undefined, user: undefined, command: 'udp' }

/** Validates and compiles the plugin's options (CIDRs parsed here, once). Idempotent on its own output. */
export function parseRulesOptions(raw: unknown, at: OptionPath): RulesPolicy {
  if (raw instanceof RulesPolicy) return raw
  if (raw === undefined) at.fail('', 'options are required: { default?: "allow" | "deny", rules: [...] }')
  if (!isPlainObject(raw)) at.fail('', `expected an object { default?, rules }, found ${describe(raw)}`)
  // Each key and each rule is checked on its own, so one run reports every bad rule.
  attempt(at, () => checkKeys(raw, TOP_KEYS, at))
  const defaultAction = raw.default === undefined ? 'allow' : attempt(at, () => parseAction(raw.default, at, 'default'))
  if (!Array.isArray(raw.rules)) at.fail('rules', `expected a list of rules, found ${describe(raw.rules)}`)
  const rules = raw.rules.map((rule: unknown, i: number) => attempt(at, () => parseRule(rule, i, at)))
  // With failures collected this policy is incomplete; the caller reports them and drops it.
  return new RulesPolicy(rules.filter((rule) => rule !== undefined), defaultAction ?? 'allow')
}

function parseRule(rule: unknown, i: number, at: OptionPath): CompiledRule {
  const field = `rules[${i}]`
  if (!isPlainObject(rule)) at.fail(field, `expected an object { action, from?, to?, domains?, ports?, users?, commands? }, found ${describe(rule)}`)
  if (rule.action === undefined) at.fail(`${field}.action`, 'is required ("allow" or "deny")')
  const action = parseAction(rule.action, at, `${field}.action`)
  const matcher = compileMatcher(rule, at, field, ['action'])
  return { matcher, verdict: Object.freeze({ action, rule: i, source: field }) }
}

/** `at.collect(check)`, or just `check()` with a hand-made OptionPath that cannot collect. */
function attempt<T>(at: OptionPath, check: () => T): T | undefined {
  return at.collect === undefined ? check() : at.collect(check)
}

function parseAction(value: unknown, at: OptionPath, field: string): RuleAction {
  if (value === 'allow' || value === 'deny') return value
  at.fail(field, `expected "allow" or "deny", found ${describe(value)}${typeof value === 'string' ? hint(value, ACTIONS) : ''}`)
}
