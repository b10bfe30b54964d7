import cluster, { type Worker } from 'node:cluster'
import { availableParallelism } from 'node:os'
import type { AddressInfo } from 'node:net'
import type { Logger } from './logger.js'

/**
 * `--workers N`: N processes share the listening sockets (node:cluster). Scheduling is left to the
 * kernel (SCHED_NONE): every worker accepts from the shared socket itself, so the primary never
 * touches a connection — with round-robin the primary would accept and pass each socket over IPC.
 * Each connection, with its UDP association or BIND listener, lives in one worker.
 */

const ENV_WORKER = 'SOCKSMITH_CLUSTER_WORKER'

/** Parses `--workers`: a positive integer, or `auto` (one per CPU). */
export function parseWorkers(text: string): number | null {
  if (text === 'auto') return availableParallelism()
  if (!/^[1-9][0-9]*$/.test(text)) return null
  const n = Number(text)
  return n <= 256 ? n : null
}

/** True in a process started by `runPrimary`. */
export function isClusterWorker(): boolean {
  return cluster.isWorker && process.env[ENV_WORKER] === '1'
}

interface ListeningMessage {
  type: 'socksmith:listening'
  address: AddressInfo
}

/** In a worker: tells the primary a listener is up (the primary prints each address once). */
export function announceListening(address: AddressInfo): void {
  process.send?.({ type: 'socksmith:listening', address } satisfies ListeningMessage)
}

/** In a worker: tells the primary every listener is up and signals are handled. */
export function announceReady(): void {
  process.send?.({ type: 'socksmith:ready' })
}

/**
 * Runs the primary: forks `count` workers with the same arguments, prints each listening address
 * once, restarts a worker that dies unexpectedly (at most once a second), forwards SIGHUP (reload)
 * and on SIGINT/SIGTERM asks every worker to drain, resolving with 0 when all have exited.
 * `onReady` runs once, when all `count` workers are ready (announceReady); false from it stops
 * the cluster with exit status 1.
 */
export function runPrimary(count: number, log: Logger, onListening: (address: AddressInfo) => void, onReady?: () => boolean): Promise<number> {
  cluster.schedulingPolicy = cluster.SCHED_NONE
  cluster.setupPrimary({ silent: false })
  const announced = new Set<string>()
  let stopping = false
  let lastRestart = 0
  let listening = 0
  // Counted here: cluster.workers still lists a worker whose 'exit' is being emitted.
  let alive = 0
  const fork = (): Worker => {
    const worker = cluster.fork({ [ENV_WORKER]: '1' })
    alive++
    worker.on('message', (message: ListeningMessage) => {
      if (message?.type !== 'socksmith:listening') return
      const key = `${message.address.address}|${message.address.port}`
      listening++
      if (!announced.has(key)) {
        announced.add(key)
        onListening(message.address)
      }
    })
    return worker
  }
  for (let i = 0; i < count; i++) fork()
  return new Promise<number>((resolve) => {
    let exitCode = 0
    let ready = 0
    cluster.on('message', (_worker, message: { type?: unknown } | null) => {
      if (message?.type !== 'socksmith:ready' || ++ready !== count || onReady === undefined) return
      if (!onReady()) {
        exitCode = 1
        stop('startup failure')
      }
    })
    cluster.on('exit', (worker, code, signal) => {
      alive--
      if (stopping) {
        if (alive === 0) resolve(exitCode)
        return
      }
      // A worker that fails before any listener came up (bad port, bad config) fails the whole run.
      if (listening === 0) {
        exitCode = code === 0 ? 1 : code
        log.error(`worker ${worker.process.pid} exited (${signal ?? code}) before listening: stopping`)
        stop('startup failure')
        return
      }
      log.warn(`worker ${worker.process.pid} exited (${signal ?? code}); starting another`)
      const wait = Math.max(0, 1000 - (Date.now() - lastRestart))
      lastRestart = Date.now() + wait
      setTimeout(() => {
        if (!stopping) fork()
      }, wait)
    })
    const stop = (why: string): void => {
      if (stopping) return
      stopping = true
      log.info(`${why}: draining ${alive} worker(s)`)
      if (alive === 0) resolve(exitCode)
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM')
    }
    process.on('SIGINT', () => stop('SIGINT'))
    process.on('SIGTERM', () => stop('SIGTERM'))
    process.on('SIGHUP', () => {
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGHUP')
    })
  })
}
