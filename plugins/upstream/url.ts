import { isIP } from 'node:net'
import { defaultUpstreamTls, type UpstreamTls } from './tls.js'

/**
 * The proxy protocols an upstream URL can name. `https`, `socks5s` and `socks5hs` are `http`,
 * `socks5` and `socks5h` inside TLS to the proxy.
 */
export type ProxyProtocol = 'socks5' | 'socks5h' | 'socks4' | 'socks4a' | 'http' | 'https' | 'socks5s' | 'socks5hs'

/** One upstream proxy, parsed from its URL. */
export interface ProxyEndpoint {
  readonly protocol: ProxyProtocol
  /** IP literal (IPv6 without brackets) or host name. */
  readonly host: string
  readonly port: number
  /** SOCKS5 / HTTP user name, or the SOCKS4 USERID. */
  readonly username: string | null
  /** Not enumerable: a logged or serialised endpoint never shows it. */
  readonly password: string | null
  /** The URL without its password, for logs and error messages. */
  readonly label: string
  /** How TLS to this proxy is verified, for the TLS schemes; null for the others. */
  readonly tls: UpstreamTls | null
}

const DEFAULT_PORTS: Readonly<Record<ProxyProtocol, number>> = {
  socks5: 1080,
  socks5h: 1080,
  socks4: 1080,
  socks4a: 1080,
  http: 80,
  https: 443,
  socks5s: 1080,
  socks5hs: 1080,
}

const TLS_PROTOCOLS: ReadonlySet<ProxyProtocol> = new Set(['https', 'socks5s', 'socks5hs'])

const PROTOCOLS = Object.keys(DEFAULT_PORTS) as ProxyProtocol[]

// A DNS name as proxies accept it: labels of letters, digits, '-' and '_' (seen in the wild), dots between.
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i

/** True for a DNS name as proxies accept it (see HOST_NAME). */
export function isHostName(host: string): boolean {
  return HOST_NAME.test(host)
}

/** An invalid proxy URL; the message never contains the URL's password. */
export class ProxyUrlError extends Error {
  override readonly name = 'ProxyUrlError'
}

/**
 * Parses `socks5://[user:pass@]host:port`, `socks5h://`, `socks4://[userid@]`, `socks4a://`,
 * `http://[user:pass@]` (HTTP CONNECT with basic auth), and the same over TLS to the proxy:
 * `https://`, `socks5s://`, `socks5hs://`. IPv6 hosts go in brackets. The port defaults to 1080 for
 * SOCKS, 80 for HTTP and 443 for HTTPS. Userinfo is percent-decoded. A TLS scheme takes `tls` (how
 * to verify the proxy, a client certificate); without it the certificate is verified against the
 * default trust store and the URL's host.
 *
 * @example
 * parseProxyUrl('socks5h://alice:s%40cret@[::1]:1080')
 * // { protocol: 'socks5h', host: '::1', port: 1080, username: 'alice', password: 's@cret' (hidden), ... }
 */
