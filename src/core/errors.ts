import { Reply } from '../protocol/constants.js'

const kSocksError = Symbol.for('socksmith.SocksError')

interface CatalogueEntry {
  /** Default message. */
  readonly message: string
  /** REP byte sent to the client when a reply is still possible; null means "close without a reply". */
  readonly reply: Reply | null
}

/**
 * Every error code socksmith throws, with its default message and the SOCKS reply it maps to.
 * The error table in docs/protocol.md is checked against this object by a test, both ways.
 */
export const ERROR_CATALOGUE = {
  ERR_SOCKS_BAD_VERSION: { message: 'unsupported SOCKS version', reply: null },
  ERR_SOCKS_NO_METHODS: { message: 'greeting offers no authentication method', reply: null },
  ERR_SOCKS_NO_ACCEPTABLE_METHOD: { message: 'none of the offered authentication methods is acceptable', reply: null },
  ERR_SOCKS_BAD_AUTH_VERSION: { message: 'unsupported username/password sub-negotiation version', reply: null },
  ERR_SOCKS_AUTH_FAILED: { message: 'authentication failed', reply: null },
  ERR_SOCKS_BAD_REQUEST: { message: 'malformed SOCKS request', reply: Reply.GENERAL_FAILURE },
  ERR_SOCKS_MALFORMED: { message: 'malformed SOCKS message', reply: null },
  ERR_SOCKS_COMMAND_NOT_SUPPORTED: { message: 'command not supported', reply: Reply.COMMAND_NOT_SUPPORTED },
  ERR_SOCKS_ADDRESS_TYPE_NOT_SUPPORTED: { message: 'address type not supported', reply: Reply.ADDRESS_TYPE_NOT_SUPPORTED },
  ERR_SOCKS_BAD_ADDRESS: { message: 'invalid destination address', reply: Reply.HOST_UNREACHABLE },
  ERR_SOCKS_NOT_ALLOWED: { message: 'connection not allowed by ruleset', reply: Reply.NOT_ALLOWED },
  ERR_SOCKS_NETWORK_UNREACHABLE: { message: 'network unreachable', reply: Reply.NETWORK_UNREACHABLE },
  ERR_SOCKS_HOST_UNREACHABLE: { message: 'host unreachable', reply: Reply.HOST_UNREACHABLE },
  ERR_SOCKS_CONNECTION_REFUSED: { message: 'connection refused', reply: Reply.CONNECTION_REFUSED },
  ERR_SOCKS_CONNECT_TIMEOUT: { message: 'connect timed out', reply: Reply.TTL_EXPIRED },
  ERR_SOCKS_CONNECT_FAILED: { message: 'connect failed', reply: Reply.GENERAL_FAILURE },
  ERR_SOCKS_BIND_TIMEOUT: { message: 'no inbound connection arrived for BIND in time', reply: Reply.TTL_EXPIRED },
  ERR_SOCKS_HANDSHAKE_TIMEOUT: { message: 'handshake not completed in time', reply: null },
  ERR_SOCKS_HANDSHAKE_TOO_LARGE: { message: 'handshake message exceeds the size limit', reply: null },
  ERR_SOCKS_IDLE_TIMEOUT: { message: 'connection idle for too long', reply: null },
  ERR_SOCKS_CLOSED: { message: 'connection closed by a middleware', reply: null },
  ERR_SOCKS_CLIENT_CLOSED: { message: 'client closed the connection', reply: null },
  ERR_SOCKS_PROXY_HEADER: { message: 'missing or malformed PROXY protocol header', reply: null },
  ERR_SOCKS_SERVER_CLOSING: { message: 'server is shutting down', reply: Reply.GENERAL_FAILURE },
  ERR_SOCKS_TOO_MANY_CONNECTIONS: { message: 'connection limit reached', reply: null },
  ERR_SOCKS_OPEN_PROXY: {
    message: 'refusing to listen without authentication on a non-loopback address; register the auth plugin or set allowOpenProxy: true',
    reply: null,
  },
  ERR_SOCKS_LISTEN: { message: 'cannot listen on the address', reply: null },
  ERR_SOCKS_REGISTER_AFTER_START: { message: 'middleware and plugins must be registered before listen()', reply: null },
  ERR_SOCKS_INVALID_ARGUMENT: { message: 'invalid argument', reply: null },
  ERR_SOCKS_REPLY: { message: 'SOCKS server replied with a failure', reply: Reply.GENERAL_FAILURE },
  ERR_SOCKS_PROXY_FAILED: { message: 'upstream proxy failed', reply: Reply.GENERAL_FAILURE },
  ERR_SOCKS_STORE: { message: 'the shared store did not answer', reply: Reply.GENERAL_FAILURE },
  ERR_PLUGIN_INVALID: { message: 'not a socksmith plugin', reply: null },
  ERR_PLUGIN_DUPLICATE: { message: 'plugin registered twice', reply: null },
  ERR_PLUGIN_DEPENDENCY: { message: 'plugin dependency is not registered before it', reply: null },
  ERR_PLUGIN_OPTIONS: { message: 'invalid plugin options', reply: null },
  ERR_PLUGIN_NOT_FOUND: { message: 'plugin module not found', reply: null },
  ERR_PLUGIN_SETUP: { message: "a plugin's setup failed", reply: null },
  ERR_CONFIG_NOT_FOUND: { message: 'config file not found', reply: null },
  ERR_CONFIG_INVALID: { message: 'invalid config', reply: null },
} as const satisfies Record<string, CatalogueEntry>

