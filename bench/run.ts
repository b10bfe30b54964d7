/**
 * socksmith benchmark: socksmith as its users run it, against other SOCKS5 and HTTP proxies, side by side
 * in one run, on loopback. Every server under test runs as a process of its own; its CPU time and
 * RSS are read from /proc (summed over its process tree). Targets and load generators are separate
 * processes.
 *
 *   npm run bench [-- --quick] [--reps N] [--only socksmith,dante] [--workers N] [--json out.json]
 *
 * See bench/README.md for what each row means.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { lookup } from 'node:dns/promises'
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { cpus, release, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { cpuSeconds, cpuSplit, processTree, rssKiB } from './proc.js'
import type { LatencyResult, LoadCommand, LoadResult, RequestsResult, Route, TargetPorts } from './messages.js'
import { HTTP_BODY_BYTES } from './messages.js'
import { renderChart } from './chart.js'
import { measuresOpenConnections, parseTests, TESTS, variantsOf, type PlanSpec, type Variant } from './plan.js'

const REPO = fileURLToPath(new URL('..', import.meta.url))
const BENCH = join(REPO, 'bench')
const CLI = join(REPO, 'dist/src/cli/bin.cjs')
const HOST = '127.0.0.1'
const MiB = 1024 * 1024
const GiB = 1024 * MiB
// The one user of every auth variant (bench/servers/peer-auth.mjs and socksmith.mjs say the same).
const AUTH = { username: 'bench', password: 'bench-password' }
/** The limits variant's second user, and the rate its downloads are shaped to (bytes/s). */
const SHAPED = { username: 'shaped', password: AUTH.password }
const SHAPED_RATE = 10 * 1024 * 1024
const SHAPED_SECONDS = 10
// Every server gets a generous descriptor limit (5,000 held connections are 10,000 sockets).
const FD_LIMIT = 65536
const LIMIT_WRAPPER = `ulimit -n ${FD_LIMIT} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"`
// npm peers, pinned so that runs compare: installed into a scratch folder, never into the project.
// proxy-chain 3 needs Node >= 20.11 (its engines field).
const NPM_PEERS = { socksv5: 'socksv5@0.0.6', '@pondwader/socks5-server': '@pondwader/socks5-server@1.0.10', 'proxy-chain': 'proxy-chain@3.0.1' } as const
type NpmPeer = keyof typeof NPM_PEERS

// ---------------------------------------------------------------- options

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    reps: { type: 'string' },
    only: { type: 'string' },
    workers: { type: 'string', default: '1' },
    'load-procs': { type: 'string', default: '2' },
    hold: { type: 'string', default: '5000' },
    'stream-mib': { type: 'string' },
    'peers-dir': { type: 'string' },
    'no-install': { type: 'boolean', default: false },
    json: { type: 'string' },
    chart: { type: 'string' },
    verbose: { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    strace: { type: 'string' },
    'node-flags': { type: 'string' },
    tests: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})

if (args.help) {
  console.log(`usage: npm run bench -- [--quick] [--reps N] [--only a,b] [--tests a,b] [--workers N] [--stream-mib N] [--hold N]
         [--load-procs N] [--peers-dir DIR] [--no-install] [--json file] [--chart file.svg] [--verbose] [--cpu-prof DIR] [--strace DIR] [--node-flags="--flag …"]
servers: socksmith, socksmith-warn, socksv5, pondwader, dante, microsocks, proxy-chain (default); socksmith-lib, node-floor (only with --only);
         socksmith-wN (with --workers N); direct (always)
tests:   ${TESTS.join(', ')} (default all)`)
  process.exit(0)
}

const quick = args.quick
const settings = {
  reps: Number(args.reps ?? (quick ? 1 : 3)),
  streamBytes: Number(args['stream-mib'] ?? (quick ? 128 : 512)) * MiB,
  streamCounts: [1, 8, 64] as const,
  handshakeConcurrency: 32,
  handshakeMs: quick ? 1000 : 5000,
  latencyMs: quick ? 1000 : 3000,
  udpMs: quick ? 1000 : 5000,
  udpWindow: 64,
  udpPayload: 512,
  hold: Number(args.hold),
  holdSettleMs: quick ? 500 : 1500,
  workers: Number(args.workers),
  loadProcs: Math.max(1, Number(args['load-procs'])),
}
const tests = parseTests(args.tests)
const only = args.only === undefined ? null : new Set(args.only.split(',').map((s) => s.trim()))

// ---------------------------------------------------------------- processes

const children = new Set<ChildProcess>()
const scratch = mkdtempSync(join(tmpdir(), 'socksmith-bench-'))

/** Spawns through `sh` to raise the descriptor limit, then `exec`s: the child's pid is the program's. */
function spawnLimited(command: string, argv: string[], options: { ipc?: boolean; log?: string; cwd?: string } = {}): ChildProcess {
  // stdout and stderr both to the log file, as `server >log 2>&1` would.
  const out = options.log === undefined ? 'ignore' : openSync(options.log, 'a')
  const child = spawn('sh', ['-c', LIMIT_WRAPPER, 'sh', command, ...argv], {
    cwd: options.cwd ?? REPO,
    stdio: options.ipc === true ? ['ignore', out, out, 'ipc'] : ['ignore', out, out],
  })
  if (typeof out === 'number') closeSync(out)
  children.add(child)
  child.on('exit', () => children.delete(child))
  return child
}

function spawnTs(script: string, name: string): ChildProcess {
  return spawnLimited(process.execPath, ['--import', 'tsx', join(BENCH, script)], { ipc: true, log: join(scratch, `${name}.log`) })
}

function waitMessage<T>(child: ChildProcess, type: string, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: { type?: string }): void => {
      if (message.type !== type) return
      cleanup()
      resolve(message as T)
    }
    const onExit = (code: number | null): void => {
      cleanup()
      reject(new Error(`${what} exited (${code}) before it was ready; see ${scratch}`))
    }
    const cleanup = (): void => {
      child.removeListener('message', onMessage)
      child.removeListener('exit', onExit)
    }
    child.on('message', onMessage)
    child.on('exit', onExit)
  })
}

async function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const pid = child.pid
  const tree = pid === undefined ? [] : processTree(pid)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  // Under --strace the server is strace's child: it is stopped, so strace ends and writes its table.
  if (args.strace !== undefined && tree.length > 1) process.kill(tree[1]!, 'SIGTERM')
  else child.kill('SIGTERM')
  const timer = sleep(graceMs).then(() => 'timeout' as const)
  if ((await Promise.race([exited, timer])) === 'timeout') child.kill('SIGKILL')
  await exited
  // Forked children (Dante's, cluster workers) are ours too: none may outlive the run.
  for (const descendant of tree.slice(1)) {
    try {
      process.kill(descendant, 'SIGKILL')
    } catch {
      // already gone
    }
  }
}

class LoadGenerator {
  readonly #child: ChildProcess
  readonly #pending = new Map<number, (result: LoadResult) => void>()
  #nextId = 1

