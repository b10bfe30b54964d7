// Reading a password for the CLI's commands (hash-password, users add): typed on the terminal
// without echo, twice, or piped in on stdin.

/**
 * The password: asked twice on a terminal (null when the two differ), else all of stdin minus
 * one trailing line break (`echo secret | socksmith hash-password`).
 */
export async function readPassword(): Promise<string | null> {
  if (!process.stdin.isTTY) return readStdin()
  const password = await promptHidden('Password: ')
  const again = await promptHidden('Repeat password: ')
  return again === password ? password : null
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
