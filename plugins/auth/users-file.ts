import { readFile } from 'node:fs/promises'
import { looksLikeHash, parseHash, type ScryptHash } from './hash.js'

/** One user of a users file, with the line it came from (for error messages). */
export interface UsersFileEntry {
  readonly name: string
  readonly hash: ScryptHash
  readonly line: number
}

/** A users-file problem; `message` names the file and line but never shows the line's text. */
export class UsersFileError extends Error {
  override readonly name = 'UsersFileError'
}

/**
 * Parses a users file: one `user:hash` per line, split at the first `:` (as htpasswd does, so names
 * cannot contain one); `#` starts a comment line; blank lines are skipped; CRLF is fine.
 */
export function parseUsersFile(text: string, file: string): UsersFileEntry[] {
  const entries: UsersFileEntry[] = []
  const seen = new Map<string, number>()
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const lineNumber = i + 1
    const line = lines[i]!.trim()
    if (line === '' || line.startsWith('#')) continue
    const at = `${file}:${lineNumber}`
    const colon = line.indexOf(':')
    if (colon < 0) throw new UsersFileError(`${at}: expected "user:hash"`)
    const name = line.slice(0, colon).trim()
    const secret = line.slice(colon + 1).trim()
    const problem = checkUserName(name)
    if (problem !== null) throw new UsersFileError(`${at}: ${problem}`)
    const previous = seen.get(name)
    if (previous !== undefined) throw new UsersFileError(`${at}: user "${name}" is already defined on line ${previous}`)
    if (!looksLikeHash(secret)) {
      throw new UsersFileError(`${at}: the password of "${name}" is not a scrypt hash; a users file holds hashes only (make one with \`socksmith hash-password\`)`)
    }
    let hash: ScryptHash
    try {
      hash = parseHash(secret)
    } catch (err) {
      throw new UsersFileError(`${at}: the hash of "${name}" is invalid: ${(err as Error).message}`)
    }
    seen.set(name, lineNumber)
    entries.push({ name, hash, line: lineNumber })
  }
  return entries
}

/** Reads and parses a users file (the path should be absolute). */
export async function readUsersFile(file: string): Promise<UsersFileEntry[]> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new UsersFileError(`${file}: cannot read the users file${code === undefined ? '' : ` (${code})`}`)
  }
  return parseUsersFile(text, file)
}

/** Why a user name is unusable over RFC 1929, or null. */
export function checkUserName(name: string): string | null {
  const length = Buffer.byteLength(name, 'utf8')
  if (length === 0) return 'a user name must not be empty'
  if (length > 255) return `a user name must be at most 255 bytes (RFC 1929), found ${length}`
  return null
}
