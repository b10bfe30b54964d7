/**
 * The bundled `rules` plugin: allow and deny by client address, destination address (after DNS),
 * name, port, user and command. Exported as `socksmith/plugins/rules`, with its matchers for other
 * plugins; written against the public API only.
 *
 * @packageDocumentation
 * @module socksmith/plugins/rules
 */
import { definePlugin, SocksError, type Address, type ConnectContext, type DatagramContext, type Logger, type Middleware, type NegotiateContext, type ResolvedAddress, type UdpAssociation } from 'socksmith'
import { formatAddress } from 'socksmith/protocol'
import { isLogLevelEnabled } from 'socksmith/ops'
import { normalizeName, parseIp, unknownFacts, type IpAddress, type ParsedFacts } from './compile.js'
import { parseRulesOptions, RulesPolicy, type RulesOptions, type Verdict } from './policy.js'

export { compileMatcher, normalizeName, parseIp, parseFacts, MATCH_FIELDS, COMMAND_NAMES } from './compile.js'
export type { Matcher, MatchFacts, MatchField, ParsedFacts, IpAddress } from './compile.js'
export { PRESETS, PRESET_NAMES } from './presets.js'
export type { PresetName } from './presets.js'
export { parseRulesOptions, RulesPolicy } from './policy.js'
export type { RulesOptions, RuleOptions, MatchOptions, RuleAction, Verdict } from './policy.js'

declare module 'socksmith' {
  interface SocksState {
    /** rules: 'allow' once the verdict can no longer depend on the destination; null while open. */
    rulesVerdict: 'allow' | null
    /** rules: for UDP, the name each vetted peer (`ip|port`) was asked for, so its replies match the same domain rules. */
    rulesUdpNames: Map<string, string> | null
  }
}

/** How many peer names one UDP association remembers (the core remembers as many peers). */
const MAX_UDP_NAMES = 1024

/**
 * CIDR / name / port / user / command allow and deny rules. First match wins; every fact is checked
 * where it becomes known: the client address at `negotiate` (refused with `05 FF` before any
 * authentication work), the destination at `connect` after DNS (each answer is checked and only
 * allowed addresses are dialled; none allowed is REP 02 and the target is never contacted), the
 * inbound peer of a BIND, and every UDP datagram both ways.
 *
 * @example
 * server.register(rules, {
 *   default: 'allow',
 *   rules: [
 *     { action: 'deny', to: ['loopback', 'private', 'link-local', 'unspecified'] },
 *     { action: 'deny', ports: 25 },
 *     { action: 'allow', users: 'alice', commands: ['connect', 'udp'] },
 *   ],
 * })
 */
const rules = definePlugin<RulesPolicy, RulesOptions>({
  name: 'rules',
  parseOptions: parseRulesOptions,
  setup(host, policy) {
    if (policy.allowsEverything && policy.rules.length > 0) {
      host.log.warn('rules: every rule allows and the default is "allow", so the rules change nothing; did you mean default: "deny"?')
    }
    host.declareState('rulesVerdict', null)
    host.declareState('rulesUdpNames', null)
    host.use('negotiate', createClientCheck(policy))
    host.use('connect', createDestinationCheck(policy))
    // Only a rule that may still be open for a UDP ASSOCIATE request makes per-datagram checks worth their cost.
    if (policy.checksDatagrams) host.use('datagram', createDatagramCheck(policy, host.log))
  },
})
export default rules

/** `negotiate`: decides on the client address alone when the rules allow it, before any authentication. */
export function createClientCheck(policy: RulesPolicy): Middleware<NegotiateContext> {
  return async function rulesCheckClient(ctx, next) {
    const facts = unknownFacts()
    facts.client = parseIp(ctx.client.address)
    const verdict = policy.decide(facts)
    if (verdict !== null) {
      if (verdict.action === 'deny') throw refusal(verdict, `client ${ctx.client.address}`)
      ctx.state.rulesVerdict = 'allow'
    }
    await next()
  }
}

/**
 * `connect`, before the dial: the request (user, command, port, name) and then, if still open, every
 * address the destination resolves to; `ctx.resolved` keeps only the allowed ones, which are all the
 * direct dialer (and the upstream plugin) will use. For BIND, the inbound peer is checked too.
 */
export function createDestinationCheck(policy: RulesPolicy): Middleware<ConnectContext> {
  return async function rulesCheckDestination(ctx, next) {
    if (ctx.state.rulesVerdict === 'allow') return next()
    const command = ctx.commandName
    const destination = ctx.destination
    const anyPeer = command === 'bind' && isAnyPeer(destination)
    const facts = unknownFacts()
    facts.client = parseIp(ctx.client.address)
    facts.user = ctx.user
    facts.command = command
    // A UDP ASSOCIATE request's DST is the client's own UDP endpoint, not a destination: datagrams are checked instead.
    // A BIND request's DST is the peer expected to connect; 0.0.0.0 (or port 0) means "any", decided by the peer check.
    if (command !== 'udp') {
      facts.name = destination.type === 'domain' && destination.host !== '' ? normalizeName(destination.host) : null
      if (!(command === 'bind' && destination.port === 0)) facts.port = destination.port
    }
    const verdict = policy.decide(facts)
    if (verdict !== null) {
      if (verdict.action === 'deny') throw refusal(verdict, `${command} to ${formatAddress(destination)}`)
      ctx.state.rulesVerdict = 'allow'
      return next()
    }
    if (command === 'udp') return next()
    // A BIND with DST.PORT 0 may still be undecided by address alone (a port rule); the peer check
    // below sees the peer's real address and port and decides those. Clear denials refuse now.
    if (!anyPeer) await keepAllowedAddresses(ctx, policy, facts, command === 'bind' && destination.port === 0)
    if (command === 'bind') checkBindPeer(ctx, policy, facts)
    await next()
  }
}

