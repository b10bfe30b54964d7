/**
 * socksmith: a programmable SOCKS5 server. Every protocol phase is a Koa-style middleware chain.
 * This is the public entry; plugins (bundled or third-party) import only from here.
 */
export { SocksServer, createServer, DEFAULT_TIMEOUTS, isLoopback } from './core/server.js'
export type { ServerOptions, ListenOptions, Timeouts, SocksServerEvents, RegisterWhere } from './core/server.js'
export type { ProxyProtocolOptions } from './core/proxy-trust.js'
export { SocksError, isSocksError, toSocksError, replyForError, ERROR_CATALOGUE } from './core/errors.js'
export type { SocksErrorCode, SocksErrorOptions } from './core/errors.js'
export { definePlugin, defineMiddleware, PHASES } from './core/plugin.js'
export { clientGroup, DEFAULT_CLIENT_PREFIX } from './core/client-group.js'
export type { ClientPrefix } from './core/client-group.js'
export type { Plugin, PluginHost, PluginReload, OptionPath, Phase, PhaseContexts } from './core/plugin.js'
export type { Middleware, Next } from './core/compose.js'
export type {
  SocksState,
  Endpoint,
  Credentials,
  BaseContext,
  NegotiateContext,
  AuthContext,
  RequestContext,
  ConnectContext,
  RelayContext,
  ConnectionContext,
} from './core/context.js'
export type { MessageParser } from './protocol/reader.js'
export type { DatagramContext, DatagramDirection, UdpAssociation, PipelineSettings, UdpSettings, ServerHandle } from './core/context.js'
export { systemResolver } from './net/resolver.js'
export type { Resolver, ResolvedAddress, ResolveOptions, LookupOrigin } from './net/resolver.js'
export { directDialer, dialTcp } from './net/dialer.js'
export type { Binder, Dialer, DialOptions } from './net/dialer.js'
export { createLogger, silentLogger, fromPino, isLogLevelEnabled } from './ops/logger.js'
export type { Logger, LogLevel, LogLineLevel, PinoLike } from './ops/logger.js'
export { accessFields } from './ops/access-log.js'
export { startMetrics, collectMetrics } from './ops/metrics.js'
export type { MetricsOptions, StartMetricsOptions, ServerMetrics, MetricsServer } from './ops/metrics.js'
export { channels } from './ops/diagnostics.js'
export type { TypedChannel, ConnectionOpenMessage, ConnectionReplyMessage, ConnectionCloseMessage, UpstreamFailureMessage } from './ops/diagnostics.js'
export { Method, Command, AddressType, Reply, SOCKS_VERSION } from './protocol/constants.js'
export type { CommandName } from './protocol/constants.js'
export { toAddress, formatAddress } from './protocol/address.js'
export type { Address } from './protocol/address.js'
export { defineConfig, loadConfig, createServerFromConfig, prepareServer, SEARCH_PLACES } from './config/load.js'
export type { LoadConfigOptions, CreateServerFromConfigOptions } from './config/load.js'
export { BUNDLED_PLUGINS } from './config/resolve-plugin.js'
export { reloadFromConfig } from './config/reload.js'
export type { ReloadOptions, ReloadResult } from './config/reload.js'
export { parseDuration } from './config/validate.js'
export type {
  SocksmithConfig,
  ListenConfig,
  Duration,
  PluginEntry,
  InlineMiddleware,
  LoadedPlugin,
  LoadedConfig,
  EffectiveConfig,
  EffectiveListen,
  MetricsConfig,
  EffectiveMetrics,
} from './config/types.js'
