// The common half of the tiny test proxies (HTTP CONNECT, SOCKS4): once a request is parsed,
// dial the target, answer, and pipe both ways.
import { connect, type AddressInfo, type Server, type Socket } from 'node:net'
import { once } from 'node:events'
import type { TestContext } from 'node:test'

/**
 * Connects to host:port for `client`; on success writes `success`, sends the bytes the client
 * pipelined behind its request, and pipes both ways; on failure ends the client with `failure`.
 * Every socket opened is kept in `sockets` until it closes.
 */
export function openTunnel(client: Socket, host: string, port: number, early: Buffer, sockets: Set<Socket>, success: string | Buffer, failure: string | Buffer): void {
  const out = connect({ host, port, allowHalfOpen: true })
  sockets.add(out)
  out.on('close', () => sockets.delete(out))
  out.once('error', () => {
    if (!client.destroyed) client.end(failure)
  })
  out.once('connect', () => {
    out.on('error', () => client.destroy())
    client.write(success)
    if (early.length > 0) out.write(early)
    client.pipe(out)
    out.pipe(client)
    client.resume()
  })
}

/** Listens on 127.0.0.1:0; after the test the server closes and every tracked socket is destroyed. Resolves with the port. */
export async function listenForTest(t: TestContext, server: Server, sockets: Set<Socket>): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => {
    for (const socket of sockets) socket.destroy()
    server.close()
  })
  return (server.address() as AddressInfo).port
}
