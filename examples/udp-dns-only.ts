// A datagram middleware: UDP ASSOCIATE may carry DNS queries and their answers, nothing else.
// The `datagram` chain runs once per UDP packet, in both directions; `ctx.drop()` drops that
// packet and the association lives on.
//
//   npm run build && npx tsx examples/udp-dns-only.ts [port]
import { createServer, type DatagramContext, type Next } from 'socksmith'
import { silentLogger } from 'socksmith/ops'

const port = Number(process.argv[2] ?? process.env.PORT ?? 1080)
// Port 53 in real life; the test runs its own "DNS server" on a free port and says so here.
const dnsPort = Number(process.env.DNS_PORT ?? 53)

/** A DNS query header (RFC 1035 §4.1.1): QR = 0 (query), opcode 0, at least one question. */
function looksLikeDnsQuery(data: Buffer): boolean {
  if (data.length < 12) return false
  const flags = data.readUInt16BE(2)
  const isQuery = (flags & 0x8000) === 0
  const opcode = (flags >> 11) & 0x0f
  const questions = data.readUInt16BE(4)
  return isQuery && opcode === 0 && questions >= 1
}

async function onlyDns(ctx: DatagramContext, next: Next): Promise<void> {
  // `peer` is the destination of an outgoing datagram, the sender of an incoming one.
  if (ctx.peer.port !== dnsPort || (ctx.direction === 'out' && !looksLikeDnsQuery(ctx.data))) {
    ctx.drop()
    return
  }
  await next()
}

const server = createServer({ logger: silentLogger })
server.use('datagram', onlyDns)

const address = await server.listen({ host: '127.0.0.1', port })
console.log(`listening on ${address.address}:${address.port}`)
process.once('SIGTERM', () => void server.close().then(() => process.exit(0)))