/** Every stable error code, the keys of `ERROR_CATALOGUE`. */
export type SocksErrorCode = keyof typeof ERROR_CATALOGUE

/** The third argument of `new SocksError(code, message, options)`. */
export interface SocksErrorOptions {
  /** Overrides the catalogue's reply code. */
  reply?: Reply | null
  cause?: unknown
  /**
   * Why, as a short label for logs and metrics (the access log's `reason`), such as
   * `limits:maxConnections`; `ctx.close(reason)` sets it.
   */
  reason?: string | null
}

/**
 * The one error type of socksmith. `code` is stable (see the error table in docs/protocol.md); `reply` is the
 * REP byte sent to the client when the phase can still answer.
 *
 * @example
 * throw new SocksError('ERR_SOCKS_NOT_ALLOWED', `port ${ctx.destination.port} is closed`)
 */
export class SocksError extends Error {
  override readonly name = 'SocksError'
  readonly code: SocksErrorCode
  readonly reply: Reply | null
  /** Why, as a short label (see `SocksErrorOptions.reason`); null when not given. */
  readonly reason: string | null

  constructor(code: SocksErrorCode, message?: string, options: SocksErrorOptions = {}) {
    const entry: CatalogueEntry = ERROR_CATALOGUE[code]
    super(message ?? entry.message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.reply = options.reply === undefined ? entry.reply : options.reply
    this.reason = options.reason ?? null
  }

  /** Recognises SocksErrors from any copy of socksmith (the brand is a registered symbol). */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return isSocksError(value)
  }
}
Object.defineProperty(SocksError.prototype, kSocksError, { value: true })

/** True for a SocksError thrown by any copy of socksmith. */
export function isSocksError(value: unknown): value is SocksError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[kSocksError] === true
}

// System errors are classified by err.code, never by message text.
const ERRNO_TO_CODE: Readonly<Record<string, SocksErrorCode>> = {
  ECONNREFUSED: 'ERR_SOCKS_CONNECTION_REFUSED',
  ENETUNREACH: 'ERR_SOCKS_NETWORK_UNREACHABLE',
  ENETDOWN: 'ERR_SOCKS_NETWORK_UNREACHABLE',
  EHOSTUNREACH: 'ERR_SOCKS_HOST_UNREACHABLE',
  EHOSTDOWN: 'ERR_SOCKS_HOST_UNREACHABLE',
  ENOTFOUND: 'ERR_SOCKS_HOST_UNREACHABLE',
  ENODATA: 'ERR_SOCKS_HOST_UNREACHABLE',
  ESERVFAIL: 'ERR_SOCKS_HOST_UNREACHABLE',
  ETIMEDOUT: 'ERR_SOCKS_CONNECT_TIMEOUT',
  ETIMEOUT: 'ERR_SOCKS_CONNECT_TIMEOUT',
  EACCES: 'ERR_SOCKS_NOT_ALLOWED',
  EPERM: 'ERR_SOCKS_NOT_ALLOWED',
}

/**
 * Turns any error met while connecting into a SocksError with the right reply code.
 * A SocksError passes through unchanged.
 */
export function toSocksError(err: unknown): SocksError {
  if (isSocksError(err)) return err
  const errno = errnoOf(err)
  let code: SocksErrorCode | undefined = errno === undefined ? undefined : ERRNO_TO_CODE[errno]
  if (code === undefined && errno !== undefined && errno.startsWith('EAI_')) code = 'ERR_SOCKS_HOST_UNREACHABLE'
  const message = err instanceof Error ? err.message : String(err)
  return new SocksError(code ?? 'ERR_SOCKS_CONNECT_FAILED', message, { cause: err })
}

/** The REP byte for an error met while connecting. */
export function replyForError(err: unknown): Reply {
  return toSocksError(err).reply ?? Reply.GENERAL_FAILURE
}

function errnoOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string') return code
  // Happy eyeballs fails with an AggregateError; the first attempt's errno is the meaningful one.
  const errors = (err as { errors?: unknown }).errors
  if (Array.isArray(errors) && errors.length > 0) return errnoOf(errors[0])
  return undefined
}
