// socksmith as a server under test: the BUILT package (run `npm run build` first), in its own
// process so the benchmark can read its CPU time and RSS from /proc.
//   node bench/servers/socksmith.mjs --port P [--variant bare|auth|full|soak] [--workers N]
// `auth` adds auth (user bench / bench-password); `full` auth + 20 destination rules + dns-cache.
// run.ts measures the socksmith CLI; this embedded server is its `socksmith-lib` (with --only) and
// the soak run's server.
import cluster from 'node:cluster'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { createServer } from '../../dist/src/index.js'

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    variant: { type: 'string', default: 'bare' },
    workers: { type: 'string', default: '1' },
    domain: { type: 'string', default: 'bench.test' },
  },
})
const port = Number(values.port)
const workers = Number(values.workers)

// The domain-destination handshakes ask for this name; it maps to the targets on 127.0.0.1.
const benchResolver = {
  async resolve(hostname) {
    if (hostname === values.domain || hostname === 'localhost') return [{ address: '127.0.0.1', family: 4 }]
    throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' })
  },
}

// Twenty rules that a real deployment might have: nineteen that do not match the benchmark's
// traffic (so each connection walks the whole list) and the one that lets it through. run.ts puts
// the same file into the socksmith CLI's config.
const RULES = JSON.parse(readFileSync(new URL('./rules-20.json', import.meta.url), 'utf8'))

async function loadPlugin(name) {
  return (await import(`../../dist/plugins/${name}/index.js`)).default
}

async function start() {
  const server = createServer({ logLevel: 'error', resolver: benchResolver })
  if (values.variant === 'auth') {
    server.register(await loadPlugin('auth'), { users: { bench: 'bench-password' } })
  } else if (values.variant === 'full') {
    const [auth, rules, dnsCache] = await Promise.all(['auth', 'rules', 'dns-cache'].map(loadPlugin))
    server.register(auth, { users: { bench: 'bench-password' } })
    server.register(dnsCache, {})
    server.register(rules, { default: 'deny', rules: RULES })
  } else if (values.variant === 'soak') {
    // The soak run's mix: logins, a cached resolver, and rules that allow loopback for every command.
    const [auth, rules, dnsCache] = await Promise.all(['auth', 'rules', 'dns-cache'].map(loadPlugin))
    server.register(auth, { users: { bench: 'bench-password' } })
    server.register(dnsCache, {})
    server.register(rules, { default: 'deny', rules: [...RULES.slice(0, 17), { action: 'allow', to: ['127.0.0.0/8'] }] })
  } else if (values.variant !== 'bare') {
    throw new Error(`unknown variant ${values.variant}`)
  }
  await server.listen({ host: '127.0.0.1', port, backlog: 4096 })
}

// --workers: node:cluster shares the port, as `socksmith --workers N` does (src/ops/cluster.ts); this
// script builds its server with createServer(), so it forks the workers itself. SCHED_NONE lets the
// kernel spread accepts, so the primary is not a relay of its own.
if (workers > 1 && cluster.isPrimary) {
  cluster.schedulingPolicy = cluster.SCHED_NONE
  for (let i = 0; i < workers; i++) cluster.fork()
  cluster.on('exit', (_worker, code) => {
    if (code !== 0) process.exit(1)
  })
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill('SIGKILL')
    process.exit(0)
  })
} else {
  await start()
  process.on('SIGTERM', () => process.exit(0))
}
