/**
 * socksmith benchmark: socksmith against the SOCKS5 servers installed here, side by side, on
 * loopback. Every server under test runs as a process of its own; its CPU time and RSS are read
 * from /proc (summed over its process tree). Targets and load generators are separate processes.
 *
 *   npm run bench [-- --quick] [--reps N] [--only socksmith,dante] [--workers N] [--json out.json]
 *
 * See bench/README.md for what each column means.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, closeSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir, cpus, release, totalmem } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { execFileSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { cpuSeconds, cpuSplit, processTree, rssKiB } from './proc.js'
import type { LoadCommand, LoadResult, Route, TargetPorts } from './messages.js'

const REPO = fileURLToPath(new URL('..', import.meta.url))
const BENCH = join(REPO, 'bench')
const HOST = '127.0.0.1'
const MiB = 1024 * 1024
const GiB = 1024 * MiB
const AUTH = { username: 'bench', password: 'bench-password' }
// Every server gets a generous descriptor limit (5,000 held connections are 10,000 sockets).
const FD_LIMIT = 65536
const LIMIT_WRAPPER = `ulimit -n ${FD_LIMIT} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"`

// ---------------------------------------------------------------- options

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    reps: { type: 'string' },
    only: { type: 'string' },
    workers: { type: 'string', default: '1' },
    'load-procs': { type: 'string', default: '2' },
    hold: { type: 'string', default: '5000' },
    json: { type: 'string' },
    verbose: { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    'node-flags': { type: 'string' },
    tests: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})

if (args.help) {
  console.log(`usage: npm run bench -- [--quick] [--reps N] [--only a,b] [--workers N] [--load-procs N] [--hold N] [--json file] [--verbose] [--cpu-prof DIR] [--node-flags="--flag …"] [--tests hold,down,up,multi,connect,udp]
servers: direct (always run), socksmith, socksmith-full, socksmith-wN (with --workers N), microsocks, dante, socksv5`)
  process.exit(0)
}

const quick = args.quick
const settings = {
  reps: Number(args.reps ?? (quick ? 1 : 3)),
  streamBytes: quick ? 256 * MiB : GiB,
  multiStreams: 8,
  handshakeConcurrency: 32,
  handshakeMs: quick ? 1000 : 5000,
  udpMs: quick ? 1000 : 5000,
  udpWindow: 32,
  udpPayload: 64,
  hold: Number(args.hold),
  holdSettleMs: quick ? 500 : 1500,
  workers: Number(args.workers),
  loadProcs: Math.max(1, Number(args['load-procs'])),
}
const TESTS = ['hold', 'down', 'up', 'multi', 'connect', 'udp'] as const
const tests = new Set<string>(args.tests === undefined ? TESTS : args.tests.split(',').map((s) => s.trim()))
for (const test of tests) if (!(TESTS as readonly string[]).includes(test)) throw new Error(`--tests: unknown test "${test}"; tests are ${TESTS.join(', ')}`)
const only = args.only === undefined ? null : new Set(args.only.split(',').map((s) => s.trim()))

// ---------------------------------------------------------------- processes

const children = new Set<ChildProcess>()
const scratch = mkdtempSync(join(tmpdir(), 'socksmith-bench-'))

/** Spawns through `sh` to raise the descriptor limit, then `exec`s: the child's pid is the program's. */
function spawnLimited(command: string, argv: string[], options: { ipc?: boolean; log?: string } = {}): ChildProcess {
  const out = options.log === undefined ? 'ignore' : openSync(options.log, 'a')
  const child = spawn('sh', ['-c', LIMIT_WRAPPER, 'sh', command, ...argv], {
    cwd: REPO,
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
  child.kill('SIGTERM')
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

/** Ready when a greeting gets any SOCKS5 answer (the auth variant answers 05 FF to NO AUTH only). */
async function waitForSocks(port: number, child: ChildProcess, log: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited (${child.exitCode ?? child.signalCode}): ${tail(log)}`)
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: HOST, port })
      socket.setTimeout(1000, () => socket.destroy())
      socket.on('connect', () => socket.write(Buffer.from([5, 1, 0])))
      socket.on('data', (chunk) => {
        socket.destroy()
        resolve(chunk[0] === 5)
      })
      socket.on('error', () => resolve(false))
      socket.on('close', () => resolve(false))
    })
    if (ok) return
    await sleep(50)
  }
  throw new Error(`not ready after ${timeoutMs} ms: ${tail(log)}`)
}

function tail(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim().split('\n').slice(-5).join(' | ')
  } catch {
    return '(no log)'
  }
}

// ---------------------------------------------------------------- servers under test

interface ServerSpec {
  readonly name: string
  readonly description: string
  readonly udp: boolean
  /** The name the server resolves to 127.0.0.1 for domain-destination handshakes. */
  readonly domain: string
  readonly auth: boolean
  /** null when it can run; otherwise why it is skipped. */
  unavailable(): string | null
  /** Command line for a server listening on 127.0.0.1:port; null for the direct baseline. */
  command(port: number): [string, string[]] | null
}

function which(program: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin'])) {
    const path = join(dir, program)
    if (existsSync(path)) return path
  }
  return null
}

function resolvesSocksv5(): boolean {
  const from = process.env.SOCKSV5_DIR !== undefined ? join(process.env.SOCKSV5_DIR, 'package.json') : join(REPO, 'package.json')
  try {
    createRequire(from).resolve('socksv5')
    return true
  } catch {
    return false
  }
}

const builtCore = join(REPO, 'dist/src/index.js')
const needBuild = (): string | null => (existsSync(builtCore) ? null : 'dist/ not built: run `npm run build` first')

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

/**
 * Node flags for the Node servers under test: those the socksmith CLI runs with (its shebang line,
 * so the bench measures what users run), then --node-flags as given, then --cpu-prof DIR to profile
 * each of them into DIR.
 */
const NODE_SERVER_FLAGS = [
  ...cliNodeFlags(),
  ...(args['node-flags'] === undefined ? [] : args['node-flags'].split(/\s+/).filter((flag) => flag !== '')),
  ...(args['cpu-prof'] === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', args['cpu-prof']]),
]

function cliNodeFlags(): string[] {
  const shebang = readFileSync(join(REPO, 'src/cli/bin.cts'), 'utf8').split('\n', 1)[0]!
  const match = /^#!\/usr\/bin\/env -S node\s+(.*)$/.exec(shebang)
  return match === null ? [] : match[1]!.split(/\s+/).filter((flag) => flag !== '')
}

function socksmithSpec(name: string, description: string, variant: 'bare' | 'full', workers: number): ServerSpec {
  return {
    name,
    description,
    udp: true,
    domain: 'bench.test',
    auth: variant === 'full',
    unavailable() {
      const build = needBuild()
      if (build !== null) return build
      if (variant === 'full') {
        const missing = ['auth', 'rules', 'dns-cache'].filter((p) => !existsSync(join(REPO, `dist/plugins/${p}/index.js`)))
        if (missing.length > 0) return `plugins not built yet: ${missing.join(', ')} (run \`npm run build\` once they exist)`
      }
      return null
    },
    command: (port) => [process.execPath, [...NODE_SERVER_FLAGS, join(BENCH, 'servers/socksmith.mjs'), '--port', String(port), '--variant', variant, '--workers', String(workers)]],
  }
}

const SERVERS: ServerSpec[] = [
  {
    name: 'direct',
    description: 'no proxy: the load generator talks to the targets (harness ceiling)',
    udp: true,
    domain: 'localhost',
    auth: false,
    unavailable: () => null,
    command: () => null,
  },
  socksmithSpec('socksmith', 'socksmith, no plugins (dist/)', 'bare', 1),
  socksmithSpec('socksmith-full', 'socksmith + auth + 20 rules + dns-cache', 'full', 1),
  ...(settings.workers > 1 ? [socksmithSpec(`socksmith-w${settings.workers}`, `socksmith, ${settings.workers} workers (node:cluster)`, 'bare', settings.workers)] : []),
  {
    name: 'microsocks',
    description: 'microsocks (C, a thread per connection)',
    udp: false,
    domain: 'localhost',
    auth: false,
    unavailable: () => (which('microsocks') === null ? 'not installed (apt-get install microsocks)' : null),
    command: (port) => [which('microsocks')!, ['-i', HOST, '-p', String(port)]],
  },
  {
    name: 'dante',
    description: 'Dante danted (C, pre-forked processes)',
    udp: true,
    domain: 'localhost',
    auth: false,
    unavailable: () => (which('danted') === null ? 'not installed (apt-get install dante-server)' : null),
    command: (port) => [which('danted')!, ['-f', danteConfig(port), '-p', join(scratch, `danted-${port}.pid`)]],
  },
  {
    name: 'socksv5',
    description: 'npm socksv5 (Node)',
    udp: false,
    domain: 'localhost',
    auth: false,
    unavailable: () => (resolvesSocksv5() ? null : 'not installed (npm i --no-save socksv5, or SOCKSV5_DIR=<dir with node_modules/socksv5>)'),
    command: (port) => [process.execPath, [...NODE_SERVER_FLAGS, join(BENCH, 'servers/socksv5.mjs'), '--port', String(port)]],
  },
]

// ---------------------------------------------------------------- measurements

/** One server, one repetition. null: not measured (unsupported, or the test failed). */
interface Sample {
  downGBps: number | null
  upGBps: number | null
  multiGBps: number | null
  cpuPerGiB: number | null
  handshakesIp: number | null
  handshakesDomain: number | null
  cpuPer10kIp: number | null
  cpuPer10kDomain: number | null
  udpPerSecond: number | null
  rssPerConnKiB: number | null
}

const METRICS: { key: keyof Sample; title: string; digits: number; higherIsBetter: boolean }[] = [
  { key: 'downGBps', title: '1× down GB/s', digits: 2, higherIsBetter: true },
  { key: 'upGBps', title: '1× up GB/s', digits: 2, higherIsBetter: true },
  { key: 'multiGBps', title: '8× down GB/s', digits: 2, higherIsBetter: true },
  { key: 'cpuPerGiB', title: 'CPU-s/GiB', digits: 2, higherIsBetter: false },
  { key: 'handshakesIp', title: 'CONNECT/s IP', digits: 0, higherIsBetter: true },
  { key: 'handshakesDomain', title: 'CONNECT/s name', digits: 0, higherIsBetter: true },
  { key: 'cpuPer10kIp', title: 'CPU-s/10k IP', digits: 2, higherIsBetter: false },
  { key: 'cpuPer10kDomain', title: 'CPU-s/10k name', digits: 2, higherIsBetter: false },
  { key: 'udpPerSecond', title: 'UDP dgram/s', digits: 0, higherIsBetter: true },
  { key: 'rssPerConnKiB', title: 'RSS KiB/conn', digits: 1, higherIsBetter: false },
]

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

interface Bench {
  gens: LoadGenerator[]
  ports: TargetPorts
}

let lastTrace = Date.now()

/** --verbose: each test as it ends, with the wall time since the previous one. */
function trace(spec: ServerSpec, test: string, detail = ''): void {
  const now = Date.now()
  if (args.verbose) console.log(`    ${spec.name} ${test}: ${((now - lastTrace) / 1000).toFixed(2)} s ${detail}`)
  lastTrace = now
}

async function measure(bench: Bench, spec: ServerSpec, route: Route, pid: number | null): Promise<Sample> {
  const { gens, ports } = bench
  lastTrace = Date.now()
  const sample: Sample = { downGBps: null, upGBps: null, multiGBps: null, cpuPerGiB: null, handshakesIp: null, handshakesDomain: null, cpuPer10kIp: null, cpuPer10kDomain: null, udpPerSecond: null, rssPerConnKiB: null }
  // One /proc reading when a test starts and one when it ends: the server CPU it used, and how.
  type CpuReading = { user: number; system: number }
  const readCpu = (): CpuReading => (pid === null ? { user: 0, system: 0 } : cpuSplit(pid))
  const cpuSince = (start: CpuReading): { used: number; text: string } => {
    const now = readCpu()
    const user = now.user - start.user
    const system = now.system - start.system
    return { used: user + system, text: `server CPU ${format(user + system, 2)} s (user ${format(user, 2)} s, system ${format(system, 2)} s)` }
  }
  const first = gens[0]!
  // Bounded: a stream slower than 10 MB/s, or a test running 30 s past its window, is a failure.
  const streamTimeout = 30_000 + (settings.streamBytes / 10e6) * 1000

  // Warm-up: lazy code paths and the JIT, so the first measured test is not the one that pays.
  await first.run({ type: 'handshakes', route, port: ports.accept, concurrency: 8, durationMs: 300, destination: 'ip' })
  await first.run({ type: 'download', route, port: ports.source, streams: 1, bytesPerStream: 32 * MiB })
  trace(spec, 'warm-up')

  // Idle held connections first, on a freshly started server, before the bulk tests grow its heap.
  if (pid !== null && tests.has('hold')) {
    const before = rssKiB(pid)
    const counts = split(settings.hold, gens.length)
    const concurrency = split(64, gens.length)
    const results = await withTimeout(
      Promise.all(gens.map((gen, i) => gen.run({ type: 'hold', route, port: ports.echo, count: counts[i]!, concurrency: concurrency[i]! }))),
      120_000,
      'hold',
    )
    checkErrors(spec.name, 'hold', results)
    const holding = results.reduce((sum, r) => sum + r.count, 0)
    await sleep(settings.holdSettleMs)
    const after = rssKiB(pid)
    trace(spec, 'hold', `${holding} held, RSS ${before} → ${after} KiB`)
    if (holding > 0) sample.rssPerConnKiB = (after - before) / holding
    if (holding < settings.hold) note(`${spec.name}: held ${holding} of ${settings.hold} connections`)
    await Promise.all(gens.map((gen) => gen.run({ type: 'release' })))
    await settle(pid)
    // A garbage-collected server still owes the collection of 5,000 connections: an unmeasured
    // transfer makes it pay now rather than during the first measured one.
    await first.run({ type: 'download', route, port: ports.source, streams: 1, bytesPerStream: 64 * MiB })
    await settle(pid)
    trace(spec, 'release')
  }

  let relayCpu = 0
  let relayBytes = 0
  // One stream each way: from the source (download), then to the sink (upload).
  for (const [test, type, port] of [['down', 'download', ports.source], ['up', 'upload', ports.sink]] as const) {
    if (!tests.has(test)) continue
    await settle(pid)
    const c0 = readCpu()
    const r = await withTimeout(first.run({ type, route, port, streams: 1, bytesPerStream: settings.streamBytes }), streamTimeout, type)
    const cpu = cpuSince(c0)
    relayCpu += cpu.used
    relayBytes += r.count
    checkErrors(spec.name, type, [r])
    if (r.errors === 0) sample[test === 'down' ? 'downGBps' : 'upGBps'] = r.count / r.elapsedMs / 1e6
    trace(spec, type, `${format(r.elapsedMs / 1000, 2)} s transfer, ${cpu.text}`)
  }
  if (tests.has('multi')) {
    const streams = split(settings.multiStreams, gens.length)
    const perStream = Math.floor(settings.streamBytes / settings.multiStreams)
    await settle(pid)
    const c0 = readCpu()
    const results = await withTimeout(
      Promise.all(gens.map((gen, i) => gen.run<LoadResult & { startedAt: number; endedAt: number }>({ type: 'download', route, port: ports.source, streams: streams[i]!, bytesPerStream: perStream }))),
      streamTimeout,
      '8-stream download',
    )
    const cpu = cpuSince(c0)
    relayCpu += cpu.used
    const bytes = results.reduce((sum, r) => sum + r.count, 0)
    relayBytes += bytes
    checkErrors(spec.name, '8-stream download', results)
    const started = Math.min(...results.map((r) => r.startedAt))
    const ended = Math.max(...results.map((r) => r.endedAt))
    if (results.every((r) => r.errors === 0)) sample.multiGBps = bytes / (ended - started) / 1e6
    trace(spec, '8-stream download', `${format((ended - started) / 1000, 2)} s transfer, ${cpu.text}`)
  }
  if (pid !== null && relayBytes > 0) sample.cpuPerGiB = relayCpu / (relayBytes / GiB)

  for (const destination of tests.has('connect') ? (['ip', 'domain'] as const) : []) {
    const concurrency = split(settings.handshakeConcurrency, gens.length)
    await settle(pid)
    const c0 = readCpu()
    const results = await withTimeout(
      Promise.all(gens.map((gen, i) => gen.run<LoadResult & { total: number }>({ type: 'handshakes', route, port: ports.accept, concurrency: concurrency[i]!, durationMs: settings.handshakeMs, destination }))),
      settings.handshakeMs + 30_000,
      `${destination} handshakes`,
    )
    const cpu = cpuSince(c0)
    const used = cpu.used
    checkErrors(spec.name, `${destination} handshakes`, results)
    const inWindow = results.reduce((sum, r) => sum + r.count, 0)
    const total = results.reduce((sum, r) => sum + r.total, 0)
    const rate = inWindow / (settings.handshakeMs / 1000)
    const per10k = pid !== null && total > 0 ? (used / total) * 10_000 : null
    trace(spec, `${destination} handshakes`, `${total} done, ${cpu.text}`)
    if (destination === 'ip') {
      sample.handshakesIp = rate
      sample.cpuPer10kIp = per10k
    } else {
      sample.handshakesDomain = rate
      sample.cpuPer10kDomain = per10k
    }
  }

  if (spec.udp && tests.has('udp')) {
    await settle(pid)
    const r = await withTimeout(first.run({ type: 'udp', route, port: ports.udpEcho, durationMs: settings.udpMs, window: settings.udpWindow, payload: settings.udpPayload }), settings.udpMs + 30_000, 'udp')
    checkErrors(spec.name, 'udp', [r])
    trace(spec, 'udp', `${r.count} echoed`)
    if (r.count > 0) sample.udpPerSecond = r.count / (r.elapsedMs / 1000)
    else note(`${spec.name}: udp: no datagram came back`)
  }
  return sample
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

function values(samples: Sample[], key: keyof Sample): number[] {
  return samples.map((s) => s[key]).filter((v): v is number => v !== null)
}

function cell(samples: Sample[], key: keyof Sample, digits: number): string {
  const list = values(samples, key)
  if (list.length === 0) return '–'
  const m = format(median(list), digits)
  if (list.length === 1) return m
  return `${m} (${format(Math.min(...list), digits)}–${format(Math.max(...list), digits)})`
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
    if (spec.name === 'dante') return execFileSync(which('danted')!, ['-v'], { encoding: 'utf8' }).split('.  ')[0]!.trim()
    if (spec.name === 'microsocks') return `microsocks ${execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'microsocks'], { encoding: 'utf8' })}`
    if (spec.name === 'socksv5') {
      const from = process.env.SOCKSV5_DIR !== undefined ? join(process.env.SOCKSV5_DIR, 'package.json') : join(REPO, 'package.json')
      const pkg = createRequire(from).resolve('socksv5/package.json')
      return `socksv5 ${JSON.parse(readFileSync(pkg, 'utf8')).version}`
    }
    if (spec.name.startsWith('socksmith')) return `socksmith ${JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version}`
  } catch {
    // version unknown: not worth failing over
  }
  return ''
}

function table(results: Map<string, Sample[]>): string {
  const header = ['server', ...METRICS.map((m) => m.title)]
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`]
  for (const [name, samples] of results) lines.push(`| ${name} | ${METRICS.map((m) => cell(samples, m.key, m.digits)).join(' | ')} |`)
  return lines.join('\n')
}

function medianOf(results: Map<string, Sample[]>, server: string, key: keyof Sample): number | null {
  const samples = results.get(server)
  if (samples === undefined) return null
  const list = values(samples, key)
  return list.length === 0 ? null : median(list)
}

/** Direct must be far faster than every proxy, or the harness, not the server, is being measured. */
function harnessCheck(results: Map<string, Sample[]>): string[] {
  const lines: string[] = []
  for (const key of ['downGBps', 'upGBps', 'multiGBps', 'handshakesIp', 'udpPerSecond'] as const) {
    const direct = medianOf(results, 'direct', key)
    if (direct === null) continue
    let best: { name: string; value: number } | null = null
    for (const name of results.keys()) {
      if (name === 'direct') continue
      const value = medianOf(results, name, key)
      if (value !== null && (best === null || value > best.value)) best = { name, value }
    }
    if (best === null) continue
    const ratio = direct / best.value
    const title = METRICS.find((m) => m.key === key)!.title
    lines.push(`${ratio >= 1.5 ? 'ok  ' : 'WARN'} ${title}: direct ${format(direct, key.endsWith('GBps') ? 2 : 0)} = ${format(ratio, 2)}× the fastest proxy (${best.name})`)
  }
  return lines
}

/** The targets of issue 6, judged on this run's medians. */
function targetCheck(results: Map<string, Sample[]>): string[] {
  const lines: string[] = []
  const get = (server: string, key: keyof Sample): number | null => medianOf(results, server, key)
  const judge = (ok: boolean | null, text: string): void => {
    lines.push(`${ok === null ? 'n/a ' : ok ? 'MET ' : 'MISS'} ${text}`)
  }
  const cmp = (a: number | null, b: number | null, op: (a: number, b: number) => boolean): boolean | null => (a === null || b === null ? null : op(a, b))
  const f = (v: number | null, digits = 2): string => (v === null ? '–' : format(v, digits))
  const s = 'socksmith'
  for (const key of ['downGBps', 'upGBps'] as const) {
    judge(cmp(get(s, key), get('dante', key), (a, b) => a >= b), `single-stream ${key === 'downGBps' ? 'down' : 'up'} ≥ Dante: ${f(get(s, key))} vs ${f(get('dante', key))} GB/s`)
  }
  judge(cmp(get(s, 'cpuPerGiB'), 0.7, (a, b) => a <= b), `CPU per GiB ≤ 0.7 CPU-s: ${f(get(s, 'cpuPerGiB'))} (Dante ${f(get('dante', 'cpuPerGiB'))})`)
  judge(cmp(get(s, 'cpuPer10kIp'), 1.5, (a, b) => a <= b), `CPU per 10k connections ≤ 1.5 CPU-s: ${f(get(s, 'cpuPer10kIp'))} IP, ${f(get(s, 'cpuPer10kDomain'))} name (microsocks ${f(get('microsocks', 'cpuPer10kIp'))})`)
  judge(cmp(get(s, 'handshakesIp'), get('dante', 'handshakesIp'), (a, b) => a > b), `CONNECT/s (IP) ahead of Dante: ${f(get(s, 'handshakesIp'), 0)} vs ${f(get('dante', 'handshakesIp'), 0)}`)
  judge(cmp(get(s, 'handshakesDomain'), get('dante', 'handshakesDomain'), (a, b) => a > b), `CONNECT/s (name) ahead of Dante: ${f(get(s, 'handshakesDomain'), 0)} vs ${f(get('dante', 'handshakesDomain'), 0)}`)
  judge(cmp(get(s, 'rssPerConnKiB'), 8, (a, b) => a <= b), `≤ 8 KB RSS per idle connection: ${f(get(s, 'rssPerConnKiB'), 1)} KiB`)
  judge(cmp(get(s, 'udpPerSecond'), get('dante', 'udpPerSecond'), (a, b) => a >= b), `UDP datagrams/s ≥ Dante: ${f(get(s, 'udpPerSecond'), 0)} vs ${f(get('dante', 'udpPerSecond'), 0)}`)
  for (const key of ['handshakesIp', 'handshakesDomain'] as const) {
    const bare = get(s, key)
    const full = get('socksmith-full', key)
    judge(cmp(full, bare, (a, b) => a >= 0.85 * b), `auth + 20 rules + dns-cache within 15% of bare (${key === 'handshakesIp' ? 'IP' : 'name'}): ${f(full, 0)} vs ${f(bare, 0)} (${bare !== null && full !== null ? format((full / bare - 1) * 100, 0) : '–'}%)`)
  }
  const workers = `socksmith-w${settings.workers}`
  if (results.has(workers)) {
    const w = get(workers, 'handshakesIp')
    const bare = get(s, 'handshakesIp')
    judge(cmp(w, bare, (a, b) => a >= 1.6 * b), `--workers ${settings.workers} scales CONNECT/s ≥ 1.6×: ${f(w, 0)} vs ${f(bare, 0)} (${w !== null && bare !== null ? format(w / bare, 2) : '–'}×)`)
  } else {
    judge(null, '--workers N ≥ 1.6× CONNECT/s: not measured (run with --workers 2)')
  }
  return lines
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const started = Date.now()
  const machine = machineLine()
  console.log(`socksmith benchmark${quick ? ' (--quick)' : ''}: ${settings.reps} repetition(s), ${settings.streamBytes / MiB} MiB streams, ${settings.handshakeMs} ms handshake and UDP windows, ${settings.hold} held connections`)
  console.log(`machine: ${machine}`)

  const specs: ServerSpec[] = []
  for (const spec of SERVERS) {
    // --workers N adds socksmith-wN, which --only socksmith also selects.
    const selected = only === null || spec.name === 'direct' || only.has(spec.name) || (spec.name === `socksmith-w${settings.workers}` && only.has('socksmith'))
    if (!selected) continue
    const why = spec.unavailable()
    if (why !== null) {
      note(`${spec.name} skipped: ${why}`)
      continue
    }
    specs.push(spec)
  }
  for (const spec of specs) console.log(`  ${spec.name.padEnd(16)} ${spec.description}${versionOf(spec) === '' ? '' : ` [${versionOf(spec)}]`}`)

  const targets = spawnTs('targets.ts', 'targets')
  const { ports } = await waitMessage<{ ports: TargetPorts }>(targets, 'ready', 'targets')
  let gens = await Promise.all(Array.from({ length: settings.loadProcs }, (_, i) => LoadGenerator.start(i)))

  const results = new Map<string, Sample[]>(specs.map((s) => [s.name, []]))
  const failed = new Set<string>()
  try {
    for (let rep = 1; rep <= settings.reps; rep++) {
      for (const spec of specs) {
        if (failed.has(spec.name)) continue
        const repStarted = Date.now()
        const port = spec.command(0) === null ? 0 : await freePort()
        const command = spec.command(port)
        const log = join(scratch, `${spec.name}-${rep}.log`)
        let server: ChildProcess | null = null
        try {
          if (command !== null) {
            server = spawnLimited(command[0], command[1], { log })
            await waitForSocks(port, server, log)
          }
          const route: Route = { proxy: command === null ? null : { host: HOST, port }, auth: spec.auth ? AUTH : null, domain: spec.domain }
          const sample = await measure({ gens, ports }, spec, route, server?.pid ?? null)
          results.get(spec.name)!.push(sample)
          console.log(`rep ${rep}/${settings.reps} ${spec.name.padEnd(16)} ${((Date.now() - repStarted) / 1000).toFixed(1)} s  ${METRICS.map((m) => `${m.title}=${sample[m.key] === null ? '–' : format(sample[m.key]!, m.digits)}`).join('  ')}`)
        } catch (err) {
          note(`${spec.name}: rep ${rep} failed: ${err instanceof Error ? err.message : String(err)}`)
          failed.add(spec.name)
          // A stuck test leaves the load generators mid-command: start fresh ones.
          await Promise.all(gens.map((gen) => gen.stop()))
          gens = await Promise.all(Array.from({ length: settings.loadProcs }, (_, i) => LoadGenerator.start(i)))
        } finally {
          if (server !== null) await stopChild(server)
        }
      }
    }
  } finally {
    await Promise.all(gens.map((gen) => gen.stop()))
    await stopChild(targets, 1000)
  }

  for (const [name, samples] of results) if (samples.length === 0) results.delete(name)
  const out: string[] = []
  out.push('')
  out.push(`machine: ${machine}`)
  out.push(`medians of ${settings.reps} repetition(s)${settings.reps > 1 ? ', (min–max)' : ''}; ${settings.streamBytes / MiB} MiB per stream test; ${settings.handshakeConcurrency} concurrent clients for ${settings.handshakeMs / 1000} s; ${settings.hold} held connections`)
  out.push('')
  out.push(table(results))
  out.push('')
  out.push('load generator check (direct vs the fastest proxy):')
  for (const line of harnessCheck(results)) out.push(`  ${line}`)
  out.push('')
  out.push('issue 6 targets (socksmith bare unless named):')
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
    writeFileSync(args.json, JSON.stringify({ machine, settings, date: new Date().toISOString(), results: Object.fromEntries(results), notes }, null, 2))
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
