/**
 * socksmith: a programmable SOCKS5 server. Every protocol phase is a Koa-style middleware chain.
 * This is the public entry: the server, errors, plugins, config, constants and every public type.
 * Helpers live on subpaths: `socksmith/net` (resolver, dialer, client groups), `socksmith/ops`
 * (loggers, metrics, diagnostics channels), `socksmith/config` (building and reloading servers
 * from config files), `socksmith/protocol` (the codec), `socksmith/client`, `socksmith/plugin-kit`
 * (option checking). Plugins (bundled or third-party) import only from these entry points.
 *
 * @packageDocumentation
 * @module socksmith
 */
export { SocksServer, createServer, DEFAULT_TIMEOUTS } from './core/server.js'
export type { ServerOptions, ListenOptions, ListenerProtocol, Timeouts, SocksServerEvents, RegisterWhere } from './core/server.js'
export type { ListenTlsOptions, ListenTlsIdentity } from './core/tls-listener.js'
export type { ListenHttpOptions } from './commands/http-forward.js'
export type { ProxyProtocolOptions } from './core/proxy-trust.js'
export { SocksError, isSocksError, toSocksError, replyForError, ERROR_CATALOGUE } from './core/errors.js'
export type { SocksErrorCode, SocksErrorOptions } from './core/errors.js'
export { definePlugin, defineMiddleware, PHASES } from './core/plugin.js'
export type { ClientPrefix } from './core/client-group.js'
export type { Plugin, PluginHost, PluginReload, PluginMetric, PluginMetricSample, OptionPath, Phase, PhaseContexts } from './core/plugin.js'
export type { Middleware, Next } from './core/compose.js'
export type {
  SocksState,
  ClientProtocol,
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
export type { DatagramContext, DatagramDirection, UdpAssociation, PipelineSettings, UdpSettings, ServerHandle, TlsInfo } from './core/context.js'
export type { RelaySide, RelayTap } from './commands/relay.js'
export { TokenBucket } from './commands/token-bucket.js'
export type { TokenBucketOptions } from './commands/token-bucket.js'
export type { Resolver, ResolvedAddress, ResolveOptions, LookupOrigin } from './net/resolver.js'
export type { Binder, Dialer, DialOptions } from './net/dialer.js'
export type { Logger, LogLevel, LogLineLevel, PinoLike } from './ops/logger.js'
export type { MetricsOptions, StartMetricsOptions, ServerMetrics, MetricsServer } from './ops/metrics.js'
export type { TypedChannel, ConnectionOpenMessage, ConnectionReplyMessage, ConnectionCloseMessage, UpstreamFailureMessage } from './ops/diagnostics.js'
export { Method, Command, AddressType, Reply, SOCKS_VERSION } from './protocol/constants.js'
export type { CommandName } from './protocol/constants.js'
export type { Address } from './protocol/address.js'
export { createStore } from './store/open.js'
export type { StoreHooks } from './store/open.js'
export type { SharedStore, SubscribeOptions, StoreOptions, MemoryStoreOptions, RedisStoreOptions, CounterUpdate, LeaseRef, LeaseRenewal } from './store/store.js'
export { defineConfig, loadConfig } from './config/load.js'
export type { LoadConfigOptions, CreateServerFromConfigOptions } from './config/load.js'
export type { ReloadOptions, ReloadResult } from './config/reload.js'
// Every config type (SocksmithConfig, ListenConfig, PluginEntry, LoadedConfig, ...).
export type * from './config/types.js'
