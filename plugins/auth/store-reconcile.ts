import type { Logger, ServerHandle } from 'socksmith'
import type { ScryptHash } from './hash.js'
import { sameHash, storeLoginOf, storeLoginsSoFar } from './store-logins.js'

/** Store reads at once while checking: a fleet's Redis is not flooded by one node's catching up. */
const CONCURRENT_READS = 8
/** How long to wait before checking again the users the store did not answer for (ms). */
const RETRY_DELAY = 1000

/** What a reconciler acts through. */
export interface ReconcileHost {
  /** The live server: its connections are the ones checked. */
  server(): ServerHandle
  /** The user's record in the store now (null: gone); rejects when the store does not answer. */
  read(name: string): Promise<ScryptHash | null>
  /**
   * The user changed in the store: forgets what is cached about it and ends the connections
   * `select` picks, as an announcement would; returns how many it ended.
   */
  close(name: string, select: (ctx: object) => boolean): number
  /** Users looked up elsewhere (the inline `users` and `usersFile`): a change in the store does not concern them. */
  readonly ignored: ReadonlySet<string>
  readonly log: Logger
  /** For messages: 'redis', ... */
  readonly storeKind: string
}

/**
 * Catches up with announcements of user changes this node did not hear (the subscription was
 * not in place for a while): every live connection that logged in as a store user before the gap
 * was reported is checked against the user's record now, one read per user, and closed when the
 * user is gone or has another hash. A user the store does not answer for keeps its connections
 * (the store's silence is no evidence of a change: failing closed is for new logins) and is
 * checked again a second later, until the store answers.
 */
export class StoreReconciler {
  readonly #host: ReconcileHost
  /** Users to check → the latest login sequence whose connections are in question. */
  readonly #due = new Map<string, number>()
  #running = false
  #again = false
  #timer: NodeJS.Timeout | null = null
  /** The store failed since the last complete check: said once, and its recovery is said too. */
  #failing = false
  #closed = false

  constructor(host: ReconcileHost) {
    this.#host = host
  }

  /** Announcements may have been missed until now: the store users' live connections are checked. */
  gap(): void {
    if (this.#closed) return
    const upTo = storeLoginsSoFar()
    this.#host.server().destroyConnections((ctx) => {
      const login = storeLoginOf(ctx)
      if (login !== undefined && !this.#host.ignored.has(login.name)) this.#due.set(login.name, upTo)
      // Only looking: nothing is closed before the store has said what changed.
      return false
    })
    void this.#run()
  }

  close(): void {
    this.#closed = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#due.clear()
  }

  async #run(): Promise<void> {
    if (this.#running) {
      this.#again = true
      return
    }
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#running = true
    try {
      do {
        this.#again = false
        await this.#check()
      } while (this.#again && !this.#closed)
    } finally {
      this.#running = false
    }
    if (this.#due.size > 0 && !this.#closed) this.#timer = setTimeout(() => void this.#run(), RETRY_DELAY).unref()
  }

  async #check(): Promise<void> {
    const due = [...this.#due]
    if (due.length === 0) return
    const current = new Map<string, { readonly hash: ScryptHash | null; readonly upTo: number }>()
    let failure: unknown = null
    let next = 0
    const reader = async (): Promise<void> => {
      // After the first failure no new reads: each would wait out the store's timeout too.
      while (failure === null && next < due.length && !this.#closed) {
        const [name, upTo] = due[next++]!
        try {
          current.set(name, { hash: await this.#host.read(name), upTo })
        } catch (err) {
          failure ??= err
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(CONCURRENT_READS, due.length) }, reader))
    if (this.#closed) return
    // Which users changed: a first look, so that each is closed (and logged) once, by name.
    const changed = new Set<string>()
    this.#host.server().destroyConnections((ctx) => {
      const login = storeLoginOf(ctx)
      const now = login === undefined ? undefined : current.get(login.name)
      if (now !== undefined && login!.sequence <= now.upTo && !sameHash(login!.hash, now.hash)) changed.add(login!.name)
      return false
    })
    let closed = 0
    for (const name of changed) {
      const now = current.get(name)!
      // Logins after the gap checked their lookup afresh (missedChanges()): they are not in question.
      closed += this.#host.close(name, (ctx) => {
        const login = storeLoginOf(ctx)
        return login !== undefined && login.name === name && login.sequence <= now.upTo && !sameHash(login.hash, now.hash)
      })
    }
    for (const [name, { upTo }] of current) {
      // A gap reported while this check ran asks for another look at the connections of that user.
      if (this.#due.get(name) === upTo) this.#due.delete(name)
    }
    const log = this.#host.log
    if (failure !== null) {
      if (!this.#failing) {
        const why = failure instanceof Error ? failure.message : String(failure)
        log.warn(`auth: announcements of user changes may have been missed, and the ${this.#host.storeKind} store did not answer while checking (${why}); the live connections of ${this.#due.size} user(s) stay open and are checked again every second until it answers`)
      }
      this.#failing = true
      return
    }
    if (this.#failing) log.info(`auth: the ${this.#host.storeKind} store answers again; the users of live connections are checked`)
    this.#failing = false
    log.info(`auth: announcements of user changes may have been missed; checked ${current.size} user(s) of live connections against the store, ${changed.size} had changed, closed ${closed} connection(s)`)
  }
}