  private constructor(child: ChildProcess) {
    this.#child = child
    child.on('message', (message: LoadResult & { type?: string }) => {
      if (message.type !== undefined) return
      const resolve = this.#pending.get(message.id)
      this.#pending.delete(message.id)
      resolve?.(message)
    })
    child.on('exit', () => {
      for (const resolve of this.#pending.values()) resolve({ id: 0, count: 0, errors: 1, firstError: 'load generator exited', elapsedMs: 0 })
      this.#pending.clear()
    })
  }

  static async start(index: number): Promise<LoadGenerator> {
    const child = spawnTs('loadgen.ts', `loadgen-${index}`)
    await waitMessage(child, 'ready', 'load generator')
    return new LoadGenerator(child)
  }

  run<R extends LoadResult = LoadResult>(command: DistributiveOmit<LoadCommand, 'id'>): Promise<R> {
    const id = this.#nextId++
    return new Promise((resolve) => {
      this.#pending.set(id, resolve as (result: LoadResult) => void)
      this.#child.send({ ...command, id })
    })
  }

  stop(): Promise<void> {
    return stopChild(this.#child, 1000)
  }
}

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** How the orchestrator asks a server whether it is up: what it sends, and which first answer counts. */
interface ReadyProbe {
  readonly send: (port: number) => string | Buffer
  readonly answered: (chunk: Buffer) => boolean
}

/** Any SOCKS5 answer to a greeting (an auth variant answers 05 FF to NO AUTH only). */
const SOCKS_PROBE: ReadyProbe = { send: () => Buffer.from([5, 1, 0]), answered: (chunk) => chunk[0] === 5 }
/**
 * Any HTTP answer to an origin-form GET, which a proxy answers itself (an error status) and sends
 * nowhere: an HTTP-only proxy does not answer a SOCKS5 greeting.
 */
const HTTP_PROBE: ReadyProbe = {
  send: (port) => `GET / HTTP/1.1\r\nHost: ${HOST}:${port}\r\nConnection: close\r\n\r\n`,
  answered: (chunk) => chunk.subarray(0, 5).toString('latin1') === 'HTTP/',
}

/** Ready when the probe gets its answer; the server's exit or the timeout is an error naming its log's end. */
async function waitForReady(probe: ReadyProbe, port: number, child: ChildProcess, log: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited (${child.exitCode ?? child.signalCode}): ${tail(log)}`)
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: HOST, port })
      socket.setTimeout(1000, () => socket.destroy())
      socket.on('connect', () => socket.write(probe.send(port)))
      socket.on('data', (chunk) => {
        socket.destroy()
        resolve(probe.answered(chunk))
      })
      socket.on('error', () => resolve(false))
      socket.on('close', () => resolve(false))
    })
    if (ok) return
    await sleep(50)
  }
  throw new Error(`not ready after ${timeoutMs} ms: ${tail(log)}`)
}

/** The log's first error line (a stack trace's last lines say little) and its last lines. */
function tail(path: string): string {
  try {
    const lines = readFileSync(path, 'utf8').trim().split('\n')
    const error = lines.find((line) => /error/i.test(line))
    const last = lines.slice(-3)
    return (error === undefined || last.includes(error) ? last : [error, '…', ...last]).join(' | ')
  } catch {
    return '(no log)'
  }
}

// ---------------------------------------------------------------- npm peers

const PEERS_DIR = args['peers-dir'] ?? process.env.BENCH_PEERS_DIR ?? join(REPO, 'node_modules/.cache/socksmith-bench-peers')

/** The installed version of an npm peer in PEERS_DIR, or null. */
function peerVersion(name: NpmPeer): string | null {
  try {
    // Read from its folder, not resolved: an exports map (proxy-chain's) may not list package.json.
    const path = join(PEERS_DIR, 'node_modules', name, 'package.json')
    return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version
  } catch {
    return null
  }
}

const wantedVersion = (name: NpmPeer): string => NPM_PEERS[name].slice(NPM_PEERS[name].lastIndexOf('@') + 1)

/**
 * Installs the npm peers the run needs into PEERS_DIR, once (a folder that has them is reused):
 * `npm install --no-save --prefix DIR`, so neither package.json nor the lock of the project is
 * touched. A failed install is a note; the peers it should have brought are then skipped. When one
 * is missing, every pinned peer is installed in the same command: the folder has no package.json,
 * so `npm install X` removes whatever else is in it as extraneous.
 */
function installPeers(needed: NpmPeer[]): void {
  const missing = needed.filter((name) => peerVersion(name) !== wantedVersion(name))
  if (missing.length === 0) return
  if (args['no-install']) return
  const specs = Object.values(NPM_PEERS)
  console.log(`installing ${specs.join(', ')} into ${PEERS_DIR} (npm install --no-save)`)
  try {
    mkdirSync(PEERS_DIR, { recursive: true })
    execFileSync('npm', ['install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--loglevel=error', '--prefix', PEERS_DIR, ...specs], {
      cwd: PEERS_DIR,
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 180_000,
      encoding: 'utf8',
    })
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? ''
    note(`npm install of ${specs.join(', ')} failed: ${stderr.trim().split('\n').slice(0, 2).join(' ') || (err as Error).message}`)
  }
}

function npmPeerUnavailable(name: NpmPeer): string | null {
  const version = peerVersion(name)
  if (version === wantedVersion(name)) return null
  if (version !== null) return `${name} ${version} in ${PEERS_DIR}, the bench wants ${wantedVersion(name)}${args['no-install'] ? ' (--no-install)' : ''}`
  return `${name} not installed in ${PEERS_DIR}${args['no-install'] ? ' (--no-install)' : ''}`
}

// ---------------------------------------------------------------- servers under test

interface Launch {
  command: string
  argv: string[]
  cwd?: string
}

/** A server under test; what it serves (socks, http, mixed, full, noAuth) decides its variants (plan.ts). */
interface ServerSpec extends PlanSpec {
  /** Key of --only and of the JSON output. */
  readonly name: string
  /** Column heading. */
  readonly title: string
  readonly description: string
  readonly udp: boolean
  /** Runs only when --only names it. */
  readonly optIn?: boolean
  /** null when it can run; otherwise why it is skipped. */
  unavailable(): string | null
  /** Command line for a server listening on 127.0.0.1:port; null for the direct baseline. */
  launch(port: number, variant: Variant): Launch | null
  version(): string
}

function which(program: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin'])) {
    const path = join(dir, program)
    if (existsSync(path)) return path
  }
  return null
}

const needBuild = (): string | null => (existsSync(CLI) && existsSync(join(REPO, 'dist/src/index.js')) ? null : 'dist/ not built: run `npm run build` first')

function danteConfig(port: number): string {
  const path = join(scratch, `danted-${port}.conf`)
  writeFileSync(
    path,
    `# generated by bench/run.ts
logoutput: /dev/null
errorlog: stderr
internal: ${HOST} port = ${port}
external: ${HOST}
socksmethod: none
clientmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect udpassociate }
socks pass { from: 0.0.0.0/0 to: 127.0.0.0/8 command: udpreply }
`,
  )
  return path
}

/** More Node flags for every Node server under test: --node-flags as given, then --cpu-prof DIR. */
const EXTRA_NODE_FLAGS = [
  ...(args['node-flags'] === undefined ? [] : args['node-flags'].split(/\s+/).filter((flag) => flag !== '')),
  ...(args['cpu-prof'] === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', args['cpu-prof']]),
]

/** The Node flags of the `socksmith` command's `#!` line (src/cli/bin.cts), which npx runs it with. */
function cliNodeFlags(): string[] {
  const shebang = readFileSync(join(REPO, 'src/cli/bin.cts'), 'utf8').split('\n', 1)[0]!
  const match = /^#!\/usr\/bin\/env -S node\s+(.*)$/.exec(shebang)
  return match === null ? [] : match[1]!.split(/\s+/).filter((flag) => flag !== '')
}
const SOCKSMITH_NODE_FLAGS = [...cliNodeFlags(), ...EXTRA_NODE_FLAGS]

let passwordHash: string | null | undefined

/** The bench user's hash, made once by `socksmith hash-password` as a user would make it. */
function benchHash(): string | null {
  if (passwordHash !== undefined) return passwordHash
  try {
    passwordHash = execFileSync(process.execPath, [CLI, 'hash-password'], { input: AUTH.password, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] }).trim()
    if (!passwordHash.startsWith('$')) throw new Error(`unexpected output "${passwordHash.slice(0, 20)}…"`)
  } catch (err) {
    note(`socksmith hash-password failed (${err instanceof Error ? err.message.split('\n')[0] : String(err)}): socksmith auth rows are empty`)
    passwordHash = null
  }
  return passwordHash
}

/**
 * The config file a user would write for each variant. `log` is left out: level info and the
 * access log on are the defaults. `listen` is overridden by --port.
 */
function cliConfig(variant: Variant): string {
  const dir = join(scratch, `socksmith-${variant}`)
  const path = join(dir, 'socksmith.config.yaml')
  if (existsSync(path)) return path
  mkdirSync(dir, { recursive: true })
  // The http variants: one port for every client (SOCKS5, SOCKS4 and HTTP), as the README shows it.
  const http = variant === 'http' || variant === 'http-auth'
  const lines = ['# generated by bench/run.ts', `listen: { host: 127.0.0.1, port: 1080${http ? ', protocols: [mixed]' : ''} }`]
  if (variant !== 'open' && variant !== 'http') {
    const hash = benchHash()
    if (hash === null) throw new Error('no password hash (see notes)')
    const users = variant === 'limits' ? `${AUTH.username}: ${JSON.stringify(hash)}, ${SHAPED.username}: ${JSON.stringify(hash)}` : `${AUTH.username}: ${JSON.stringify(hash)}`
    lines.push('plugins:', `  - [auth, { users: { ${users} } }]`)
    if (variant === 'limits') {
      // Every kind of limit on the bench user, each far above what the bench can reach: the cost of
      // the plugin doing its work (leases, buckets, quota counting) without ever refusing.
      lines.push(
        '  - - limits',
        '    - limits:',
        `        - { per: user, match: { users: ${AUTH.username} }, maxConnections: 1000000, maxClientIps: 1000, connectionRate: { rate: 1000000000, burst: 1000000000 } }`,
        `        - { per: user, match: { users: ${AUTH.username} }, bandwidth: { up: 100GB, down: 100GB }, quota: { bytes: 1000TB, window: day } }`,
        `        - { per: user, match: { users: ${SHAPED.username} }, bandwidth: { down: ${SHAPED_RATE}, burst: 64KiB } }`,
      )
    }
    if (variant === 'full') {
      const rules = JSON.parse(readFileSync(join(BENCH, 'servers/rules-20.json'), 'utf8')) as unknown[]
      lines.push('  - dns-cache', '  - - rules', '    - default: deny', '      rules:', ...rules.map((rule) => `        - ${JSON.stringify(rule)}`))
    }
  }
  writeFileSync(path, `${lines.join('\n')}\n`)
  return path
}

const socksmithVersion = (): string => `socksmith ${(JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version}`

/** The built `socksmith` command, started as npx starts it: node, the `#!` flags, bin.cjs, a config file. */
function socksmithCli(name: string, title: string, description: string, flags: string[]): ServerSpec {
  return {
    name,
    title,
    description,
    udp: true,
    socks: true,
    http: true,
    mixed: true,
    noAuth: null,
    full: true,
    unavailable: needBuild,
    launch: (port, variant) => {
      const config = cliConfig(variant)
      return { command: process.execPath, argv: [...SOCKSMITH_NODE_FLAGS, CLI, '-c', config, '--port', String(port), ...flags], cwd: join(config, '..') }
    },
    version: socksmithVersion,
  }
}

/** An npm peer run by its script in bench/servers/: a SOCKS5 server, or an HTTP proxy. */
function nodePeer(name: string, npm: NpmPeer, title: string, description: string, script: string, serves: 'socks5' | 'http'): ServerSpec {
  return {
    name,
    title,
    description,
    udp: false,
    socks: serves === 'socks5',
    http: serves === 'http',
    mixed: false,
    noAuth: null,
    full: false,
    unavailable: () => npmPeerUnavailable(npm),
    // Plain `node`, as the library's users run it: the socksmith command's own flags are not theirs.
    launch: (port, variant) => ({ command: process.execPath, argv: [...EXTRA_NODE_FLAGS, join(BENCH, 'servers', script), '--port', String(port), '--modules', PEERS_DIR, ...(variant === 'open' || variant === 'http' ? [] : ['--auth'])] }),
    version: () => `${npm} ${peerVersion(npm) ?? '?'}`,
  }
}

const SERVERS: ServerSpec[] = [
  {
    name: 'direct',
    title: 'no proxy (harness ceiling)',
    description: 'no proxy: the load generators talk to the targets',
    udp: true,
    socks: true,
    http: true,
    mixed: false,
    noAuth: '',
    full: false,
    unavailable: () => null,
    launch: () => null,
    version: () => '',
  },
  socksmithCli('socksmith', 'socksmith as `npx socksmith` runs it (access log on)', 'the socksmith command: #! flags, config file, default log level (info), access log on, output to a file', []),
  socksmithCli('socksmith-warn', 'socksmith `--log-level warn`', 'the same with --log-level warn (no access lines)', ['--log-level', 'warn']),
  ...(settings.workers > 1
    ? [socksmithCli(`socksmith-w${settings.workers}`, `socksmith \`--workers ${settings.workers} --log-level warn\``, `the same on ${settings.workers} node:cluster workers`, ['--workers', String(settings.workers), '--log-level', 'warn'])]
    : []),
  {
    name: 'socksmith-lib',
    title: 'socksmith embedded (createServer, log error)',
    description: 'bench/servers/socksmith.mjs: createServer() from dist/, log level error, names resolved by an injected resolver',
    udp: true,
    socks: true,
    http: false,
    mixed: false,
    noAuth: null,
    full: true,
    optIn: true,
    unavailable: needBuild,
    launch: (port, variant) => ({ command: process.execPath, argv: [...SOCKSMITH_NODE_FLAGS, join(BENCH, 'servers/socksmith.mjs'), '--port', String(port), '--variant', variant === 'open' ? 'bare' : variant] }),
    version: socksmithVersion,
  },
  {
    name: 'node-floor',
    title: 'node:net floor (not a proxy)',
    description: 'bench/servers/node-floor.mjs: the least a Node SOCKS5 server does per CONNECT (no validation, auth, timers or logs; data and ends forwarded by listeners), on plain node',
    udp: false,
    socks: true,
    http: false,
    mixed: false,
    noAuth: 'the floor server has no authentication',
    full: false,
    optIn: true,
    unavailable: () => null,
    launch: (port) => ({ command: process.execPath, argv: [...EXTRA_NODE_FLAGS, join(BENCH, 'servers/node-floor.mjs'), '--port', String(port)] }),
    version: () => `node ${process.version}`,
  },
  nodePeer('socksv5', 'socksv5', 'socksv5', 'npm socksv5 (Node, 2015)', 'socksv5.mjs', 'socks5'),
  nodePeer('pondwader', '@pondwader/socks5-server', '@pondwader/socks5-server', 'npm @pondwader/socks5-server (Node, TypeScript)', 'pondwader.mjs', 'socks5'),
  nodePeer('proxy-chain', 'proxy-chain', 'proxy-chain', 'npm proxy-chain (Node, HTTP proxy: CONNECT and forwarding)', 'proxy-chain.mjs', 'http'),
  {
    name: 'dante',
    title: 'Dante',
    description: 'Dante danted (C, pre-forked processes)',
    udp: true,
    socks: true,
    http: false,
    mixed: false,
    // Dante's username method checks the system's accounts (passwd/shadow or PAM): the bench does not create one.
    noAuth: 'RFC 1929 in Dante checks system accounts (passwd/shadow or PAM); the bench creates none',
    full: false,
    unavailable: () => {
      if (which('danted') === null) return 'not installed (apt-get install dante-server)'
      if (process.getuid?.() !== 0) return 'needs root (its config runs as user.privileged: root)'
      return null
    },
    launch: (port) => ({ command: which('danted')!, argv: ['-f', danteConfig(port), '-p', join(scratch, `danted-${port}.pid`)] }),
    version: () => execFileSync(which('danted')!, ['-v'], { encoding: 'utf8' }).split('.  ')[0]!.trim(),
  },
  {
    name: 'microsocks',
    title: 'microsocks',
    description: 'microsocks (C, a thread per connection)',
    udp: false,
    socks: true,
    http: false,
    mixed: false,
    noAuth: null,
    full: false,
    unavailable: () => (which('microsocks') === null ? 'not installed (apt-get install microsocks)' : null),
    launch: (port, variant) => ({ command: which('microsocks')!, argv: ['-i', HOST, '-p', String(port), ...(variant === 'open' ? [] : ['-u', AUTH.username, '-P', AUTH.password])] }),
    version: () => `microsocks ${execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'microsocks'], { encoding: 'utf8' })}`,
  },
]

const isSocksmith = (name: string): boolean => name.startsWith('socksmith')

// ---------------------------------------------------------------- measurements

/** One server, one repetition. null: not measured (unsupported, or the test failed). */
interface Sample {
  connIp: number | null
  cpu10kIp: number | null
  connName: number | null
  cpu10kName: number | null
  connAuthIp: number | null
  cpu10kAuthIp: number | null
  connAuthName: number | null
  cpu10kAuthName: number | null
  connFullIp: number | null
  cpu10kFullIp: number | null
  connFullName: number | null
  cpu10kFullName: number | null
  /** The limits variant: connections/s and CPU-s per 10k (IP, bench user). */
  connLimitsIp: number | null
  cpu10kLimitsIp: number | null
  /** One download stream and its CPU-s per GiB, with auth (the base) and with the limits plugin. */
  downAuth1: number | null
  cpuPerGiBAuth: number | null
  downLimits1: number | null
  cpuPerGiBLimits: number | null
  /** The shaped user's download rate over SHAPED_SECONDS, as a ratio to SHAPED_RATE. */
  shapedRateRatio: number | null
  latP50Us: number | null
  latP99Us: number | null
  udpPerS: number | null
  down1: number | null
  down8: number | null
  down64: number | null
  up1: number | null
  cpuPerGiB: number | null
  rssPerConnKiB: number | null
  /** HTTP CONNECT to the IP of the echo-and-close target: connections/s and CPU-s per 10k, without and with Basic auth. */
  httpConnIp: number | null
  cpu10kHttpIp: number | null
  httpConnAuthIp: number | null
  cpu10kHttpAuthIp: number | null
  /** One download stream through an HTTP CONNECT tunnel, and its CPU-s per GiB. */
  httpDown1: number | null
  cpuPerGiBHttp: number | null
  /** Plain-HTTP forwarding: keep-alive GETs of the origin's page, requests/s and CPU-s per 10k requests. */
  httpReqPerS: number | null
  cpu10kHttpReq: number | null
  /** SOCKS5 connections (IP) on socksmith's mixed listener (the http variant): the base is connIp / cpu10kIp. */
  connMixedIp: number | null
  cpu10kMixedIp: number | null
}
type Metric = keyof Sample

const emptySample = (): Sample => ({
  connIp: null,
  cpu10kIp: null,
  connName: null,
  cpu10kName: null,
  connAuthIp: null,
  cpu10kAuthIp: null,
  connAuthName: null,
  cpu10kAuthName: null,
  connFullIp: null,
  cpu10kFullIp: null,
  connFullName: null,
  cpu10kFullName: null,
  connLimitsIp: null,
  cpu10kLimitsIp: null,
  downAuth1: null,
  cpuPerGiBAuth: null,
  downLimits1: null,
  cpuPerGiBLimits: null,
  shapedRateRatio: null,
  latP50Us: null,
  latP99Us: null,
  udpPerS: null,
  down1: null,
  down8: null,
  down64: null,
  up1: null,
  cpuPerGiB: null,
  rssPerConnKiB: null,
  httpConnIp: null,
  cpu10kHttpIp: null,
  httpConnAuthIp: null,
  cpu10kHttpAuthIp: null,
  httpDown1: null,
  cpuPerGiBHttp: null,
  httpReqPerS: null,
  cpu10kHttpReq: null,
  connMixedIp: null,
  cpu10kMixedIp: null,
})

/**
 * Rows a server answered with a status other than 2xx ("server/metric" → why): the table prints
 * "– (not supported …)" there instead of a figure. socksmith answers plain-HTTP requests 501
 * until it forwards them.
 */
const unsupported = new Map<string, string>()

const notes: string[] = []

function note(text: string): void {
  notes.push(text)
  console.log(`  note: ${text}`)
}

function checkErrors(server: string, test: string, results: LoadResult[]): void {
  const errors = results.reduce((sum, r) => sum + r.errors, 0)
  if (errors === 0) return
  const first = results.find((r) => r.firstError !== null)?.firstError
  note(`${server}: ${test}: ${errors} failed connection(s), first: ${first}`)
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${Math.round(ms / 1000)} s`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/**
 * Waits until the server is idle (under 2% of a core for 100 ms, at most `maxMs`), so work left
 * over from one test (closing 10,000 sockets, a deferred GC) is not billed to the next.
 */
async function settle(pid: number | null, maxMs = quick ? 2000 : 5000): Promise<void> {
  if (pid === null) return
  const deadline = Date.now() + maxMs
  let last = cpuSeconds(pid)
  while (Date.now() < deadline) {
    await sleep(100)
    const now = cpuSeconds(pid)
    if (now - last < 0.002) return
    last = now
  }
}

/** Splits `total` over the load generators (the first ones get the remainder). */
function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0))
}

let lastTrace = Date.now()

/** --verbose: each test as it ends, with the wall time since the previous one. */
function trace(name: string, test: string, detail = ''): void {
  const now = Date.now()
  if (args.verbose) console.log(`    ${name} ${test}: ${((now - lastTrace) / 1000).toFixed(2)} s ${detail}`)
  lastTrace = now
}

/** One run: a freshly started server (or none, for direct) with one variant, and the tests that variant is for. */
class Run {
  constructor(
    readonly gens: LoadGenerator[],
    readonly ports: TargetPorts,
    readonly spec: ServerSpec,
    readonly variant: Variant,
    readonly route: Route,
    readonly pid: number | null,
    readonly sample: Sample,
  ) {}

  get label(): string {
    return this.variant === 'open' ? this.spec.name : `${this.spec.name} (${this.variant})`
  }

  /** One /proc reading when a test starts and one when it ends: the server CPU it used, and how. */
  readCpu(): { user: number; system: number } {
    return this.pid === null ? { user: 0, system: 0 } : cpuSplit(this.pid)
  }

  cpuSince(start: { user: number; system: number }): { used: number; text: string } {
    const now = this.readCpu()
    const user = now.user - start.user
    const system = now.system - start.system
    return { used: user + system, text: `server CPU ${format(user + system, 2)} s (user ${format(user, 2)} s, system ${format(system, 2)} s)` }
  }

  async warmUp(): Promise<void> {
    // Lazy code paths and the JIT, so the first measured test is not the one that pays.
    const first = this.gens[0]!
    await first.run({ type: 'handshakes', route: this.route, port: this.ports.echoClose, concurrency: 8, durationMs: 300, destination: 'ip' })
    if (this.variant === 'open' || (this.variant === 'http' && tests.has('http-stream'))) await first.run({ type: 'download', route: this.route, port: this.ports.source, streams: 1, bytesPerStream: 32 * MiB })
    if (this.variant === 'http' && tests.has('http-forward')) await first.run({ type: 'requests', route: this.route, port: this.ports.httpOrigin, concurrency: 8, durationMs: 300 })
    if (this.variant === 'http' && this.spec.mixed && tests.has('mixed')) await first.run({ type: 'handshakes', route: { ...this.route, protocol: 'socks5' }, port: this.ports.echoClose, concurrency: 8, durationMs: 300, destination: 'ip' })
    trace(this.label, 'warm-up')
  }

  /**
   * One unmeasured window of SOCKS5 connections (at most 1 s). The SOCKS5-on-mixed row and its
   * socks5-only base are measured at different points of their runs (the base may come right after
   * the short warm-up, the mixed row after the HTTP rows); this gives both the same JIT-warm start,
   * so the 5% they are compared at is not the JIT's.
   */
  async primeSocks(route = this.route): Promise<void> {
    const concurrency = split(settings.handshakeConcurrency, this.gens.length)
    const durationMs = Math.min(settings.handshakeMs, 1000)
    await Promise.all(this.gens.map((gen, i) => gen.run({ type: 'handshakes', route, port: this.ports.echoClose, concurrency: concurrency[i]!, durationMs, destination: 'ip' })))
    trace(this.label, 'socks5 priming')
  }

  /** Idle held connections, on a freshly started server, before the bulk tests grow its heap. */
  async hold(): Promise<void> {
    const { gens, pid, route, spec } = this
    if (pid === null) return
    const before = rssKiB(pid)
    const counts = split(settings.hold, gens.length)
    const concurrency = split(64, gens.length)
    const results = await withTimeout(
      Promise.all(gens.map((gen, i) => gen.run({ type: 'hold', route, port: this.ports.echo, count: counts[i]!, concurrency: concurrency[i]! }))),
      120_000,
      'hold',
    )
    checkErrors(spec.name, 'hold', results)
    const holding = results.reduce((sum, r) => sum + r.count, 0)
    await sleep(settings.holdSettleMs)
    const after = rssKiB(pid)
    trace(this.label, 'hold', `${holding} held, RSS ${before} → ${after} KiB`)
    if (holding > 0) this.sample.rssPerConnKiB = (after - before) / holding
    if (holding < settings.hold) note(`${spec.name}: held ${holding} of ${settings.hold} connections`)
    await Promise.all(gens.map((gen) => gen.run({ type: 'release' })))
    await settle(pid)
    // A garbage-collected server still owes the collection of 5,000 connections: an unmeasured
    // transfer makes it pay now rather than during the first measured one.
    await gens[0]!.run({ type: 'download', route, port: this.ports.source, streams: 1, bytesPerStream: 64 * MiB })
    await settle(pid)
    trace(this.label, 'release')
  }

  /** Downloads over 1, 8 and 64 concurrent streams and one upload; CPU per GiB over all of them. */
  async streams(): Promise<void> {
    const { gens, route, spec, pid } = this
    // Bounded: a transfer slower than 10 MB/s is a failure.
    const timeoutMs = 30_000 + (settings.streamBytes / 10e6) * 1000
    let cpuUsed = 0
    let bytesMoved = 0
    const plan: { key: Metric; type: 'download' | 'upload'; streams: number }[] = []
    for (const n of settings.streamCounts) {
      if (n === 1 ? tests.has('down') : tests.has('multi')) plan.push({ key: `down${n}` as Metric, type: 'download', streams: n })
    }
    if (tests.has('up')) plan.push({ key: 'up1', type: 'upload', streams: 1 })
    for (const { key, type, streams } of plan) {
      // One stream from the first load generator; more spread over all of them.
      const perGen = streams === 1 ? [1] : split(streams, gens.length)
      const perStream = Math.floor(settings.streamBytes / streams)
      const what = `${streams}× ${type}`
      await settle(pid)
      const c0 = this.readCpu()
      const results = await withTimeout(
        Promise.all(
          perGen
            .map((count, i) => ({ count, gen: gens[i]! }))
            .filter(({ count }) => count > 0)
            .map(({ count, gen }) => gen.run<LoadResult & { startedAt: number; endedAt: number }>({ type, route, port: type === 'download' ? this.ports.source : this.ports.sink, streams: count, bytesPerStream: perStream })),
        ),
        timeoutMs,
        what,
      )
      const cpu = this.cpuSince(c0)
      const bytes = results.reduce((sum, r) => sum + r.count, 0)
      cpuUsed += cpu.used
      bytesMoved += bytes
      checkErrors(spec.name, what, results)
      const elapsed = Math.max(...results.map((r) => r.endedAt)) - Math.min(...results.map((r) => r.startedAt))
      if (results.every((r) => r.errors === 0) && elapsed > 0) this.sample[key] = bytes / elapsed / 1e3
      trace(this.label, what, `${format(elapsed / 1000, 2)} s transfer, ${cpu.text}`)
    }
    if (pid !== null && bytesMoved > 0) this.sample.cpuPerGiB = cpuUsed / (bytesMoved / GiB)
  }

  /**
   * 32 concurrent clients: connect, greeting, (auth), CONNECT, 32 B echo, close, for a window. An
   * HTTP route sends an HTTP CONNECT (with Proxy-Authorization when it has credentials) instead.
   */
  async connections(destination: 'ip' | 'domain', rateKey: Metric, cpuKey: Metric, route = this.route): Promise<void> {
    const { gens, spec, pid } = this
    const concurrency = split(settings.handshakeConcurrency, gens.length)
    await settle(pid)
    const c0 = this.readCpu()
    const results = await withTimeout(
      Promise.all(gens.map((gen, i) => gen.run<LoadResult & { total: number }>({ type: 'handshakes', route, port: this.ports.echoClose, concurrency: concurrency[i]!, durationMs: settings.handshakeMs, destination }))),
      settings.handshakeMs + 30_000,
      `${destination} handshakes`,
    )
    const cpu = this.cpuSince(c0)
    checkErrors(spec.name, `${this.variant} ${route.protocol === 'http' ? 'HTTP CONNECT' : 'SOCKS5'} ${destination} connections`, results)
    const inWindow = results.reduce((sum, r) => sum + r.count, 0)
    const total = results.reduce((sum, r) => sum + r.total, 0)
    if (inWindow > 0) this.sample[rateKey] = inWindow / (settings.handshakeMs / 1000)
    if (pid !== null && total > 0) this.sample[cpuKey] = (cpu.used / total) * 10_000
    trace(this.label, `${route.protocol} ${destination} connections`, `${total} done, ${cpu.text}`)
  }

  /**
   * Plain-HTTP forwarding: 32 keep-alive clients, each GETting the origin's page through the proxy
   * (absolute-form) again and again for a window. A server that answers other than 2xx does not
   * forward: "not supported", no figure.
   */
  async requests(): Promise<void> {
    const { gens, route, spec, pid } = this
    const concurrency = split(settings.handshakeConcurrency, gens.length)
    await settle(pid)
    const c0 = this.readCpu()
    const results = await withTimeout(
      Promise.all(gens.map((gen, i) => gen.run<RequestsResult>({ type: 'requests', route, port: this.ports.httpOrigin, concurrency: concurrency[i]!, durationMs: settings.handshakeMs }))),
      settings.handshakeMs + 30_000,
      'HTTP requests',
    )
    const cpu = this.cpuSince(c0)
    const badStatus = results.find((r) => r.badStatus !== null)?.badStatus ?? null
    if (badStatus !== null) {
      const why = `not supported (HTTP ${badStatus})`
      if (!unsupported.has(`${spec.name}/httpReqPerS`)) note(`${spec.name}: plain-HTTP forwarding ${why}: GET http://… answered ${badStatus}; row left empty`)
      unsupported.set(`${spec.name}/httpReqPerS`, why)
      unsupported.set(`${spec.name}/cpu10kHttpReq`, why)
      trace(this.label, 'http requests', `answered ${badStatus}`)
      return
    }
    checkErrors(spec.name, 'HTTP requests', results)
    const inWindow = results.reduce((sum, r) => sum + r.count, 0)
    const total = results.reduce((sum, r) => sum + r.total, 0)
    const connections = results.reduce((sum, r) => sum + r.connections, 0)
    if (inWindow > 0) this.sample.httpReqPerS = inWindow / (settings.handshakeMs / 1000)
    if (pid !== null && total > 0) this.sample.cpu10kHttpReq = (cpu.used / total) * 10_000
    trace(this.label, 'http requests', `${total} responses over ${connections} connections, ${cpu.text}`)
  }

  /** One client at a time: p50 and p99 of connect → handshake → 32 B echo. */
  async latency(): Promise<void> {
    await settle(this.pid)
    const r = await withTimeout(this.gens[0]!.run<LatencyResult>({ type: 'latency', route: this.route, port: this.ports.echoClose, durationMs: settings.latencyMs, destination: 'ip' }), settings.latencyMs + 30_000, 'latency')
    checkErrors(this.spec.name, 'latency', [r])
    if (r.count > 0) {
      this.sample.latP50Us = r.p50Ms * 1000
      this.sample.latP99Us = r.p99Ms * 1000
    }
    trace(this.label, 'latency', `${r.count} sequential connections`)
  }

  async udp(): Promise<void> {
    await settle(this.pid)
    const r = await withTimeout(
      this.gens[0]!.run({ type: 'udp', route: this.route, port: this.ports.udpEcho, durationMs: settings.udpMs, window: settings.udpWindow, payload: settings.udpPayload }),
      settings.udpMs + 30_000,
      'udp',
    )
    checkErrors(this.spec.name, 'udp', [r])
    trace(this.label, 'udp', `${r.count} echoed`)
    if (r.count > 0) this.sample.udpPerS = r.count / (r.elapsedMs / 1000)
    else note(`${this.spec.name}: udp: no datagram came back`)
  }

  async measure(): Promise<void> {
    lastTrace = Date.now()
    await this.warmUp()
    if (this.variant === 'open') {
      if (tests.has('hold')) await this.hold()
      await this.streams()
      if (measuresOpenConnections(this.spec, tests)) {
        if (this.spec.mixed && tests.has('mixed')) await this.primeSocks()
        await this.connections('ip', 'connIp', 'cpu10kIp')
      }
      if (tests.has('connect')) await this.connections('domain', 'connName', 'cpu10kName')
      if (tests.has('latency')) await this.latency()
      if (this.spec.udp && tests.has('udp')) await this.udp()
      return
    }
    if (this.variant === 'http') {
      if (tests.has('http-connect')) await this.connections('ip', 'httpConnIp', 'cpu10kHttpIp')
      if (tests.has('http-stream')) await this.download('httpDown1', 'cpuPerGiBHttp')
      if (tests.has('http-forward')) await this.requests()
      // The mixed listener with SOCKS5 clients: read against this server's socks5-only listener (open).
      if (this.spec.mixed && tests.has('mixed')) {
        const socks: Route = { ...this.route, protocol: 'socks5' }
        await this.primeSocks(socks)
        await this.connections('ip', 'connMixedIp', 'cpu10kMixedIp', socks)
      }
      return
    }
    if (this.variant === 'http-auth') {
      await this.connections('ip', 'httpConnAuthIp', 'cpu10kHttpAuthIp')
      return
    }
    if (this.variant === 'limits') {
      await this.connections('ip', 'connLimitsIp', 'cpu10kLimitsIp')
      await this.download('downLimits1', 'cpuPerGiBLimits')
      await this.shaped()
      return
    }
    const v = this.variant === 'auth' ? 'Auth' : 'Full'
    await this.connections('ip', `conn${v}Ip`, `cpu10k${v}Ip`)
    // The name rows with auth are the plugins' comparison (dns-cache): socksmith's columns only.
    if (this.spec.full) await this.connections('domain', `conn${v}Name`, `cpu10k${v}Name`)
    // The base of the limits variant's CPU per GiB.
    if (this.variant === 'auth' && this.spec.full && tests.has('limits')) await this.download('downAuth1', 'cpuPerGiBAuth')
  }

  /** One download stream of the stream size: MB/s and the server's CPU-s per GiB. */
  async download(rateKey: Metric, cpuKey: Metric): Promise<void> {
    await settle(this.pid)
    const c0 = this.readCpu()
    const r = await withTimeout(
      this.gens[0]!.run<LoadResult & { startedAt: number; endedAt: number }>({ type: 'download', route: this.route, port: this.ports.source, streams: 1, bytesPerStream: settings.streamBytes }),
      30_000 + (settings.streamBytes / 10e6) * 1000,
      'download',
    )
    const cpu = this.cpuSince(c0)
    checkErrors(this.spec.name, `${this.variant} download`, [r])
    const elapsed = r.endedAt - r.startedAt
    if (r.errors === 0 && elapsed > 0) {
      this.sample[rateKey] = r.count / elapsed / 1e3
      if (this.pid !== null) this.sample[cpuKey] = cpu.used / (r.count / GiB)
    }
    trace(this.label, 'download', `${format(elapsed / 1000, 2)} s, ${cpu.text}`)
  }

  /** The shaped user downloads SHAPED_SECONDS of its rate: how close to the rate it went. */
  async shaped(): Promise<void> {
    await settle(this.pid)
    const route: Route = { ...this.route, auth: SHAPED }
    const bytes = SHAPED_RATE * SHAPED_SECONDS
    const r = await withTimeout(
      this.gens[0]!.run<LoadResult & { startedAt: number; endedAt: number }>({ type: 'download', route, port: this.ports.source, streams: 1, bytesPerStream: bytes }),
      SHAPED_SECONDS * 3000,
      'shaped download',
    )
    checkErrors(this.spec.name, 'shaped download', [r])
    const elapsed = r.endedAt - r.startedAt
    if (r.errors === 0 && elapsed > 0) this.sample.shapedRateRatio = r.count / (elapsed / 1000) / SHAPED_RATE
    trace(this.label, 'shaped download', `${format(elapsed / 1000, 2)} s for ${bytes / MiB} MiB`)
  }
}

