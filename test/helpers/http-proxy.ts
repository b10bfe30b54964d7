// A tiny HTTP CONNECT proxy for tests (loopback only): just enough of RFC 9110 §9.3.6 to be a real peer.
// With `tls` it is an HTTPS proxy: TLS to the proxy, CONNECT inside (what `https://` upstreams are).
import { createServer, type Socket } from 'node:net'
import { createServer as createTlsServer, type TLSSocket, type TlsOptions } from 'node:tls'
import { listenForTest, openTunnel } from './tunnel.js'
import type { TestContext } from 'node:test'

export interface HttpProxyOptions {
  /** When set, CONNECT needs `Proxy-Authorization: Basic` with these credentials, else 407. */
  username?: string
  password?: string
  /** Maps names in the request target to IPs; unknown names get 502. IP literals are dialled as they are. */
  hosts?: Record<string, string>
  /** Key, certificate and the rest for `tls.createServer`: the proxy is then reached over TLS. */
  tls?: TlsOptions
}

export interface StartedHttpProxy {
  port: number
  /** Request targets of every CONNECT, as sent (`host:port`). */
  requests: string[]
  /** Decoded `user:pass` of every Proxy-Authorization header seen. */
  credentials: string[]
  accepted: () => number
  /** With `tls`: the subject CN of each client certificate presented (null when none was). */
  clientNames: (string | null)[]
}

/** Starts the proxy on 127.0.0.1:0; it and its sockets are closed after the test. */
export async function startHttpProxy(t: TestContext, options: HttpProxyOptions = {}): Promise<StartedHttpProxy> {
  const sockets = new Set<Socket>()
  const requests: string[] = []
  const credentials: string[] = []
  const clientNames: (string | null)[] = []
  let accepted = 0
  const onClient = (client: Socket): void => {
    accepted++
    if (options.tls !== undefined) clientNames.push(clientName(client as TLSSocket))
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => {})
    let head = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk])
      const end = head.indexOf('\r\n\r\n')
      if (end === -1) return
      client.off('data', onData)
      client.pause()
      const rest = head.subarray(end + 4)
      const lines = head.subarray(0, end).toString('latin1').split('\r\n')
      const match = /^CONNECT (\S+) HTTP\/1\.[01]$/.exec(lines[0]!)
      if (match === null) return void client.end('HTTP/1.1 405 Method Not Allowed\r\n\r\n')
      const target = match[1]!
      requests.push(target)
      const auth = lines.find((line) => /^proxy-authorization:/i.test(line))
      const basic = auth === undefined ? null : /^proxy-authorization:\s*basic\s+(\S+)$/i.exec(auth)
      const given = basic === null ? null : Buffer.from(basic[1]!, 'base64').toString('utf8')
      if (given !== null) credentials.push(given)
      if (options.username !== undefined && given !== `${options.username}:${options.password ?? ''}`) {
        return void client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n')
      }
      const split = /^\[?([^\]]+)\]?:(\d+)$/.exec(target)
      if (split === null) return void client.end('HTTP/1.1 400 Bad Request\r\n\r\n')
      const host = options.hosts?.[split[1]!] ?? split[1]!
      if (!/^[\d.:a-f]+$/i.test(host)) return void client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n')
      openTunnel(client, host, Number(split[2]), rest, sockets, 'HTTP/1.1 200 Connection Established\r\n\r\n', 'HTTP/1.1 502 Bad Gateway\r\n\r\n')
    }
    client.on('data', onData)
  }
  // A TLS proxy counts only clients that finished the handshake; refused ones never get this far.
  const server = options.tls === undefined ? createServer({ allowHalfOpen: true }, onClient) : createTlsServer({ allowHalfOpen: true, ...options.tls }, onClient)
  if (options.tls !== undefined) server.on('tlsClientError', () => {})
  return { port: await listenForTest(t, server, sockets), requests, credentials, accepted: () => accepted, clientNames }
}

/** The CN of a TLS client's certificate, or null without one. */
export function clientName(socket: TLSSocket): string | null {
  const cn = socket.getPeerCertificate().subject?.CN
  return typeof cn === 'string' ? cn : null
}
