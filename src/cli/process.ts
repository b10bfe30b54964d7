import type { Logger } from '../ops/logger.js'

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
