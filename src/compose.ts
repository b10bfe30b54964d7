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
  const composed = compose<C>([...middleware, last] as compose.Middleware<C>[])
  return function runChain(ctx: C) {
    return composed(ctx)
  }
}
