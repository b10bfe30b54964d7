// What a forwarding HTTP proxy does to the header block of a message it passes on (RFC 9110
// §7.6.1, RFC 9112 §3.2.2): pure functions over node's raw header lists ([name, value, name,
// value, …], names as the sender spelt them, duplicates kept), no I/O.

/**
 * Hop-by-hop fields: they describe one connection, not the message, so a proxy never forwards
 * them (RFC 9110 §7.6.1; Proxy-Connection is the pre-standard one old clients still send;
 * Transfer-Encoding is re-framed by whoever writes the next hop; Proxy-Authorization carries the
 * client's proxy password and Proxy-Authenticate an upstream proxy's challenge).
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade'])

/** What a proxy adds to the messages it forwards, if anything (the listener's `http` options). */
export interface ForwardHeaderOptions {
  /** The pseudonym of a `Via: 1.1 <name>` line added to requests and responses (RFC 9110 §7.6.3); null: none. */
  readonly via: string | null
  /** The client's address, appended to `X-Forwarded-For` of requests; null: the header is left as it came. */
  readonly forwardedFor: string | null
}

/** A `Via` pseudonym as RFC 9110 §7.6.3 allows it: one token (no spaces, commas or quotes). */
export const VIA_PSEUDONYM = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/

/**
 * The header block of a request as it goes to the origin: hop-by-hop fields (and those the
 * Connection header names) removed, `Host` set to the authority of the target URI (RFC 9112
 * §3.2.2: a proxy replaces it, so the origin serves the host the rules checked, not another name
 * the client put in Host), then Via and X-Forwarded-For when configured. `chunked`: the body came
 * chunked, so the next hop is told it comes chunked too (node writes the framing).
 */
export function forwardRequestHeaders(raw: readonly string[], authority: string, httpVersion: string, chunked: boolean, options: ForwardHeaderOptions): string[] {
  const named = connectionTokens(raw)
  const out: string[] = ['Host', authority]
  let forwardedFor: string | null = null
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!
    const lower = name.toLowerCase()
    if (lower === 'host' || HOP_BY_HOP.has(lower) || (named !== null && named.has(lower))) continue
    if (options.forwardedFor !== null && lower === 'x-forwarded-for') {
      forwardedFor = forwardedFor === null ? raw[i + 1]! : `${forwardedFor}, ${raw[i + 1]!}`
      continue
    }
    out.push(name, raw[i + 1]!)
  }
  if (chunked) out.push('Transfer-Encoding', 'chunked')
  if (options.via !== null) out.push('Via', `${viaVersion(httpVersion)} ${options.via}`)
  if (options.forwardedFor !== null) out.push('X-Forwarded-For', forwardedFor === null ? options.forwardedFor : `${forwardedFor}, ${options.forwardedFor}`)
  return out
}

/** The header block of a response as it goes back to the client: hop-by-hop fields removed, Via when configured. */
export function forwardResponseHeaders(raw: readonly string[], httpVersion: string, options: ForwardHeaderOptions): string[] {
  const named = connectionTokens(raw)
  const out: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase()
    if (HOP_BY_HOP.has(lower) || (named !== null && named.has(lower))) continue
    out.push(raw[i]!, raw[i + 1]!)
  }
  if (options.via !== null) out.push('Via', `${viaVersion(httpVersion)} ${options.via}`)
  return out
}

/** The field names listed by the message's Connection headers (lower case), or null when there are none. */
function connectionTokens(raw: readonly string[]): Set<string> | null {
  let named: Set<string> | null = null
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'connection') continue
    for (const token of raw[i + 1]!.split(',')) {
      const name = token.trim().toLowerCase()
      if (name.length > 0) (named ??= new Set()).add(name)
    }
  }
  return named
}

/** `1.1` for HTTP/1.1: Via names the protocol of the hop it came in on, without `HTTP/` (RFC 9110 §7.6.3). */
function viaVersion(httpVersion: string): string {
  return /^\d\.\d$/.test(httpVersion) ? httpVersion : '1.1'
}
