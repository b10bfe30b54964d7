// A per-user quota: each user may move QUOTA_BYTES bytes (both directions together) in total.
// Shows a plugin with validated options, per-connection state typed by declaration merging,
// a check in the `request` phase and live byte counting in the `relay` phase. (The bundled
// `limits` plugin does this from a config file, shared over --workers and a fleet.)
//
//   npm run build && QUOTA_BYTES=1000000 npx tsx examples/user-quota.ts [port]
//   curl --socks5-hostname alice:wonderland@127.0.0.1:1080 http://example.com/
import { createServer, definePlugin, SocksError, type OptionPath, type RelayContext } from 'socksmith'
import { silentLogger } from 'socksmith/ops'
import auth from 'socksmith/plugins/auth'

// Per-connection data lives in ctx.state. Declaring its type here, and its initial value at
// setup (declareState), gives every connection's state the same shape.
declare module 'socksmith' {
  interface SocksState {
    /** Bytes this connection has counted against its user's quota. */
    quotaCounted: number
  }
}

interface QuotaOptions {
  bytesPerUser: number
}

const quota = definePlugin<QuotaOptions>({
  name: 'user-quota',
  // Auth must run first: the quota is per ctx.user.
  dependencies: ['auth'],
  // `at: OptionPath` spelled out: TypeScript narrows after a never-returning call only then.
  parseOptions(raw, at: OptionPath) {
    const bytes = (raw as { bytesPerUser?: unknown } | undefined)?.bytesPerUser
    if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes <= 0) at.fail('bytesPerUser', 'must be a positive number of bytes')
    return { bytesPerUser: bytes }
  },
  setup(host, { bytesPerUser }) {
    const used = new Map<string, number>()
    host.declareState('quotaCounted', 0)

    // Refuse before anything is dialled: REP 02 (not allowed).
    host.use('request', async function checkQuota(ctx, next) {
      if (ctx.user !== null && (used.get(ctx.user) ?? 0) >= bytesPerUser) {
        throw new SocksError('ERR_SOCKS_NOT_ALLOWED', `quota of ${bytesPerUser} bytes used up by ${ctx.user}`)
      }
      await next()
    })

    // Count while the relay runs, so a connection is cut as soon as it crosses the line. A tap
    // sees each chunk of its side just before it is forwarded, and keeps the relay's fast path.
    host.use('relay', async function countBytes(ctx: RelayContext, next) {
      const user = ctx.user
      if (user === null || ctx.outbound === null) return next()
      const count = (chunk: Buffer): void => {
        ctx.state.quotaCounted += chunk.length
        const total = (used.get(user) ?? 0) + chunk.length
        used.set(user, total)
        // The reason reaches the access log, the metrics and the disconnect event.
        if (total > bytesPerUser) ctx.close('user-quota')
      }
      ctx.tap('client', count)
      ctx.tap('outbound', count)
      await next()
    })
  },
})

const port = Number(process.argv[2] ?? process.env.PORT ?? 1080)
const server = createServer({ logger: silentLogger })
server.register(auth, { users: { alice: 'wonderland', bob: 'builder' } })
server.register(quota, { bytesPerUser: Number(process.env.QUOTA_BYTES ?? 100 * 1024 * 1024) })

const address = await server.listen({ host: '127.0.0.1', port })
console.log(`listening on ${address.address}:${address.port}`)
process.once('SIGTERM', () => void server.close().then(() => process.exit(0)))
