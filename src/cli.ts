#!/usr/bin/env node
import { parseArgs } from 'node:util'
import { readFileSync } from 'node:fs'
import { createServer } from './server.js'
import { createLogger, isLogLevel } from './logger.js'
import { isSocksError } from './errors.js'

const HELP = `Usage: socksmith [options]

Runs a SOCKS5 proxy (RFC 1928, RFC 1929).

Options:
  --host HOST           address to listen on (default 127.0.0.1)
  --port PORT           port to listen on (default 1080)
  --log-level LEVEL     silent | error | warn | info | debug (default info)
  --allow-open-proxy    allow listening on a non-loopback address without authentication
  -h, --help            show this help
  -v, --version         print the version

SIGINT and SIGTERM stop accepting and let live connections finish (drain) before exiting.
`

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

async function main(argv: string[]): Promise<number> {
  let values
  try {
    ;({ values } = parseArgs({
      args: argv,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        'log-level': { type: 'string' },
        'allow-open-proxy': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      strict: true,
      allowPositionals: false,
    }))
  } catch (err) {
    process.stderr.write(`socksmith: ${(err as Error).message}\n\n${HELP}`)
    return 2
  }
  if (values.help === true) {
    process.stdout.write(HELP)
    return 0
  }
  if (values.version === true) {
    process.stdout.write(`${version()}\n`)
    return 0
  }
  const level = values['log-level'] ?? 'info'
  if (!isLogLevel(level)) {
    process.stderr.write(`socksmith: --log-level must be one of silent, error, warn, info, debug (got "${level}")\n`)
    return 2
  }
  const port = values.port === undefined ? 1080 : Number(values.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`socksmith: --port must be an integer from 0 to 65535 (got "${values.port}")\n`)
    return 2
  }
  const log = createLogger(level)
  const server = createServer({ logger: log, allowOpenProxy: values['allow-open-proxy'] === true })
  try {
    const address = await server.listen({ host: values.host ?? '127.0.0.1', port })
    // One line on stdout that scripts (and tests) can wait for.
    process.stdout.write(`socksmith listening on ${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}\n`)
  } catch (err) {
    process.stderr.write(`socksmith: ${isSocksError(err) ? `${err.message} (${err.code})` : (err as Error).message}\n`)
    return 1
  }
  await new Promise<void>((resolve) => {
    let stopping = false
    const stop = (signal: string): void => {
      if (stopping) {
        log.warn(`${signal} again: closing now`)
        process.exit(1)
      }
      stopping = true
      log.info(`${signal}: draining`)
      server.close().then(resolve, resolve)
    }
    process.on('SIGINT', () => stop('SIGINT'))
    process.on('SIGTERM', () => stop('SIGTERM'))
  })
  return 0
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(`socksmith: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exitCode = 1
  },
)
