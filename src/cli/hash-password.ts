import { isSocksError } from '../core/errors.js'
import { errorText, fail } from './output.js'

type HashPassword = (password: string) => string | Promise<string>

/** `socksmith hash-password`: a hash for the auth plugin, from a password read on stdin. */
export async function hashPasswordCommand(): Promise<number> {
  let hashPassword: HashPassword
  try {
    // A variable specifier: the bundled auth plugin is resolved through the package's exports map.
    const specifier = 'socksmith/plugins/auth'
    const auth = (await import(specifier)) as { hashPassword?: unknown }
    if (typeof auth.hashPassword !== 'function') throw new Error('the auth plugin does not export hashPassword')
    hashPassword = auth.hashPassword as HashPassword
  } catch (err) {
    fail(`hash-password: ${errorText(err)}`)
    return 1
  }
  let password: string
  try {
    if (process.stdin.isTTY) {
      password = await promptHidden('Password: ')
      const again = await promptHidden('Repeat password: ')
      if (again !== password) {
        fail('hash-password: the passwords do not match')
        return 2
      }
    } else {
      password = await readStdin()
    }
  } catch (err) {
    fail(`hash-password: ${errorText(err)}`)
    return 1
  }
  if (password.length === 0) {
    fail('hash-password: the password is empty')
    return 2
  }
  let hash: string
  try {
    hash = await hashPassword(password)
  } catch (err) {
    // A password RFC 1929 cannot carry (over 255 bytes) is the user's to fix, not a crash.
    fail(`hash-password: ${errorText(err)}`)
    return isSocksError(err) && err.code === 'ERR_SOCKS_INVALID_ARGUMENT' ? 2 : 1
  }
  process.stdout.write(`${hash}\n`)
  return 0
}

/** All of stdin, minus one trailing line break (`echo secret | socksmith hash-password`). */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
}

/** Reads one line from the terminal without echoing it. */
function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin
  // Echo off before the prompt shows: whatever is typed once it is visible must not echo.
  stdin.setRawMode(true)
  process.stderr.write(prompt)
  return new Promise<string>((resolve, reject) => {
    let chars: string[] = []
    const finish = (): void => {
      stdin.removeListener('data', onData)
      stdin.setRawMode(false)
      stdin.pause()
      process.stderr.write('\n')
    }
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          finish()
          resolve(chars.join(''))
          return
        }
        if (ch === '\u0003') {
          finish()
          reject(new Error('cancelled'))
          return
        }
        if (ch === '\u007f' || ch === '\b') chars = chars.slice(0, -1)
        else chars.push(ch)
      }
    }
    stdin.setEncoding('utf8')
    stdin.on('data', onData)
    stdin.resume()
  })
}
