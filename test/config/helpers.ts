// Temporary project folders for config tests: files written by the test, socksmith "installed".
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { TestContext } from 'node:test'
import { ROOT, tempDir } from '../helpers/spawn.js'

/**
 * A folder with `files` written into it and node_modules/socksmith linked to this repository, as
 * if socksmith were installed there (so JS/TS files in it can import 'socksmith').
 */
export function project(t: TestContext, files: Record<string, string> = {}): string {
  const dir = tempDir(t, 'socksmith-config-')
  mkdirSync(join(dir, 'node_modules'))
  symlinkSync(ROOT, join(dir, 'node_modules', 'socksmith'), 'dir')
  write(dir, files)
  return dir
}

export function write(dir: string, files: Record<string, string>): void {
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true })
    writeFileSync(join(dir, name), content)
  }
}
