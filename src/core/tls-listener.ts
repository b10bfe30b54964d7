// TLS listeners (ListenOptions.tls): an HTTPS proxy on an `http`/`mixed` listener, SOCKS over
// TLS on a `socks5` one. The TCP listener stays the server's own (limits count the connection
// from its first byte); each admitted socket is handed to a tls.Server that never listens, as
// http-front.ts hands sockets to node's HTTP parser. That server is Node's, not a TLSSocket made
// here, because only tls.Server verifies a client certificate: a standalone server-side
// TLSSocket never sets `authorized` (checked on Node 20), so mTLS would be unverifiable.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import { isAbsolute, resolve } from 'node:path'
import { createSecureContext, createServer as createTlsServer, type SecureContext, type SecureContextOptions, type Server as TlsServer, type TLSSocket } from 'node:tls'
import { SocksError } from './errors.js'
import type { TlsInfo } from './context.js'

/** A certificate and its private key, as files (PEM). */
export interface ListenTlsIdentity {
  /** The certificate file (PEM), intermediates after the leaf. */
  cert: string
  /** The private key file (PEM, unencrypted). */
  key: string
}

/**
 * `ListenOptions.tls`: the listener speaks TLS. Every value is a file path (relative ones against
 * the working directory; the config file resolves them against its folder). The files are read at
 * listen() and again at every `reload()`: a changed certificate reaches new connections, live ones
 * keep theirs.
 */
export interface ListenTlsOptions extends ListenTlsIdentity {
  /** CA certificates (PEM) that client certificates are verified against; needed by `requestCert`. */
  ca?: string
  /**
   * Ask clients for a certificate, verified against `ca`: one without a valid certificate fails
   * the TLS handshake. A verified certificate is on `ctx.tls` (and can be the user: the `auth`
   * plugin's `certificateUser`). Default false.
   */
  requestCert?: boolean
  /** Other certificates by the name a client asks for (SNI): `'proxy.example.com'` or `'*.example.com'`. */
  sni?: Readonly<Record<string, ListenTlsIdentity>>
}

/** The keys of `ListenTlsOptions` (for the config's unknown-key check). */
export const LISTEN_TLS_KEYS = ['cert', 'key', 'ca', 'requestCert', 'sni'] as const

/** What the files held: PEM bytes, and a digest to see whether a reload changed anything. */
interface TlsMaterial {
  readonly main: SecureContextOptions
  readonly sni: ReadonlyMap<string, SecureContext>
  readonly digest: string
}

/**
 * Checks the shape of a `tls` entry (types, `requestCert` needing `ca`); `fail(field, message)`
 * gets each problem, the field relative to the entry (`cert`, `sni["a.example"].key`). Returns
 * the options with every path resolved against `dir`, or null when something was wrong.
 */
export function checkListenTls(raw: unknown, dir: string, fail: (field: string, message: string) => void): ListenTlsOptions | null {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    fail('', `expected { cert, key, ca?, requestCert?, sni? }, found ${raw === null ? 'null' : typeof raw}`)
    return null
  }
  const entry = raw as Record<string, unknown>
  let ok = true
  const path = (field: string, value: unknown): string => {
    if (typeof value === 'string' && value.trim() !== '') return isAbsolute(value) ? value : resolve(dir, value)
    fail(field, `expected a file path, found ${JSON.stringify(value) ?? 'nothing'}`)
    ok = false
    return ''
  }
  const result: ListenTlsOptions = { cert: path('cert', entry.cert), key: path('key', entry.key) }
  if (entry.ca !== undefined) result.ca = path('ca', entry.ca)
  if (entry.requestCert !== undefined) {
    if (typeof entry.requestCert !== 'boolean') {
      fail('requestCert', `expected true or false, found ${JSON.stringify(entry.requestCert)}`)
      ok = false
    } else result.requestCert = entry.requestCert
  }
  // Without a CA of its own, a listener asking for certificates would trust every public CA's.
  if (result.requestCert === true && entry.ca === undefined) {
    fail('requestCert', 'needs ca: the CA client certificates are verified against')
    ok = false
  }
  if (entry.sni !== undefined) {
    if (typeof entry.sni !== 'object' || entry.sni === null || Array.isArray(entry.sni)) {
      fail('sni', 'expected a map of server names to { cert, key }')
      ok = false
    } else {
      const sni: Record<string, ListenTlsIdentity> = {}
      for (const [name, identity] of Object.entries(entry.sni as Record<string, unknown>)) {
        const at = `sni[${JSON.stringify(name)}]`
        if (!/^(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$/.test(name)) {
          fail(at, 'expected a host name, or *. and one (a wildcard for one label)')
          ok = false
        }
        const value = (typeof identity === 'object' && identity !== null ? identity : {}) as Record<string, unknown>
        sni[name.toLowerCase()] = { cert: path(`${at}.cert`, value.cert), key: path(`${at}.key`, value.key) }
      }
      result.sni = sni
    }
  }
  return ok ? result : null
}

