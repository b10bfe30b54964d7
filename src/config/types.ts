import type { Middleware } from '../core/compose.js'
import type { LogLevel } from '../ops/logger.js'
import type { Phase, PhaseContexts, Plugin } from '../core/plugin.js'
import type { Timeouts } from '../core/server.js'
import type { ClientPrefix } from '../core/client-group.js'
import type { StoreOptions } from '../store/store.js'
import type { ListenTlsOptions } from '../core/tls-listener.js'

/** Milliseconds, or a string with a unit: `"250ms"`, `"30s"`, `"5m"`, `"1h"`. */
export type Duration = number | string

/** One listener. */
export interface ListenConfig {
  /** Default `127.0.0.1`. Use `::1` or `::` for IPv6. */
  host?: string
  /** Default 1080; 0 picks a free port. */
  port?: number
  /** For an IPv6 host such as `::`: accept IPv6 only. */
  ipv6Only?: boolean
  backlog?: number
  /**
   * Expect a PROXY protocol (v1/v2) header from a load balancer before the greeting. Only the
   * balancers may connect: `{ trusted: [CIDRs] }` lists them; `true` is loopback only.
   */
  proxyProtocol?: boolean | { trusted: string[] }
  /** The protocols clients may speak here: `socks5` (default), `socks4` (SOCKS4/4a), `http` (CONNECT and plain `http://` requests), or `mixed` (all three). */
  protocols?: ('socks5' | 'socks4' | 'http' | 'mixed') | ('socks5' | 'socks4' | 'http' | 'mixed')[]
  /**
   * On an `http`/`mixed` listener, what forwarded plain requests get added: `via: true | "<name>"`
   * (a `Via: 1.1 <name>` line on requests and responses; true names it `socksmith`) and
   * `forwardedFor: true` (the client's address appended to `X-Forwarded-For`). Default: neither.
   */
  http?: { via?: boolean | string; forwardedFor?: boolean }
  /**
   * Speak TLS (an HTTPS proxy on `http`/`mixed`, SOCKS over TLS on `socks5`): `{ cert, key, ca?,
   * requestCert?, sni? }`, file paths relative to the config file, read at start and at every
   * reload (SIGHUP), which gives new connections a changed certificate.
   */
  tls?: ListenTlsOptions
}

/**
 * Plain middleware put inline in a JS/TS config: it becomes a tiny plugin named `name` (default
 * `inline-<phase>-<index>`).
 */
export type InlineMiddleware = {
  [P in Phase]: {
    phase: P
    middleware: Middleware<PhaseContexts[P]> | Middleware<PhaseContexts[P]>[]
    name?: string
  }
}[Phase]

// Plugin<any>: a config lists plugins of every option type side by side.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyPlugin = Plugin<any>

/**
 * One entry of `plugins`. Files (YAML, JSON) use the first two forms; JS/TS configs may also put a
 * plugin object (with or without options) or inline middleware.
 */
export type PluginEntry =
  | string
  | readonly [name: string, options?: unknown]
  | AnyPlugin
  | readonly [plugin: AnyPlugin, options?: unknown]
  | InlineMiddleware