// ---------------------------------------------------------------- reporting

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

function format(value: number, digits: number): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function values(samples: Sample[] | undefined, key: Metric): number[] {
  return (samples ?? []).map((s) => s[key]).filter((v): v is number => v !== null && Number.isFinite(v))
}

function medianOf(results: Map<string, Sample[]>, server: string, key: Metric): number | null {
  const list = values(results.get(server), key)
  return list.length === 0 ? null : median(list)
}

function machineLine(): string {
  let model = cpus()[0]?.model ?? 'unknown CPU'
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    if (match !== null) model = match[1]!.trim()
  } catch {
    // not Linux: os.cpus() is good enough
  }
  return `${model}, ${cpus().length} cores, ${Math.round(totalmem() / GiB)} GiB RAM, Linux ${release()}, Node ${process.version}`
}

function versionOf(spec: ServerSpec): string {
  try {
    return spec.version()
  } catch {
    return '' // version unknown: not worth failing over
  }
}

interface Row {
  key: Metric
  title: string
  digits: number
}

const MAIN_ROWS: Row[] = [
  { key: 'connIp', title: 'connections/s (IP destination)', digits: 0 },
  { key: 'cpu10kIp', title: 'server CPU-s per 10k connections', digits: 2 },
  { key: 'connName', title: 'connections/s (domain destination)', digits: 0 },
  { key: 'cpu10kName', title: 'CPU-s per 10k (domain destination)', digits: 2 },
  { key: 'connAuthIp', title: 'connections/s with RFC 1929 auth', digits: 0 },
  { key: 'cpu10kAuthIp', title: 'CPU-s per 10k with auth', digits: 2 },
  { key: 'latP50Us', title: 'p50 latency, one client at a time (µs)', digits: 0 },
  { key: 'latP99Us', title: 'p99 latency, one client at a time (µs)', digits: 0 },
  { key: 'udpPerS', title: `UDP datagrams/s (${settings.udpPayload} B, ${settings.udpWindow} in flight)`, digits: 0 },
]

