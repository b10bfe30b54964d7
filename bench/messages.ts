/** IPC between the orchestrator (run.ts) and its helper processes (targets.ts, loadgen.ts). */

export interface TargetPorts {
  /** TCP: reads an 8-byte big-endian size, then sends that many bytes. */
  source: number
  /** TCP: reads an 8-byte big-endian size, then that many bytes, then answers the 8-byte count. */
  sink: number
  /** TCP: echoes everything (held connections). */
  echo: number
  /**
   * TCP: echoes the first ECHO_BYTES bytes, then closes (handshake rate and latency). It closes
   * first, so the TIME_WAIT entry stays on its side (see targets.ts).
   */
  echoClose: number
  /** Whether echoClose also listens on [::1] with the same port (for names that resolve to ::1 too). */
  echoCloseV6: boolean
  /** UDP: echoes every datagram to its sender. */
  udpEcho: number
}

/** How a load generator reaches a target: straight (direct baseline) or through a SOCKS5 proxy. */
export interface Route {
  /** null: connect to the target itself. */
  proxy: { host: string; port: number } | null
  /** RFC 1929 credentials, when the proxy requires them. */
  auth: { username: string; password: string } | null
  /** The name the proxy resolves to 127.0.0.1 (domain-destination handshakes). */
  domain: string
}

export type LoadCommand =
  | { id: number; type: 'download'; route: Route; port: number; streams: number; bytesPerStream: number }
  | { id: number; type: 'upload'; route: Route; port: number; streams: number; bytesPerStream: number }
  | { id: number; type: 'handshakes'; route: Route; port: number; concurrency: number; durationMs: number; destination: 'ip' | 'domain' }
  | { id: number; type: 'latency'; route: Route; port: number; durationMs: number; destination: 'ip' | 'domain' }
  | { id: number; type: 'udp'; route: Route; port: number; durationMs: number; window: number; payload: number }
  | { id: number; type: 'hold'; route: Route; port: number; count: number; concurrency: number }
  | { id: number; type: 'release' }
  | { id: number; type: 'exit' }

/** Bytes a handshake-test client sends after the success reply and waits to get back before closing. */
export const ECHO_BYTES = 32

/** The answer to 'latency': handshake + echo + close, one connection at a time. */
export interface LatencyResult extends LoadResult {
  p50Ms: number
  p99Ms: number
}

export interface LoadResult {
  id: number
  /** Bytes moved, handshakes done, datagrams echoed or connections held: the unit depends on the command. */
  count: number
  errors: number
  firstError: string | null
  /** Milliseconds from the first byte to the last (streams), or the measured window. */
  elapsedMs: number
}
