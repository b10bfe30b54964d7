import type { Logger } from './logger.js'

/**
 * libuv threads the CLI runs with unless UV_THREADPOOL_SIZE is set: name lookups (getaddrinfo)
 * occupy one each for as long as a nameserver takes to answer, so 4 (libuv's default) is few for a
 * proxy; the system resolver shares whatever there is fairly between clients (lookup-scheduler.ts).
 * Must be set before the pool's first use, which is why the CLI does it first thing.
 */
export const CLI_THREADPOOL_SIZE = 16

export function sizeThreadPool(env: NodeJS.ProcessEnv = process.env): void {
  env.UV_THREADPOOL_SIZE ??= String(CLI_THREADPOOL_SIZE)
}

/**
 * A throw in a timer a middleware started, or a promise a plugin left to reject unobserved, would
 * end the process and every connection with it (Node's default since v15). socksmith's own code
 * handles its errors, so what reaches these handlers is user code's; the CLI logs it at error and
 * keeps serving. For rejections that is always safe; after an uncaught exception the user code that
 * threw may be left half-done (https://nodejs.org/api/process.html#warning-using-uncaughtexception-correctly),
 * which is that code's to fix, while every other connection lives on.
 */
export function keepServingOnUncaught(logger: Logger): void {
  process.on('uncaughtException', (err, origin) => {
    logger.error(`uncaught exception in user code (${origin}); still serving`, { error: describe(err) })
  })
  process.on('unhandledRejection', (reason) => {
    logger.error('unhandled promise rejection in user code; still serving', { error: describe(reason) })
  })
}

function describe(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err)
}