const STREAM_ROWS: Row[] = [
  ...settings.streamCounts.map((n) => ({ key: `down${n}` as Metric, title: `download MB/s, ${n} stream${n === 1 ? '' : 's'}`, digits: 0 })),
  { key: 'up1', title: 'upload MB/s, 1 stream', digits: 0 },
  { key: 'cpuPerGiB', title: 'server CPU-s per GiB relayed', digits: 2 },
  { key: 'rssPerConnKiB', title: `RSS KiB per held connection (${settings.hold.toLocaleString('en-US')} idle)`, digits: 1 },
]

const HTTP_ROWS: Row[] = [
  { key: 'httpConnIp', title: 'HTTP CONNECT connections/s (IP destination)', digits: 0 },
  { key: 'cpu10kHttpIp', title: 'server CPU-s per 10k HTTP CONNECTs', digits: 2 },
  { key: 'httpConnAuthIp', title: 'HTTP CONNECT connections/s with Basic auth', digits: 0 },
  { key: 'cpu10kHttpAuthIp', title: 'CPU-s per 10k HTTP CONNECTs with auth', digits: 2 },
  { key: 'httpDown1', title: 'download MB/s through CONNECT, 1 stream', digits: 0 },
  { key: 'cpuPerGiBHttp', title: 'server CPU-s per GiB through CONNECT', digits: 2 },
  { key: 'httpReqPerS', title: `plain-HTTP requests/s (keep-alive GET, ${HTTP_BODY_BYTES} B body)`, digits: 0 },
  { key: 'cpu10kHttpReq', title: 'server CPU-s per 10k forwarded requests', digits: 2 },
]