export function parseProxyUrl(raw: string, tls?: UpstreamTls): ProxyEndpoint {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(raw)
  if (scheme === null) throw new ProxyUrlError('not a proxy URL; expected scheme://[user:pass@]host:port, e.g. socks5://127.0.0.1:1080')
  const protocol = scheme[1]!.toLowerCase()
  if (!(PROTOCOLS as string[]).includes(protocol)) {
    throw new ProxyUrlError(`unsupported scheme "${protocol}:" (supported: ${PROTOCOLS.map((p) => `${p}://`).join(', ')})`)
  }
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new ProxyUrlError(`not a valid ${protocol}:// URL; expected ${protocol}://[user:pass@]host:port`)
  }
  const kind = protocol as ProxyProtocol
  if (url.pathname !== '' && url.pathname !== '/') throw new ProxyUrlError(`a proxy URL has no path, found "${url.pathname}"`)
  if (url.search !== '' || url.hash !== '') throw new ProxyUrlError('a proxy URL has no query or fragment')
  let host = url.hostname
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1)
  host = host.toLowerCase()
  if (host === '') throw new ProxyUrlError(`${kind}:// URL has no host`)
  if (isIP(host) === 0 && !isHostName(host)) throw new ProxyUrlError(`"${host}" is neither an IP address nor a host name (IPv6 goes in brackets: [::1]:1080)`)
  const port = url.port === '' ? DEFAULT_PORTS[kind] : Number(url.port)
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ProxyUrlError(`port must be 1-65535, found ${url.port}`)

  const username = url.username === '' ? null : decode(url.username, 'user name')
  const password = url.password === '' ? null : decode(url.password, 'password')
  if (password !== null && username === null) throw new ProxyUrlError('a password needs a user name (user:pass@host)')
  const secure = TLS_PROTOCOLS.has(kind)
  if (tls !== undefined && !secure) throw new ProxyUrlError(`TLS options apply to ${[...TLS_PROTOCOLS].map((p) => `${p}://`).join(', ')} only, not ${kind}://`)
  if (kind === 'socks4' || kind === 'socks4a') {
    if (password !== null) throw new ProxyUrlError(`${kind} has no passwords; only a user id (${kind}://userid@host:port)`)
    if (username !== null && username.includes('\0')) throw new ProxyUrlError('user id must not contain NUL')
  } else if (kind === 'http' || kind === 'https') {
    if (username !== null && username.includes(':')) throw new ProxyUrlError('HTTP basic auth user names cannot contain ":"')
  } else if (username !== null) {
    // RFC 1929: ULEN and PLEN are single bytes, and an empty field is not a credential.
    if (Buffer.byteLength(username) > 255) throw new ProxyUrlError('user name is longer than 255 bytes (RFC 1929)')
    if (password === null) throw new ProxyUrlError('SOCKS5 login needs a password too (user:pass@host)')
    if (Buffer.byteLength(password) > 255) throw new ProxyUrlError('password is longer than 255 bytes (RFC 1929)')
  }

  const hostPart = host.includes(':') ? `[${host}]` : host
  const label = `${kind}://${username === null ? '' : `${encodeURIComponent(username)}@`}${hostPart}:${port}`
  const endpoint = { protocol: kind, host, port, username, label, tls: secure ? (tls ?? defaultUpstreamTls()) : null } as { -readonly [K in keyof ProxyEndpoint]: ProxyEndpoint[K] }
  Object.defineProperty(endpoint, 'password', { value: password, enumerable: false })
  return Object.freeze(endpoint)
}

/** `endpoint` with other TLS settings (the plugin's `tls` options, loaded at setup); the password stays hidden. */
export function withTls(endpoint: ProxyEndpoint, tls: UpstreamTls): ProxyEndpoint {
  if (!isTlsProtocol(endpoint.protocol)) throw new ProxyUrlError(`TLS options apply to ${[...TLS_PROTOCOLS].map((p) => `${p}://`).join(', ')} only, not ${endpoint.protocol}://`)
  const copy = { ...endpoint, tls }
  Object.defineProperty(copy, 'password', { value: endpoint.password, enumerable: false })
  return Object.freeze(copy)
}

function decode(value: string, what: string): string {
  try {
    return decodeURIComponent(value)
  } catch {
    throw new ProxyUrlError(`${what} has a bad percent-escape`)
  }
}

/** True for protocols that speak SOCKS5, over TLS or not (and so can relay BIND and UDP ASSOCIATE). */
export function isSocks5(endpoint: ProxyEndpoint): boolean {
  const protocol = endpoint.protocol
  return protocol === 'socks5' || protocol === 'socks5h' || protocol === 'socks5s' || protocol === 'socks5hs'
}

/** True for the schemes that run TLS to the proxy: `https`, `socks5s`, `socks5hs`. */
export function isTlsProtocol(protocol: ProxyProtocol): boolean {
  return TLS_PROTOCOLS.has(protocol)
}