/** What a config file (or `defineConfig()`) describes. Every key is optional. */
export interface SocksmithConfig {
  /** One listener or several. Default `{ host: '127.0.0.1', port: 1080 }`. */
  listen?: ListenConfig | ListenConfig[]
  limits?: {
    /** Live connections over all listeners. Default 10000. */
    maxConnections?: number
    /** Live connections from one client. Default 0 (no limit). */
    perClient?: number
    /**
     * What one client is, for `perClient`, the UDP association limit and the `auth` throttle:
     * addresses sharing this many leading bits. Default `{ ipv4: 32, ipv6: 64 }`.
     */
    clientPrefix?: Partial<ClientPrefix>
  }
  timeouts?: { [K in keyof Timeouts]?: Duration }
  log?: {
    /** Default `info`. */
    level?: LogLevel
    /** One `info` line per connection when it ends. Default true. */
    access?: boolean
  }
  /** Prometheus metrics on an HTTP listener of their own (`GET /metrics`). Default: none. */
  metrics?: MetricsConfig
  /** Allow listening on a non-loopback address without authentication. Default false. */
  allowOpenProxy?: boolean
  udp?: {
    /** Accept inbound datagrams from peers the client never sent to. Default false. */
    acceptFromAnyPeer?: boolean
    /** Datagrams queued per UDP socket before new ones are dropped. Default 1024. */
    maxSendQueue?: number
    /** Live UDP associations per client (see `limits.clientPrefix`); more are refused with REP 02. Default 64. */
    maxAssociationsPerClient?: number
  }
  /**
   * Where plugins keep shared state (`host.store`). Default `{ type: memory }`: this process, or
   * under `--workers` the primary, shared by every worker. `{ type: redis, url }` shares it with
   * every node using that Redis/Valkey and `prefix` (default `socksmith:`). A change takes a
   * restart.
   */
  store?: StoreConfig
  /** Ordered: the order of the list is the order of the middleware. */
  plugins?: PluginEntry[]
}

/** `store`: as the server's `store` option, with `timeout` also a duration (`"500ms"`, `"2s"`). */
export type StoreConfig =
  | { type: 'memory'; timeout?: Duration }
  | { type: 'redis'; url: string; prefix?: string; timeout?: Duration }

/** `metrics`: where the Prometheus endpoint listens. */
export interface MetricsConfig {
  /** Default `127.0.0.1`. */
  host?: string
  /** 0 picks a free port. */
  port: number
  /**
   * Per-user counters (labelled by user name) for the first `maxUsers` users (default 100; `true`
   * means that default); later users are counted as `user="other"`. Default false.
   */
  perUser?: boolean | { maxUsers?: number }
}

/** `metrics` with its defaults filled in. */
export interface EffectiveMetrics {
  host: string
  port: number
  perUser: false | { maxUsers: number }
}

/** A plugin entry after its module was found and loaded. */
export interface LoadedPlugin {
  /** Position in `plugins`. */
  readonly index: number
  /** `plugins[1] (rules)`: how errors name the entry. */
  readonly label: string
  /** Where the plugin came from: `bundled`, `inline`, a file path or a package name. */
  readonly source: string
  readonly plugin: Plugin<unknown>
  /** Options as written in the config; the plugin's parseOptions validates them. */
  readonly options: unknown
}

/** One listener of the effective config, with its defaults filled in. */
export interface EffectiveListen {
  host: string
  port: number
  ipv6Only?: boolean
  backlog?: number
  /** false, or the sources trusted to send the header (`true` in the config is the loopback list). */
  proxyProtocol?: false | { trusted: string[] }
  protocols?: ('socks5' | 'socks4' | 'http' | 'mixed')[]
  /** What the HTTP proxy adds to forwarded messages (`via` as the name it carries, or false). */
  http?: { via: string | false; forwardedFor: boolean }
  /** The TLS files, their paths absolute. */
  tls?: ListenTlsOptions
}

/** The configuration with every default filled in, as `socksmith --print-config` shows it. */
export interface EffectiveConfig {
  listen: EffectiveListen[]
  limits: { maxConnections: number; perClient: number; clientPrefix: ClientPrefix }
  timeouts: Timeouts
  log: { level: LogLevel; access: boolean }
  /** Null when no metrics listener is configured. */
  metrics: EffectiveMetrics | null
  allowOpenProxy: boolean
  udp: { acceptFromAnyPeer: boolean; maxSendQueue: number; maxAssociationsPerClient: number }
  store: StoreOptions
  plugins: LoadedPlugin[]
}

/** What loadConfig() returns. */
export interface LoadedConfig {
  /** The config file, or null when none was found (defaults only). */
  readonly filepath: string | null
  /** How messages name the file: relative to the working directory when inside it. */
  readonly displayName: string
  readonly config: EffectiveConfig
}