const ratio = (a: number | null, b: number | null): string => (a === null || b === null || b === 0 ? '–' : `${format(a / b, 2)}×`)

/**
 * A table with a row per metric and a column per server. Peer columns carry
 * (socksmith ÷ peer / socksmith-warn ÷ peer); other socksmith columns (socksmith ÷ this column).
 */
function table(results: Map<string, Sample[]>, columns: ServerSpec[], rows: Row[], heading: string, spread: boolean): string {
  // A server with no figure in this table (an HTTP-only proxy in the SOCKS5 tables) gets no column.
  const present = columns.filter((spec) => results.has(spec.name) && rows.some((row) => values(results.get(spec.name), row.key).length > 0 || unsupported.has(`${spec.name}/${row.key}`)))
  if (present.length === 0) return `${heading}: no server measured`
  const header = [heading, ...present.map((spec) => spec.title)]
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`]
  for (const row of rows) {
    // A row no server has (a test left out with --tests) is left out too.
    if (present.every((spec) => values(results.get(spec.name), row.key).length === 0 && !unsupported.has(`${spec.name}/${row.key}`))) continue
    const cells = present.map((spec) => {
      const list = values(results.get(spec.name), row.key)
      if (list.length === 0) return unsupported.has(`${spec.name}/${row.key}`) ? `– (${unsupported.get(`${spec.name}/${row.key}`)})` : '–'
      if (spread) return list.length === 1 ? format(list[0]!, row.digits) : `${format(Math.min(...list), row.digits)}–${format(Math.max(...list), row.digits)}`
      const m = median(list)
      const text = format(m, row.digits)
      if (spec.name === 'socksmith' || spec.name === 'direct') return text
      const npx = medianOf(results, 'socksmith', row.key)
      if (isSocksmith(spec.name)) return `${text} (${ratio(npx, m)})`
      return `${text} (${ratio(npx, m)} / ${ratio(medianOf(results, 'socksmith-warn', row.key), m)})`
    })
    lines.push(`| ${row.title} | ${cells.join(' | ')} |`)
  }
  return lines.join('\n')
}

/** A row of a versus table: title, metric, the metric it is compared with (or none), decimals. */
type VersusRow = [string, Metric, Metric | null, number]

/**
 * A table of socksmith columns in which a row may be compared with another row of the same column,
 * as a percentage (`percentDigits` decimals). A row no column has is left out.
 */
function versusTable(results: Map<string, Sample[]>, present: ServerSpec[], heading: string, rows: VersusRow[], percentDigits: number): string {
  const header = [heading, ...present.map((spec) => spec.title)]
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`]
  for (const [title, key, versus, digits] of rows) {
    if (present.every((spec) => medianOf(results, spec.name, key) === null)) continue
    const cells = present.map((spec) => {
      const value = medianOf(results, spec.name, key)
      if (value === null) return '–'
      const base = versus === null ? null : medianOf(results, spec.name, versus)
      return base === null ? format(value, digits) : `${format(value, digits)} (${value >= base ? '+' : '−'}${format(Math.abs(value / base - 1) * 100, percentDigits)}%)`
    })
    lines.push(`| ${title} | ${cells.join(' | ')} |`)
  }
  return lines.join('\n')
}

