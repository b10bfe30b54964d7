import { createHash, timingSafeEqual } from 'node:crypto'
import { isIP, type Socket } from 'node:net'
import { connect as tlsConnect, createSecureContext, type ConnectionOptions, type SecureContext, type TLSSocket } from 'node:tls'

/**
 * The TLS material of one upstream, as PEM text (files already read). What `UpstreamTls` is made of.
 */
export interface UpstreamTlsSettings {
  /** CA certificates (PEM) that replace the default trust store for this upstream. */
  readonly ca?: string | readonly string[]
  /** SNI and the name the certificate must carry; default the URL's host when it is a name. */
  readonly servername?: string
  /** `sha256/<base64>` SubjectPublicKeyInfo pins; the certificate must match one of them. */
  readonly pins?: readonly string[]
  /** A client certificate (PEM) for mutual TLS; needs `key`. */
  readonly cert?: string
  /** The client certificate's private key (PEM). Only the secure context keeps it. */
  readonly key?: string
  /** No certificate verification at all (pins are still checked). */
  readonly insecure?: boolean
}

/** What a pin looks like: `sha256/` and the base64 of a 32-byte digest (HPKP, curl `--pinnedpubkey`). */
const PIN = /^sha256\/([A-Za-z0-9+/]{43}=)$/

/** True if `pin` is written as `sha256/<base64 of 32 bytes>`. */
export function isPin(pin: string): boolean {
  const match = PIN.exec(pin)
  return match !== null && Buffer.from(match[1]!, 'base64').length === 32
}

/**
 * How socksmith talks TLS to one upstream proxy (`https://`, `socks5s://`, `socks5hs://`): the
 * secure context is built once, here, so no connection parses PEM again, and the private key lives
 * only inside it (this object has nothing to log). Verification is on unless `insecure` says
 * otherwise: the chain against `ca` (or Node's default trust store), the name against `servername`
 * (or the URL's host), and every pin on top.
 *
 * @example
 * const tls = new UpstreamTls({ ca: readFileSync('ca.pem', 'utf8'), pins: ['sha256/…'] })
 * const chain = new ProxyChain([parseProxyUrl('socks5s://proxy.example:1080', tls)])
 */
export class UpstreamTls {
  /** SNI and the name verified; null = the URL's host. */
  readonly servername: string | null
  readonly pins: readonly string[]
  readonly insecure: boolean
  /** True when a client certificate is presented. */
  readonly clientCertificate: boolean
  readonly #context: SecureContext
  readonly #pinDigests: readonly Buffer[]

  /** Throws what `tls.createSecureContext` throws for bad PEM or a key that does not match its certificate. */
  constructor(settings: UpstreamTlsSettings = {}) {
    if ((settings.cert === undefined) !== (settings.key === undefined)) throw new TypeError('a client certificate needs both cert and key')
    const pins = settings.pins ?? []
    for (const pin of pins) if (!isPin(pin)) throw new TypeError(`pin must be sha256/<base64 of the SubjectPublicKeyInfo digest>, found ${JSON.stringify(pin)}`)
    this.servername = settings.servername ?? null
    this.pins = Object.freeze([...pins])
    this.insecure = settings.insecure === true
    this.clientCertificate = settings.cert !== undefined
    this.#pinDigests = pins.map((pin) => Buffer.from(pin.slice('sha256/'.length), 'base64'))
    const ca = settings.ca === undefined ? undefined : typeof settings.ca === 'string' ? settings.ca : [...settings.ca]
    // Without `ca`, createSecureContext trusts Node's default store (Mozilla's list, NODE_EXTRA_CA_CERTS, --use-openssl-ca).
    this.#context = createSecureContext({ ca, cert: settings.cert, key: settings.key })
  }

  /**
   * Runs the TLS handshake over `socket` (TCP to the proxy, or a tunnel to it through earlier hops)
   * for the proxy at `host`. Resolves with the encrypted socket once the certificate verified and
   * matched a pin; rejects with an Error whose message says why (the TLS code first, as in
   * `UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first certificate`). `socket` is
   * destroyed on failure and on `signal`.
   */
  connect(socket: Socket, host: string, signal: AbortSignal): Promise<TLSSocket> {
    const servername = this.servername ?? (isIP(host) === 0 ? host : undefined)
    return new Promise<TLSSocket>((resolve, reject) => {
      // `host` is what the certificate is checked against when there is no servername (an IP URL):
      // without it Node would check "localhost".
      // allowHalfOpen, as for every relayed socket: tls.connect passes it on to the TLSSocket, though @types/node does not list it.
      const options: ConnectionOptions & { allowHalfOpen: boolean } = { socket, host, servername, secureContext: this.#context, rejectUnauthorized: !this.insecure, allowHalfOpen: true }
      const secure = tlsConnect(options)
      const finish = (err: Error | null): void => {
        secure.off('secureConnect', onSecure)
        secure.off('error', onError)
        secure.off('close', onClose)
        signal.removeEventListener('abort', onAbort)
        if (err === null) return resolve(secure)
        // A late 'error' from the dying socket must have somewhere to go.
        secure.on('error', noop)
        secure.destroy()
        socket.destroy()
        reject(err)
      }
      const onSecure = (): void => finish(this.#checkPins(secure))
      const onError = (err: Error): void => finish(tlsError(err))
      const onClose = (): void => finish(new Error('the proxy closed the connection during the TLS handshake'))
      const onAbort = (): void => finish(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)))
      secure.on('secureConnect', onSecure)
      secure.on('error', onError)
      secure.on('close', onClose)
      if (signal.aborted) onAbort()
      else signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Pins are checked after (not instead of) verification, and also with `insecure`. */
  #checkPins(secure: TLSSocket): Error | null {
    if (this.#pinDigests.length === 0) return null
    // Not PeerCertificate.pubkey: for EC keys that is the bare point, not the SubjectPublicKeyInfo a pin is a digest of.
    const cert = secure.getPeerX509Certificate()
    if (cert === undefined) return pinMismatch('the proxy sent no certificate to check the pin against')
    const digest = createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest()
    if (this.#pinDigests.some((pin) => timingSafeEqual(pin, digest))) return null
    return pinMismatch(`the certificate's public key is sha256/${digest.toString('base64')}, ${this.pins.length === 1 ? 'not the pin given' : `none of the ${this.pins.length} pins given`}`)
  }
}

function pinMismatch(why: string): Error {
  return Object.assign(new Error(`ERR_TLS_PIN_MISMATCH: ${why}`), { code: 'ERR_TLS_PIN_MISMATCH' })
}

/** The shared context of a TLS upstream written without options: full verification against the default store. */
let defaultTls: UpstreamTls | null = null

/** Made on first use, not at import: a server without TLS upstreams never builds a context. */
export function defaultUpstreamTls(): UpstreamTls {
  return (defaultTls ??= new UpstreamTls())
}

/** Puts the TLS reason code (`UNABLE_TO_VERIFY_LEAF_SIGNATURE`, `ERR_SSL_…`) in front, where logs are searched for it. */
function tlsError(err: Error): Error {
  const code = (err as NodeJS.ErrnoException).code
  if (code === undefined || err.message.includes(code)) return err
  return Object.assign(new Error(`${code}: ${err.message}`, { cause: err }), { code })
}

function noop(): void {}
