// A tiny SOCKS4/4a CONNECT server for tests (loopback only). Dante speaks SOCKS4 but not 4a.
import { createServer, type Socket } from 'node:net'
import { listenForTest, openTunnel } from './tunnel.js'
import type { TestContext } from 'node:test'

export interface Socks4Request {
  /** Dotted DSTIP, or the SOCKS4a name. */
  host: string
  port: number
  userId: string
  /** True when the name came in the SOCKS4a form. */
  socks4a: boolean
}

/** Starts on 127.0.0.1:0; names are looked up in `hosts` (unknown ones get status 91). */
export async function startSocks4Proxy(t: TestContext, hosts: Record<string, string> = {}): Promise<{ port: number; requests: Socks4Request[] }> {
  const sockets = new Set<Socket>()
  const requests: Socks4Request[] = []
  const reply = (status: number): Buffer => Buffer.from([0, status, 0, 0, 0, 0, 0, 0])
  const server = createServer({ allowHalfOpen: true }, (client) => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => {})
    let buf = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk])
      if (buf.length < 9) return
      const userEnd = buf.indexOf(0, 8)
      if (userEnd === -1) return
      const ip = `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`
      const socks4a = buf[4] === 0 && buf[5] === 0 && buf[6] === 0 && buf[7] !== 0
      let end = userEnd + 1
      let host = ip
      if (socks4a) {
        const nameEnd = buf.indexOf(0, end)
        if (nameEnd === -1) return
        host = buf.toString('utf8', end, nameEnd)
        end = nameEnd + 1
      }
      client.off('data', onData)
      client.pause()
      const port = buf.readUInt16BE(2)
      requests.push({ host, port, userId: buf.toString('utf8', 8, userEnd), socks4a })
      if (buf[0] !== 4 || buf[1] !== 1) return void client.end(reply(91))
      const address = socks4a ? hosts[host] : host
      if (address === undefined) return void client.end(reply(91))
      const rest = buf.subarray(end)
      openTunnel(client, address, port, rest, sockets, reply(90), reply(91))
    }
    client.on('data', onData)
  })
  return { port: await listenForTest(t, server, sockets), requests }
}
