import compose from 'koa-compose'

/** What `next()` returns inside a middleware. */
export type Next = () => Promise<void>

/** An async middleware of one phase: `(ctx, next) => {}` in the Koa style. */
export type Middleware<C> = (ctx: C, next: Next) => Promise<void> | void

/** A compiled phase: the middleware onion with its terminal in the middle. */
export type CompiledChain<C> = (ctx: C) => Promise<void> | void

/**
 * Composes a phase once, at listen(). With no middleware the terminal itself is returned: an empty
 * chain costs no compose, no `next` closure and no extra promise per connection.
 */
export function compileChain<C>(middleware: readonly Middleware<C>[], terminal: (ctx: C) => Promise<void> | void): CompiledChain<C> {
  if (middleware.length === 0) return terminal
  const last: Middleware<C> = function terminalMiddleware(ctx) {
    return terminal(ctx)
  }
  const composed = compose<C>([...middleware.map(checkNext), last] as compose.Middleware<C>[])
  return function runChain(ctx: C) {
    return composed(ctx)
  }
}

/**
 * A chain broke its contract (a middleware returned while the rest of the chain it started was
 * still running): a bug in that middleware, reported as one (logged at error, the server's 'error'
 * event, REP 01 to the client), never a SOCKS refusal.
 */
export class ChainError extends Error {
  override readonly name = 'ChainError'
}

/**
 * Wraps a middleware so that forgetting `await next()` is caught where it happens: if the middleware
 * settles while the `next()` it called is still pending, the chain fails with a ChainError naming
 * it, and whatever that abandoned `next()` later rejects with is handled here (an unhandled
 * rejection would otherwise end the process and every connection with it). Returning `next()`'s
 * promise without awaiting it is fine: it settles first.
 */
function checkNext<C>(fn: Middleware<C>): Middleware<C> {
  const name = fn.name === '' ? 'an anonymous middleware' : `middleware "${fn.name}"`
  return function checkedMiddleware(ctx, next) {
    const call = new NextCall(next)
    const result = fn(ctx, call.next)
    // A synchronous middleware that did not call next() ended the chain on purpose.
    if (call.state === NOT_CALLED && !(result instanceof Promise)) return result
    return Promise.resolve(result).then(() => {
      if (call.state === PENDING) throw new ChainError(`${name} returned before the next() it called settled: await next() (or return it)`)
    })
  }
}

const NOT_CALLED = 0
const PENDING = 1
const SETTLED = 2

/** One middleware call's view of `next`: whether it was called and has settled. */
class NextCall {
  state = NOT_CALLED
  readonly next: Next
  constructor(inner: Next) {
    this.next = () => {
      this.state = PENDING
      const promise = inner()
      promise.then(this.#settle, this.#settle)
      return promise
    }
  }
  readonly #settle = (): void => {
    this.state = SETTLED
  }
}
