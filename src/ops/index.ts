/**
 * Running socksmith: loggers, the access log's fields, Prometheus metrics and diagnostics
 * channels. Exported as `socksmith/ops`.
 *
 * @packageDocumentation
 * @module socksmith/ops
 */
export { createLogger, silentLogger, fromPino, isLogLevelEnabled } from './logger.js'
export type { Logger, LogLevel, LogLineLevel, PinoLike } from './logger.js'
export { accessFields } from './access-log.js'
export { startMetrics, collectMetrics } from './metrics.js'
export type { MetricsOptions, StartMetricsOptions, ServerMetrics, MetricsServer } from './metrics.js'
export { channels } from './diagnostics.js'
export type { TypedChannel, ConnectionOpenMessage, ConnectionReplyMessage, ConnectionCloseMessage, UpstreamFailureMessage } from './diagnostics.js'
