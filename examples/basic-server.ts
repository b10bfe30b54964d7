// The smallest socksmith program: a SOCKS5 proxy on loopback with the default pipeline
// (NO AUTH, CONNECT/BIND/UDP ASSOCIATE, direct dialling).
//
//   npm run build && npx tsx examples/basic-server.ts [port]
//   curl --socks5-hostname 127.0.0.1:1080 http://example.com/
import { createServer } from 'socksmith'

const port = Number(process.argv[2] ?? process.env.PORT ?? 1080)

const server = createServer({
  // Every wait has a bound; these are the defaults spelled out, in milliseconds.
  timeouts: { handshake: 10_000, connect: 10_000, idle: 3_600_000 },
  logLevel: 'info',
})

const address = await server.listen({ host: '127.0.0.1', port })
console.log(`listening on ${address.address}:${address.port}`)

// SIGINT/SIGTERM: stop accepting, let live connections finish (up to timeouts.drain), then exit.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void server.close().then(() => process.exit(0))
  })
}
