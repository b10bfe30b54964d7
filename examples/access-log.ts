// A custom middleware: an access log with bytes and duration, one JSON line per connection.
//
// The relay phase runs *around* the data transfer: code before `next()` runs when the relay
// starts, code after it once both directions are closed, when the byte counts are final.
//
//   npm run build && npx tsx examples/access-log.ts [port]
import { createServer, type RelayContext, type Next } from 'socksmith'
import { formatAddress } from 'socksmith/protocol'
import { silentLogger } from 'socksmith/ops'

const port = Number(process.argv[2] ?? process.env.PORT ?? 1080)

/**
 * A factory, as socksmith's own middleware are written: options are checked once here, and the
 * returned function has a name, so stack traces and logs show `accessLog`.
 */
function createAccessLog(write: (line: string) => void) {
  return async function accessLog(ctx: RelayContext, next: Next): Promise<void> {
    const started = performance.now()
    try {
      await next()
    } finally {
      // `finally`: a relay that ends with an error (idle timeout, reset) is logged too.
      write(
        JSON.stringify({
          id: ctx.id,
          client: `${ctx.client.address}:${ctx.client.port}`,
          user: ctx.user,
          command: ctx.commandName,
          destination: formatAddress(ctx.destination),
          dialed: ctx.dialed === null ? null : formatAddress(ctx.dialed),
          up: ctx.bytesFromClient,
          down: ctx.bytesToClient,
          ms: Math.round(performance.now() - started),
        }),
      )
    }
  }
}

const server = createServer({ logger: silentLogger })
server.use('relay', createAccessLog((line) => console.log(line)))

const address = await server.listen({ host: '127.0.0.1', port })
console.log(`listening on ${address.address}:${address.port}`)
process.once('SIGTERM', () => void server.close().then(() => process.exit(0)))
