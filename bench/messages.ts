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
  /**
   * TCP: a minimal HTTP/1.1 origin: answers every request head (GET, no body) with 200 and a body of
   * HTTP_BODY_BYTES, keep-alive (the plain-HTTP forwarding rows).
   */
  httpOrigin: number
}

/** How a load generator reaches a target: straight (direct baseline) or through a proxy. */
export interface Route {
  /** null: connect to the target itself. */
  proxy: { host: string; port: number } | null
  /**
   * How the proxy is asked for a tunnel: a SOCKS5 CONNECT, or an HTTP CONNECT (`http`). The plain
   * HTTP requests of the forwarding rows are always HTTP.
   */
  protocol: 'socks5' | 'http'
  /** Credentials, when the proxy requires them: RFC 1929 for SOCKS5, `Proxy-Authorization: Basic` for HTTP. */
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
  | { id: number; type: 'requests'; route: Route; port: number; concurrency: number; durationMs: number }
  | { id: number; type: 'release' }
  | { id: number; type: 'exit' }

/** Bytes a handshake-test client sends after the success reply and waits to get back before closing. */
export const ECHO_BYTES = 32

/** Body bytes of every response of the HTTP origin (the plain-HTTP forwarding rows). */
export const HTTP_BODY_BYTES = 64

/** The answer to 'requests': keep-alive GETs through the proxy (or straight to the origin). */
export interface RequestsResult extends LoadResult {
  /** Responses in all, also those that came after the window. */
  total: number
  /** TCP connections the clients opened (keep-alive: about `concurrency` when the proxy keeps them). */
  connections: number
  /** The first status that was not 2xx, or null: a server that answers so does not forward (the loop stops). */
  badStatus: number | null
}

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