/**
 * Reads the files and builds the secure contexts; `fail(field, message)` names the field of the
 * first file that cannot be read or is not what it should be. Throws nothing else.
 */
export function readTlsMaterial(options: ListenTlsOptions, fail: (field: string, message: string) => never): TlsMaterial {
  const digest = createHash('sha256')
  const read = (field: string, file: string): Buffer => {
    try {
      const bytes = readFileSync(file)
      digest.update(file).update('\0').update(bytes).update('\0')
      return bytes
    } catch (err) {
      return fail(field, `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`)
    }
  }
  const identity = (at: string, files: ListenTlsIdentity): { cert: Buffer; key: Buffer; context: SecureContext } => {
    const cert = read(`${at}cert`, files.cert)
    const key = read(`${at}key`, files.key)
    // One at a time first, so the message names the file that is wrong, then the pair.
    context(`${at}cert`, { cert })
    context(`${at}key`, { key })
    return { cert, key, context: context(`${at}key`, { cert, key }, `does not match ${at}cert`) }
  }
  const context = (field: string, material: SecureContextOptions, what = 'is not usable'): SecureContext => {
    try {
      return createSecureContext(material)
    } catch (err) {
      return fail(field, `${what} (${(err as Error).message})`)
    }
  }
  const main = identity('', options)
  const ca = options.ca === undefined ? undefined : read('ca', options.ca)
  if (ca !== undefined) context('ca', { ca })
  const sni = new Map<string, SecureContext>()
  for (const [name, files] of Object.entries(options.sni ?? {})) sni.set(name.toLowerCase(), identity(`sni[${JSON.stringify(name)}].`, files).context)
  return { main: { cert: main.cert, key: main.key, ...(ca === undefined ? {} : { ca }) }, sni, digest: digest.digest('hex') }
}

/** What a TlsFront tells its server. */
export interface TlsFrontEvents {
  /** The handshake is done: `socket` is the decrypted connection of the admitted `raw`. */
  secure(socket: TLSSocket, raw: Socket): void
  /** The handshake failed (`err`: a TLS error, a timeout) or the client left during it (null): `raw` is closed. */
  failed(raw: Socket, err: Error | null): void
}

/**
 * The TLS side of one listener: runs the handshake of each admitted socket and swaps in new
 * certificates on reload (tls.Server#setSecureContext: new handshakes get them, live connections
 * keep theirs).
 */
export class TlsFront {
  readonly #options: ListenTlsOptions
  readonly #server: TlsServer
  readonly #events: TlsFrontEvents
  #material: TlsMaterial
  /** TCP sockets in their handshake ('secureConnection' and 'tlsClientError' give only the TLSSocket over one). */
  readonly #handshaking = new Set<Socket>()

