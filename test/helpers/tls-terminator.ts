// A TLS front for a plain TCP server in tests: what a SOCKS5-over-TLS proxy (socks5s://) looks
// like from outside. socksmith's server takes no external sockets, so the test puts this in front
// of a plain socksmith: each decrypted connection is piped to it, half-closes passed on.
import { connect, type Socket } from 'node:net'
import { createServer, type TLSSocket, type TlsOptions } from 'node:tls'
import type { TestContext } from 'node:test'
import { clientName } from './http-proxy.js'
import { listenForTest } from './tunnel.js'

export interface StartedTlsTerminator {
  port: number
  /** The subject CN of each client certificate presented, per connection that finished the handshake (null: none). */
  clientNames: (string | null)[]
  /** Handshakes that failed (a client that distrusted us, or one we refused). */
  tlsErrors: () => number
}

/**
 * Listens for TLS on 127.0.0.1:0 with `tls` (key, cert; `requestCert` + `ca` for mutual TLS) and
 * pipes every connection to 127.0.0.1:`targetPort`. Closed, with its sockets, after the test.
 */
export async function startTlsTerminator(t: TestContext, targetPort: number, tls: TlsOptions): Promise<StartedTlsTerminator> {
  const sockets = new Set<Socket>()
  const clientNames: (string | null)[] = []
  let tlsErrors = 0
  const server = createServer({ allowHalfOpen: true, ...tls }, (client: TLSSocket) => {
    clientNames.push(clientName(client))
    const out = connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true })
    for (const socket of [client, out]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
    }
    client.on('error', () => out.destroy())
    out.on('error', () => client.destroy())
    client.on('close', () => out.destroy())
    out.on('close', () => client.destroy())
    client.pipe(out)
    out.pipe(client)
  })
  server.on('tlsClientError', () => tlsErrors++)
  return { port: await listenForTest(t, server, sockets), clientNames, tlsErrors: () => tlsErrors }
}