/** Resolves the destination (IP literals resolve to themselves), checks every answer, keeps the allowed ones (and, with `keepUndecided`, those only a later check can decide). */
async function keepAllowedAddresses(ctx: ConnectContext, policy: RulesPolicy, facts: ParsedFacts, keepUndecided = false): Promise<void> {
  const answers = await ctx.resolve()
  const allowed: ResolvedAddress[] = []
  let denial: Verdict | null = null
  for (const answer of answers) {
    // An answer that is not an IP literal is never dialled: it would be resolved again, unchecked.
    facts.address = parseIp(answer.address)
    const verdict = facts.address === null ? null : policy.decide(facts)
    if ((verdict !== null && verdict.action === 'allow') || (verdict === null && keepUndecided && facts.address !== null)) allowed.push(answer)
    else denial ??= verdict
  }
  facts.address = undefined
  if (allowed.length === 0) {
    const where = ctx.destination.type === 'domain' ? ` (${answers.map((a) => a.address).join(', ')})` : ''
    throw refusal(denial, `${ctx.commandName} to ${formatAddress(ctx.destination)}${where}`)
  }
  if (allowed.length < answers.length) {
    if (isLogLevelEnabled(ctx.log, 'debug')) ctx.log.debug('rules: dropped denied addresses of the destination', { id: ctx.id, name: ctx.destination.host, kept: allowed.map((a) => a.address), rule: denial?.source })
  }
  ctx.resolved = allowed
}

/**
 * The BIND peer is treated as the destination: `to` is its IP and `ports` its port (the request's
 * DST named the peer expected). The core's own check (the peer must be DST.ADDR unless that is
 * 0.0.0.0 / ::) applies first, or whatever check an earlier middleware installed.
 */
function checkBindPeer(ctx: ConnectContext, policy: RulesPolicy, requestFacts: ParsedFacts): void {
  const previous = ctx.acceptBindPeer
  const facts: ParsedFacts = { ...requestFacts }
  ctx.acceptBindPeer = async function acceptBindPeerByRules(peer) {
    const expected = previous === null ? await isExpectedBindPeer(ctx, peer) : await previous(peer)
    if (!expected) return false
    facts.address = parseIp(peer.host)
    facts.port = peer.port
    const verdict = facts.address === null ? null : policy.decide(facts)
    if (verdict !== null && verdict.action === 'allow') return true
    if (isLogLevelEnabled(ctx.log, 'debug')) ctx.log.debug('rules: BIND peer refused', { id: ctx.id, peer: formatAddress(peer), rule: verdict?.source })
    return false
  }
}

async function isExpectedBindPeer(ctx: ConnectContext, peer: Address): Promise<boolean> {
  if (isAnyPeer(ctx.destination)) return true
  const peerIp = parseIp(peer.host)
  if (peerIp === null) return false
  for (const answer of await ctx.resolve()) {
    const ip = parseIp(answer.address)
    if (ip !== null && sameIp(ip, peerIp)) return true
  }
  return false
}

/**
 * `datagram`: every packet of an association whose verdict is still open. Outbound, a name is
 * resolved first (the core then sends to exactly that address) and the address checked; inbound,
 * the sending peer is checked. Denied packets are dropped; the association lives on.
 */
export function createDatagramCheck(policy: RulesPolicy, log: Logger): Middleware<DatagramContext> {
  const clients = new WeakMap<UdpAssociation, IpAddress | null>()
  return async function rulesCheckDatagram(dctx, next) {
    const association = dctx.association
    const state = association.state
    if (state.rulesVerdict === 'allow') return next()
    let name: string | null = null
    if (dctx.direction === 'out' && dctx.peer.type === 'domain') {
      name = normalizeName(dctx.peer.host)
      await dctx.resolvePeer()
    }
    const peer = dctx.peer
    const address = parseIp(peer.host)
    const key = address === null ? '' : `${address.toString()}|${peer.port}`
    if (dctx.direction === 'in') name = state.rulesUdpNames?.get(key) ?? null
    let client = clients.get(association)
    if (client === undefined) clients.set(association, (client = parseIp(association.client.address)))
    const facts: ParsedFacts = { client, address, name, port: peer.port, user: association.user, command: 'udp' }
    const verdict = address === null ? null : policy.decide(facts)
    if (verdict === null || verdict.action !== 'allow') {
      dctx.drop()
      if (isLogLevelEnabled(log, 'debug')) log.debug('rules: datagram dropped', { id: association.id, direction: dctx.direction, peer: formatAddress(peer), rule: verdict?.source })
      return
    }
    if (name !== null && dctx.direction === 'out') rememberName(state, key, name)
    await next()
  }
}

function rememberName(state: { rulesUdpNames: Map<string, string> | null }, key: string, name: string): void {
  const names = (state.rulesUdpNames ??= new Map())
  if (names.size >= MAX_UDP_NAMES && !names.has(key)) {
    const oldest = names.keys().next().value
    if (oldest !== undefined) names.delete(oldest)
  }
  names.set(key, name)
}

function refusal(verdict: Verdict | null, what: string): SocksError {
  return new SocksError('ERR_SOCKS_NOT_ALLOWED', `${what} denied by ${verdict?.source ?? 'rules'}`)
}

function isAnyPeer(destination: Address): boolean {
  return destination.host === '0.0.0.0' || destination.host === '::' || destination.host === ''
}

function sameIp(a: IpAddress, b: IpAddress): boolean {
  return a.kind() === b.kind() && a.toNormalizedString() === b.toNormalizedString()
}