/** auth + 20 rules + dns-cache against auth alone, for each socksmith column. */
function pluginTable(results: Map<string, Sample[]>, columns: ServerSpec[]): string {
  const present = columns.filter((spec) => spec.full && results.has(spec.name))
  if (present.length === 0) return 'socksmith plugins: not measured'
  return versusTable(results, present, 'socksmith: plugins', [
    ['connections/s, no auth (IP)', 'connIp', null, 0],
    ['connections/s, no auth (domain)', 'connName', null, 0],
    ['connections/s, auth (IP)', 'connAuthIp', null, 0],
    ['connections/s, auth + 20 rules + dns-cache (IP) vs auth', 'connFullIp', 'connAuthIp', 0],
    ['connections/s, auth (domain)', 'connAuthName', null, 0],
    ['connections/s, auth + 20 rules + dns-cache (domain) vs auth', 'connFullName', 'connAuthName', 0],
    ['CPU-s per 10k, auth (IP)', 'cpu10kAuthIp', null, 2],
    ['CPU-s per 10k, auth + 20 rules + dns-cache (IP) vs auth', 'cpu10kFullIp', 'cpu10kAuthIp', 2],
    ['connections/s, auth + limits (IP) vs auth', 'connLimitsIp', 'connAuthIp', 0],
    ['CPU-s per 10k, auth + limits (IP) vs auth', 'cpu10kLimitsIp', 'cpu10kAuthIp', 2],
    ['download MB/s, 1 stream, auth', 'downAuth1', null, 0],
    ['download MB/s, 1 stream, auth + limits vs auth', 'downLimits1', 'downAuth1', 0],
    ['CPU-s per GiB, auth', 'cpuPerGiBAuth', null, 3],
    ['CPU-s per GiB, auth + limits vs auth', 'cpuPerGiBLimits', 'cpuPerGiBAuth', 3],
    [`shaped download (${SHAPED_RATE / MiB} MiB/s for ${SHAPED_SECONDS} s): rate / limit`, 'shapedRateRatio', null, 3],
  ], 0)
}

