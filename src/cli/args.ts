import { parseArgs } from 'node:util'
import { readFileSync } from 'node:fs'
import { isLogLevel } from '../ops/logger.js'
import { parseWorkers } from '../ops/cluster.js'
import { fail } from './output.js'
import { hashPasswordCommand } from './hash-password.js'
import { usersCommand } from './users.js'

// The command line: options, their checks, help and version. What they mean is run.ts's.

export const HELP = `Usage: socksmith [options]
       socksmith hash-password
       socksmith users add NAME | users remove NAME | users list   [--config FILE]

Runs a SOCKS5 proxy (RFC 1928, RFC 1929) described by a config file.

Options:
  -c, --config FILE     config file (default: search the working directory for package.json#socksmith,
                        .socksmithrc[.json|.yaml|.yml|.js|.cjs|.mjs|.ts], socksmith.config.{js,mjs,cjs,ts,yaml,yml,json})
  --host HOST           listen on HOST instead of the config's listeners (default 127.0.0.1)
  --port PORT           listen on PORT instead of the config's listeners (default 1080; 0 = any free port)
  --log-level LEVEL     silent | error | warn | info | debug (default: the config's log.level, else info)
  --allow-open-proxy    allow listening on a non-loopback address without authentication
  --check               validate the config (and load every plugin), then exit 0 or 1
  --print-config        print the effective config as JSON, secrets masked, then exit
  --watch               reload when the config file changes (as SIGHUP does)
  --workers N|auto      run N processes sharing the listeners (node:cluster); auto = one per CPU
  --pid-file FILE       once listening, write the pid of the process to signal to FILE (removed on exit)
  -h, --help            show this help
  -v, --version         print the version

Commands:
  hash-password         read a password from stdin (hidden when typed) and print its hash,
                        for the auth plugin's users or usersFile
  users add NAME        add a user to the shared store of the config (store: redis), or give it
                        a new password (read as hash-password reads it); for usersInStore
  users remove NAME     remove a user from it; its live connections close on every node
  users list            print the names of the users in it

Signals: SIGHUP reloads the config (new connections use it; accepted ones are kept).
SIGINT and SIGTERM stop accepting and let live connections finish (drain) before exiting.
Signal this node process (its pid is in --pid-file), not npx or npm start: npm does not pass SIGHUP on.
`

export interface Flags {
  config?: string
  host?: string
  port?: string
  'log-level'?: string
  'allow-open-proxy'?: boolean
  check?: boolean
  'print-config'?: boolean
  watch?: boolean
  workers?: string
  'pid-file'?: string
  help?: boolean
  version?: boolean
}

/** A checked command line. */
export interface CommandLine {
  readonly values: Flags
  /** --port, checked; undefined when not given. */
  readonly port: number | undefined
  readonly workers: number
  readonly pidFile: string | undefined
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

/** The command line, checked: the flags, or the exit code when there is nothing more to do (help, version, a usage error, a command). */
export async function parseCommandLine(argv: string[]): Promise<CommandLine | number> {
  let values: Flags
  let positionals: string[]
  try {
    ;({ values, positionals } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        host: { type: 'string' },
        port: { type: 'string' },
        'log-level': { type: 'string' },
        'allow-open-proxy': { type: 'boolean' },
        check: { type: 'boolean' },
        'print-config': { type: 'boolean' },
        watch: { type: 'boolean' },
        workers: { type: 'string' },
        'pid-file': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      strict: true,
      allowPositionals: true,
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
  if (positionals[0] === 'hash-password' && positionals.length === 1) return hashPasswordCommand()
  if (positionals[0] === 'users') return usersCommand(positionals.slice(1), values.config)
  if (positionals.length > 0) {
    process.stderr.write(`socksmith: unknown command "${positionals.join(' ')}"\n\n${HELP}`)
    return 2
  }
  const level = values['log-level']
  if (level !== undefined && !isLogLevel(level)) {
    fail(`--log-level must be one of silent, error, warn, info, debug (got "${level}")`)
    return 2
  }
  let port: number | undefined
  if (values.port !== undefined) {
    port = Number(values.port)
    if (values.port.trim() === '' || !Number.isInteger(port) || port < 0 || port > 65535) {
      fail(`--port must be an integer from 0 to 65535 (got "${values.port}")`)
      return 2
    }
  }
  let workers = 1
  if (values.workers !== undefined) {
    const parsed = parseWorkers(values.workers)
    if (parsed === null) {
      fail(`--workers must be a positive integer or "auto" (got "${values.workers}")`)
      return 2
    }
    workers = parsed
  }
  const pidFile = values['pid-file']
  if (pidFile !== undefined && pidFile.trim() === '') {
    fail('--pid-file needs a file name')
    return 2
  }
  return { values, port, workers, pidFile }
}