  /** Reads the files now; a missing or bad one throws ERR_SOCKS_INVALID_ARGUMENT naming the field (`tls.cert: ...`). */
  constructor(options: ListenTlsOptions, handshakeTimeout: number, events: TlsFrontEvents) {
    this.#options = options
    this.#events = events
    this.#material = readTlsMaterial(options, listenFailure)
    // A verified certificate or none: a failed check ends the handshake, so nothing the client
    // sends is parsed before it is known (rejectUnauthorized is tls.Server's default, said here).
    this.#server = createTlsServer({
      ...this.#material.main,
      requestCert: options.requestCert === true,
      rejectUnauthorized: true,
      // 0 ("no handshake deadline") would be node's 120 s: the closest to none it takes.
      handshakeTimeout: handshakeTimeout > 0 ? handshakeTimeout : 0x7fffffff,
      SNICallback: (servername, callback) => callback(null, this.#contextFor(servername)),
    })
    this.#server.on('secureConnection', (socket: TLSSocket) => {
      const raw = this.#rawOf(socket)
      if (raw === null) return void socket.destroy()
      this.#handshaking.delete(raw)
      // Half-close for the relay, as on every relayed socket (see handshake()).
      socket.allowHalfOpen = true
      events.secure(socket, raw)
    })
    this.#server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
      const raw = this.#rawOf(socket)
      // Node leaves the socket open after some of these (a handshake timeout): it is done here.
      socket.destroy()
      if (raw === null) return
      this.#handshaking.delete(raw)
      raw.destroy()
      events.failed(raw, err)
    })
  }

  /** Sockets still in their TLS handshake. */
  get handshaking(): number {
    return this.#handshaking.size
  }

  /** Starts the handshake of an admitted connection. */
  handshake(raw: Socket): void {
    this.#handshaking.add(raw)
    // A socket whose peer left before the handshake ended, when node reports no tlsClientError.
    raw.once('close', () => {
      if (!this.#handshaking.delete(raw)) return
      this.#events.failed(raw, null)
    })
    // The TLSSocket takes allowHalfOpen from the TCP socket; half-open during the handshake, a
    // client that sent its FIN would keep it waiting for the handshake timeout (and counted).
    raw.allowHalfOpen = false
    this.#server.emit('connection', raw)
  }

  /**
   * Reads the files again. Returns a function that puts the new certificates in place, or null
   * when no file changed; throws (naming the field) when one cannot be used, changing nothing.
   */
  prepareReload(): (() => void) | null {
    const material = readTlsMaterial(this.#options, listenFailure)
    if (material.digest === this.#material.digest) return null
    return () => {
      this.#material = material
      this.#server.setSecureContext({ ...material.main })
    }
  }

  /** Ends every handshake in progress (the server is closing). */
  destroyHandshakes(): void {
    for (const raw of this.#handshaking) raw.destroy()
  }

  /**
   * The TCP socket under a TLSSocket: node's `_parent` (set by TLSSocket for a socket it wraps;
   * no public name), else by endpoints, which a socket closed by its peer may no longer know.
   */
  #rawOf(socket: TLSSocket): Socket | null {
    const parent = (socket as { _parent?: unknown })._parent
    if (parent instanceof Object && this.#handshaking.has(parent as Socket)) return parent as Socket
    const key = endpointsOf(socket)
    for (const raw of this.#handshaking) if (endpointsOf(raw) === key) return raw
    return null
  }

  #contextFor(servername: string): SecureContext | undefined {
    const sni = this.#material.sni
    if (sni.size === 0) return undefined
    const name = servername.toLowerCase()
    const dot = name.indexOf('.')
    // undefined: the listener's own certificate (the one setSecureContext set).
    return sni.get(name) ?? (dot > 0 ? sni.get(`*${name.slice(dot)}`) : undefined)
  }
}

function listenFailure(field: string, message: string): never {
  throw new SocksError('ERR_SOCKS_INVALID_ARGUMENT', `listen: tls${field === '' ? '' : `.${field}`}: ${message}`)
}

/** Both ends of a connection: the same for the TCP socket and the TLSSocket over it. */
function endpointsOf(socket: Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}|${socket.localAddress}|${socket.localPort}`
}

/**
 * `ctx.tls` of a connection on a TLS listener: the negotiated protocol, the name the client asked
 * for, and its certificate when the listener asked for one (verified, since an unverified one
 * fails the handshake).
 */
export function describeTls(socket: TLSSocket): TlsInfo {
  const certificate = socket.authorized ? socket.getPeerCertificate() : null
  const subject = certificate?.subject as Record<string, string | string[]> | undefined
  const cn = subject?.CN
  return Object.freeze({
    protocol: socket.getProtocol() ?? 'unknown',
    servername: typeof (socket as { servername?: unknown }).servername === 'string' ? (socket as unknown as { servername: string }).servername : null,
    authorized: socket.authorized,
    commonName: typeof cn === 'string' ? cn : Array.isArray(cn) ? (cn[0] ?? null) : null,
    altNames: Object.freeze(parseAltNames(certificate?.subjectaltname)),
  })
}

/** Node's `subjectaltname` (`DNS:a.example, email:"x, y"@b`) as `['DNS:a.example', 'email:x, y@b']`. */
export function parseAltNames(text: string | undefined): string[] {
  if (text === undefined || text === '') return []
  const names: string[] = []
  const entry = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/gy
  let match: RegExpExecArray | null
  while ((match = entry.exec(text)) !== null && match[0] !== '') {
    const value = match[2]!.startsWith('"') ? (JSON.parse(match[2]!) as string) : match[2]!
    names.push(`${match[1]}:${value}`)
  }
  return names
}