/** SOCKS5 on socksmith's mixed listener (the http variant) against its socks5-only listener (open). */
function mixedTable(results: Map<string, Sample[]>, columns: ServerSpec[]): string {
  const present = columns.filter((spec) => spec.mixed && medianOf(results, spec.name, 'connMixedIp') !== null)
  if (present.length === 0) return 'socksmith SOCKS5 on a mixed listener: not measured'
  // One decimal in the percentages: the target is 5%.
  return versusTable(results, present, 'socksmith: SOCKS5 clients, mixed vs socks5-only listener', [
    ['connections/s (IP), socks5-only listener', 'connIp', null, 0],
    ['connections/s (IP), mixed listener vs socks5-only', 'connMixedIp', 'connIp', 0],
    ['CPU-s per 10k (IP), socks5-only listener', 'cpu10kIp', null, 2],
    ['CPU-s per 10k (IP), mixed listener vs socks5-only', 'cpu10kMixedIp', 'cpu10kIp', 2],
  ], 1)
}

/** Direct must be far faster than every proxy, or the harness, not the server, is being measured. */
function harnessCheck(results: Map<string, Sample[]>): string[] {
  const lines: string[] = []
  for (const row of [...MAIN_ROWS, ...STREAM_ROWS, ...HTTP_ROWS].filter((r) => ['connIp', 'connName', 'down1', 'down64', 'up1', 'udpPerS', 'httpConnIp', 'httpDown1', 'httpReqPerS'].includes(r.key))) {
    const direct = medianOf(results, 'direct', row.key)
    if (direct === null) continue
    let best: { name: string; value: number } | null = null
    for (const name of results.keys()) {
      if (name === 'direct') continue
      const value = medianOf(results, name, row.key)
      if (value !== null && (best === null || value > best.value)) best = { name, value }
    }
    if (best === null) continue
    const r = direct / best.value
    lines.push(`${r >= 1.5 ? 'ok  ' : 'WARN'} ${row.title}: direct ${format(direct, row.digits)} = ${format(r, 2)}× the fastest proxy (${best.name})`)
  }
  return lines
}

/**
 * The performance targets, judged on this run's medians for socksmith as users run it (the CLI,
 * access log on), as ratios to the peers measured in the same run.
 */
function targetCheck(results: Map<string, Sample[]>): string[] {
  const lines: string[] = []
  const get = (server: string, key: Metric): number | null => medianOf(results, server, key)
  const f = (v: number | null, digits = 2): string => (v === null ? '–' : format(v, digits))
  const s = 'socksmith'
  /** socksmith's `key` against `factor` × the peer's: at least (`>=`) or at most (`<=`). */
  const vs = (key: Metric, peer: string, op: '>=' | '<=', factor: number, what: string, digits = 0): void => {
    const a = get(s, key)
    const b = get(peer, key)
    const ok = a === null || b === null ? null : op === '>=' ? a >= factor * b : a <= factor * b
    lines.push(`${ok === null ? 'n/a ' : ok ? 'MET ' : 'MISS'} ${what} ${op} ${factor}× ${peer}: ${f(a, digits)} vs ${f(b, digits)} (${ratio(a, b)})`)
  }
  vs('connIp', 'socksv5', '>=', 1.2, 'connections/s, IP')
  vs('cpu10kIp', 'socksv5', '<=', 0.8, 'CPU-s per 10k, IP', 2)
  vs('connName', 'socksv5', '>=', 1.2, 'connections/s, domain')
  vs('cpu10kName', 'socksv5', '<=', 0.8, 'CPU-s per 10k, domain', 2)
  vs('connAuthIp', 'socksv5', '>=', 1.2, 'connections/s, RFC 1929 auth')
  vs('cpu10kAuthIp', 'socksv5', '<=', 0.8, 'CPU-s per 10k, auth', 2)
  vs('latP50Us', 'socksv5', '<=', 1, 'p50 latency µs')
  vs('udpPerS', 'dante', '>=', 1, 'UDP datagrams/s')
  vs('down8', 'dante', '>=', 1.5, 'download MB/s, 8 streams')
  vs('down64', 'dante', '>=', 1.2, 'download MB/s, 64 streams')
  vs('down1', 'dante', '>=', 1.8, 'download MB/s, 1 stream')
  vs('cpuPerGiB', 'dante', '<=', 0.55, 'CPU-s per GiB', 2)
  vs('rssPerConnKiB', 'socksv5', '<=', 0.6, 'RSS KiB per idle connection', 1)
  for (const [full, auth, what] of [['connFullIp', 'connAuthIp', 'IP'], ['connFullName', 'connAuthName', 'domain']] as const) {
    const a = get(s, auth)
    const b = get(s, full)
    const ok = a === null || b === null ? null : b >= 0.85 * a
    lines.push(`${ok === null ? 'n/a ' : ok ? 'MET ' : 'MISS'} auth + 20 rules + dns-cache within 15% of auth alone (${what}): ${f(b, 0)} vs ${f(a, 0)} (${a !== null && b !== null ? format((b / a - 1) * 100, 0) : '–'}%)`)
  }
  {
    const conn = get(s, 'connLimitsIp')
    const base = get(s, 'connAuthIp')
    const ok = conn === null || base === null ? null : conn >= 0.9 * base
    lines.push(`${ok === null ? 'n/a ' : ok ? 'MET ' : 'MISS'} auth + limits (never biting) connections/s within 10% of auth alone: ${f(conn, 0)} vs ${f(base, 0)} (${ratio(conn, base)})`)
    const cpu = get(s, 'cpuPerGiBLimits')
    const cpuBase = get(s, 'cpuPerGiBAuth')
    const cpuOk = cpu === null || cpuBase === null ? null : cpu <= 1.2 * cpuBase
    lines.push(`${cpuOk === null ? 'n/a ' : cpuOk ? 'MET ' : 'MISS'} auth + limits CPU-s per GiB <= 1.2× auth alone: ${f(cpu, 3)} vs ${f(cpuBase, 3)} (${ratio(cpu, cpuBase)})`)
    const shaped = get(s, 'shapedRateRatio')
    const shapedOk = shaped === null ? null : Math.abs(shaped - 1) <= 0.05
    lines.push(`${shapedOk === null ? 'n/a ' : shapedOk ? 'MET ' : 'MISS'} a shaped download holds its rate within ±5% over ${SHAPED_SECONDS} s: ${f(shaped, 3)}× the limit`)
  }
  vs('httpConnIp', 'proxy-chain', '>=', 1.5, 'HTTP CONNECT connections/s')
  vs('httpDown1', 'proxy-chain', '>=', 1.5, 'download MB/s through CONNECT, 1 stream')
  {
    const a = get(s, 'httpReqPerS')
    const b = get('proxy-chain', 'httpReqPerS')
    const why = unsupported.get(`${s}/httpReqPerS`)
    if (a === null && b === null && why === undefined) lines.push('n/a  plain-HTTP requests/s: not measured')
    else lines.push(`info plain-HTTP requests/s (no target; reported beside proxy-chain): ${why === undefined ? f(a, 0) : `– (${why})`} vs ${f(b, 0)}${why === undefined ? ` (${ratio(a, b)})` : ''}`)
  }
  {
    const mixed = get(s, 'connMixedIp')
    const only = get(s, 'connIp')
    const ok = mixed === null || only === null ? null : mixed >= 0.95 * only
    lines.push(`${ok === null ? 'n/a ' : ok ? 'MET ' : 'MISS'} SOCKS5 connections/s on a mixed listener >= 0.95× a socks5-only listener: ${f(mixed, 0)} vs ${f(only, 0)} (${ratio(mixed, only)}; CPU-s per 10k ${f(get(s, 'cpu10kMixedIp'))} vs ${f(get(s, 'cpu10kIp'))})`)
  }
  const workers = `socksmith-w${settings.workers}`
  if (results.has(workers)) {
    const x = get(workers, 'connIp')
    const base = get('socksmith-warn', 'connIp')
    lines.push(`info --workers ${settings.workers} connections/s vs one process (both --log-level warn): ${f(x, 0)} vs ${f(base, 0)} (${ratio(x, base)}; the load generators share the cores)`)
  } else {
    lines.push('n/a  --workers N: not measured (run with --workers 2)')
  }
  return lines
}

