// An upstream chain: every CONNECT goes through the proxies in UPSTREAM, in order (the first is
// reached directly, each next one through the previous one's tunnel, the last dials the
// destination). Any of socks5://, socks5h://, socks4://, socks4a://, http:// can be a hop.
//
//   npm run build && UPSTREAM=socks5://127.0.0.1:1081,socks5h://127.0.0.1:1082 npx tsx examples/upstream-chain.ts [port]
import { createServer } from 'socksmith'
import { silentLogger } from 'socksmith/ops'
import upstream from 'socksmith/plugins/upstream'

const port = Number(process.argv[2] ?? process.env.PORT ?? 1080)
const chain = (process.env.UPSTREAM ?? 'socks5://127.0.0.1:1081').split(',').map((url) => url.trim())

const server = createServer({ logger: silentLogger })
// Options are checked here, not at the first connection: a bad URL fails at start-up, naming
// the field (`plugin upstream: chain[1]: unsupported scheme "ftp:" ...`).
server.register(upstream, { chain })

const address = await server.listen({ host: '127.0.0.1', port })
console.log(`listening on ${address.address}:${address.port} via ${chain.map((url) => url.replace(/\/\/[^@/]*@/, '//***@')).join(' -> ')}`)
process.once('SIGTERM', () => void server.close().then(() => process.exit(0)))
