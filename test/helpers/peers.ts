// System programs the tests run (curl, haproxy, Dante, ...). A contributor's machine lacks most of
// them, so a test that needs one names it with `needs(...)` and is skipped, saying which Debian
// package provides it; test/run.mjs then lists every skipped one in a last line. Under CI a missing
// program fails the test instead: CI must not go green by skipping. `npm run setup:peers`
// (scripts/setup-peers.sh) installs them all.
//
//   const haproxy = peer('haproxy')
//   test('behind haproxy', needs(haproxy), async (t) => { spawn(haproxy.path, [...]) })
import { spawnSync } from 'node:child_process'
import { accessSync, constants, statSync } from 'node:fs'
import { basename, delimiter, dirname, join } from 'node:path'
import type { TestOptions } from 'node:test'

interface PeerSpec {
  /** The Debian package that provides it. */
  readonly debian: string
  /** Executable names to look for, in order of preference; the peer's own name when absent. */
  readonly programs?: readonly string[]
  /** A Python module the interpreter must be able to import (the first python3 on PATH may lack it). */
  readonly pythonModule?: string
}

/**
 * Every system peer: what a test asks for -> the Debian package. scripts/setup-peers.sh installs
 * exactly these packages (test/peers.test.ts checks both ways).
 */
export const PEERS = {
  curl: { debian: 'curl' },
  ncat: { debian: 'ncat' },
  'nc.openbsd': { debian: 'netcat-openbsd' },
  proxychains4: { debian: 'proxychains4' },
  python3: { debian: 'python3' },
  pysocks: { debian: 'python3-socks', programs: ['python3'], pythonModule: 'socks' },
  chromium: { debian: 'chromium' },
  haproxy: { debian: 'haproxy' },
  microsocks: { debian: 'microsocks' },
  // Debian's dante-server installs `danted`; Dante built from source calls it `sockd`.
  danted: { debian: 'dante-server', programs: ['danted', 'sockd'] },
  prlimit: { debian: 'util-linux' },
  // unshare --mount: a process with a resolv.conf of its own (test/interop/dns-starvation.test.ts).
  unshare: { debian: 'util-linux' },
  'redis-server': { debian: 'redis-server' },
  // Makes the throwaway CA and certificates of the TLS tests (test/helpers/pki.ts); the benchmarks use it too.
  openssl: { debian: 'openssl' },
  // Used by the benchmarks (bench/), not by tests; installed by setup:peers all the same.
  hyperfine: { debian: 'hyperfine' },
} satisfies Record<string, PeerSpec>

export type PeerName = keyof typeof PEERS

/** Set by CI services (`CI=true`): a missing peer is then a failure, never a skip. */
export const CI = !['', '0', 'false'].includes((process.env.CI ?? '').toLowerCase())

export interface Peer {
  readonly name: PeerName
  /** What is missing, as the skip message says it: `haproxy`, `python3 module socks`. */
  readonly label: string
  readonly debian: string
  /** The absolute path of the program, or null when it is not installed. */
  readonly found: string | null
  /** Whether tests that need it are skipped: it is missing and this is not CI. */
  readonly skipped: boolean
  /** The absolute path; throws when it is not installed (under CI, that is the test's failure). */
  readonly path: string
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return statSync(path).isFile()
  } catch {
    return false
  }
}

/**
 * The first of `programs` found in the PATH's folders, else in the `sbin` beside a PATH `bin`
 * (Debian leaves sbin, where haproxy and danted live, off an ordinary user's PATH). Only the PATH
 * counts, so a test run with a PATH that hides a program sees a machine without it.
 */
export function findProgram(programs: readonly string[], accept: (path: string) => boolean = () => true, path = process.env.PATH ?? ''): string | null {
  const dirs = path.split(delimiter).filter((dir) => dir !== '')
  const sbins = dirs.filter((dir) => basename(dir) === 'bin').map((dir) => join(dirname(dir), 'sbin'))
  for (const program of programs) {
    for (const dir of new Set([...dirs, ...sbins])) {
      const candidate = join(dir, program)
      if (isExecutableFile(candidate) && accept(candidate)) return candidate
    }
  }
  return null
}

function canImport(python: string, module: string): boolean {
  return spawnSync(python, ['-c', `import ${module}`], { stdio: 'ignore', timeout: 10_000 }).status === 0
}

const cache = new Map<PeerName, Peer>()

/** Looks the peer up (once per test file) on the PATH. */
export function peer(name: PeerName): Peer {
  let known = cache.get(name)
  if (known === undefined) {
    const spec: PeerSpec = PEERS[name]
    const module = spec.pythonModule
    const found = findProgram(spec.programs ?? [name], module === undefined ? undefined : (python) => canImport(python, module))
    const label = module === undefined ? name : `${spec.programs?.[0] ?? name} module ${module}`
    const reason = missingReason({ label, debian: spec.debian })
    known = {
      name,
      label,
      debian: spec.debian,
      found,
      skipped: found === null && !CI,
      get path(): string {
        if (found !== null) return found
        throw new Error(`${reason}${CI ? ': with CI set, a missing system program fails the test' : ''}; install them all with: npm run setup:peers`)
      },
    }
    cache.set(name, known)
  }
  return known
}

/** `<label> not installed (Debian package <package>)`: test/helpers/peer-summary.mjs reads this back. */
export function missingReason(peer: Pick<Peer, 'label' | 'debian'>): string {
  return `${peer.label} not installed (Debian package ${peer.debian})`
}

/** node:test options that skip the test when one of `peers` is missing, except under CI. */
export function needs(...peers: Peer[]): TestOptions {
  const missing = peers.filter((p) => p.skipped)
  return missing.length === 0 ? {} : { skip: missing.map(missingReason).join('; ') }
}