/** What `localhost` (the domain destination) resolves to here, and whether the target listens on each. */
async function localhostNote(ports: TargetPorts): Promise<string> {
  let addresses: { address: string; family: number }[] = []
  try {
    addresses = await lookup('localhost', { all: true, verbatim: true })
  } catch (err) {
    return `localhost does not resolve here (${(err as Error).message}): the domain rows measure failures`
  }
  const list = addresses.map((a) => a.address).join(', ')
  const v6 = addresses.some((a) => a.family === 6)
  if (!v6) return `localhost resolves to ${list} (getaddrinfo order): IPv4 only, so no server tries ::1 first`
  if (ports.echoCloseV6) return `localhost resolves to ${list} (getaddrinfo order); the echo target listens on 127.0.0.1 and [::1] with the same port`
  return `localhost resolves to ${list} (getaddrinfo order), but the echo target listens on 127.0.0.1 only: a server that tries ::1 first pays a refused connect (or fails) per connection`
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const started = Date.now()
  const machine = machineLine()
  console.log(`socksmith benchmark${quick ? ' (--quick)' : ''}: ${settings.reps} repetition(s), ${settings.streamBytes / MiB} MiB per stream test, ${settings.handshakeMs} ms connection and UDP windows, ${settings.hold} held connections`)
  console.log(`machine: ${machine}`)

  const selected = SERVERS.filter((spec) => {
    if (spec.name === 'direct') return true
    // --workers N adds socksmith-wN, which --only socksmith also selects.
    if (only === null) return spec.optIn !== true
    return only.has(spec.name) || (spec.name === `socksmith-w${settings.workers}` && only.has('socksmith'))
  })
  const npmNames = { socksv5: 'socksv5', pondwader: '@pondwader/socks5-server', 'proxy-chain': 'proxy-chain' } as const satisfies Record<string, NpmPeer>
  const npmNeeded = (Object.keys(npmNames) as (keyof typeof npmNames)[]).filter((name) => selected.some((spec) => spec.name === name && variantsOf(spec, tests).length > 0)).map((name) => npmNames[name])
  installPeers(npmNeeded)
  const specs: ServerSpec[] = []
  for (const spec of selected) {
    const why = spec.unavailable()
    if (why !== null) {
      note(`${spec.name} skipped: ${why}`)
      continue
    }
    if (variantsOf(spec, tests).length === 0) continue
    if (spec.noAuth !== null && spec.noAuth !== '' && tests.has('auth')) note(`${spec.name}: no auth rows: ${spec.noAuth}`)
    specs.push(spec)
  }
  for (const spec of specs) console.log(`  ${spec.name.padEnd(16)} ${spec.description}${versionOf(spec) === '' ? '' : ` [${versionOf(spec)}]`}`)

  const targets = spawnTs('targets.ts', 'targets')
  const { ports } = await waitMessage<{ ports: TargetPorts }>(targets, 'ready', 'targets')
  const resolution = await localhostNote(ports)
  console.log(`  ${resolution}`)
  let gens = await Promise.all(Array.from({ length: settings.loadProcs }, (_, i) => LoadGenerator.start(i)))

  const results = new Map<string, Sample[]>(specs.map((s) => [s.name, []]))
  const failed = new Set<string>()
  try {
    for (let rep = 1; rep <= settings.reps; rep++) {
      for (const spec of specs) {
        const sample = emptySample()
        for (const variant of variantsOf(spec, tests)) {
          const key = `${spec.name}/${variant}`
          if (failed.has(key)) continue
          const runStarted = Date.now()
          const port = spec.name === 'direct' ? 0 : await freePort()
          let launch: Launch | null
          const log = join(scratch, `${spec.name}-${variant}-${rep}.log`)
          let server: ChildProcess | null = null
          try {
            launch = spec.launch(port, variant)
            if (launch !== null) {
              // --strace: the server runs under `strace -f -c`, its syscall counts written to DIR when it stops.
              if (args.strace !== undefined) launch = { ...launch, command: 'strace', argv: ['-f', '-c', '-o', join(args.strace, `${spec.name}-${variant}-${rep}.txt`), launch.command, ...launch.argv] }
              server = spawnLimited(launch.command, launch.argv, { log, cwd: launch.cwd })
              await waitForReady(spec.socks ? SOCKS_PROBE : HTTP_PROBE, port, server, log)
            }
            const http = variant === 'http' || variant === 'http-auth'
            const route: Route = { proxy: launch === null ? null : { host: HOST, port }, protocol: http ? 'http' : 'socks5', auth: variant === 'open' || variant === 'http' ? null : AUTH, domain: 'localhost' }
            const run = new Run(gens, ports, spec, variant, route, server?.pid ?? null, sample)
            await run.measure()
            console.log(`rep ${rep}/${settings.reps} ${run.label.padEnd(26)} ${((Date.now() - runStarted) / 1000).toFixed(1)} s`)
          } catch (err) {
            note(`${spec.name} (${variant}): rep ${rep} failed: ${err instanceof Error ? err.message : String(err)}`)
            failed.add(key)
            // A stuck test leaves the load generators mid-command: start fresh ones.
            await Promise.all(gens.map((gen) => gen.stop()))
            gens = await Promise.all(Array.from({ length: settings.loadProcs }, (_, i) => LoadGenerator.start(i)))
          } finally {
            if (server !== null) await stopChild(server)
          }
          if (spec.name === 'socksmith' && variant === 'open' && rep === 1) accessLogNote(log)
        }
        results.get(spec.name)!.push(sample)
      }
    }
  } finally {
    await Promise.all(gens.map((gen) => gen.stop()))
    await stopChild(targets, 1000)
  }

  for (const [name, samples] of results) if (samples.every((s) => Object.values(s).every((v) => v === null))) results.delete(name)
  const columns = specs.filter((spec) => spec.name !== 'direct')
  const out: string[] = []
  out.push('')
  out.push(`machine: ${machine}`)
  out.push(`medians of ${settings.reps} repetition(s); loopback; ${settings.handshakeConcurrency} concurrent clients for ${settings.handshakeMs / 1000} s per connection row; ${resolution}`)
  out.push('peer columns: value (socksmith as npx runs it ÷ peer / socksmith --log-level warn ÷ peer); other socksmith columns: value (socksmith as npx runs it ÷ this)')
  out.push('')
  out.push(table(results, columns, MAIN_ROWS, `${settings.handshakeConcurrency} concurrent clients, CONNECT + 32 B echo + close`, false))
  out.push('')
  out.push(table(results, specs, STREAM_ROWS, `streams: ${settings.streamBytes / MiB} MiB in all per row, split over the streams`, false))
  if (tests.has('full') || tests.has('auth')) {
    out.push('')
    out.push(pluginTable(results, columns))
  }
  if (['http-connect', 'http-auth', 'http-stream', 'http-forward'].some((test) => tests.has(test as never))) {
    out.push('')
    out.push(table(results, specs, HTTP_ROWS, `HTTP proxy clients (socksmith: a mixed listener); ${settings.handshakeConcurrency} concurrent clients, CONNECT + 32 B echo + close; ${settings.streamBytes / MiB} MiB stream`, false))
  }
  if (tests.has('mixed')) {
    out.push('')
    out.push(mixedTable(results, columns))
  }
  if (settings.reps > 1) {
    out.push('')
    out.push('spread (min–max over the repetitions):')
    out.push('')
    out.push(table(results, specs, [...MAIN_ROWS, ...STREAM_ROWS, ...HTTP_ROWS], 'min–max', true))
  }
  out.push('')
  out.push('load generator check (direct vs the fastest proxy):')
  for (const line of harnessCheck(results)) out.push(`  ${line}`)
  out.push('')
  out.push('targets (socksmith as npx runs it, ratios to peers of this run):')
  for (const line of targetCheck(results)) out.push(`  ${line}`)
  if (notes.length > 0) {
    out.push('')
    out.push('notes:')
    for (const n of notes) out.push(`  - ${n}`)
  }
  out.push('')
  out.push(`finished in ${((Date.now() - started) / 1000).toFixed(0)} s`)
  console.log(out.join('\n'))
  if (args.json !== undefined) {
    writeFileSync(args.json, JSON.stringify({ machine, settings, date: new Date().toISOString(), resolution, results: Object.fromEntries(results), unsupported: Object.fromEntries(unsupported), notes }, null, 2))
  }
  if (args.chart !== undefined) writeFileSync(args.chart, renderChart(results, { subtitle: `${machine}, ${new Date().toISOString()}` }))
}

/** Proof that the npx column paid for its access log: how much it wrote to its log file. */
function accessLogNote(log: string): void {
  try {
    const text = readFileSync(log, 'utf8')
    const access = text.split('\n').filter((line) => line.includes('"msg":"access"')).length
    note(`socksmith (npx) wrote ${access.toLocaleString('en-US')} access lines (${format(statSync(log).size / MiB, 1)} MiB) to its log file in rep 1 (stdout and stderr to a file, so pino writes JSON lines)`)
  } catch {
    note('socksmith (npx): no log file to count access lines in')
  }
}

async function cleanUpAndExit(code: number): Promise<never> {
  await Promise.all([...children].map((child) => stopChild(child, 1000)))
  rmSync(scratch, { recursive: true, force: true })
  process.exit(code)
}

process.on('SIGINT', () => void cleanUpAndExit(130))
process.on('SIGTERM', () => void cleanUpAndExit(143))

main().then(
  () => cleanUpAndExit(0),
  (err: unknown) => {
    console.error(err)
    return cleanUpAndExit(1)
  },
)
