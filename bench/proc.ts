/**
 * CPU time and resident memory of a server under test, read from /proc. A server may be several
 * processes (Dante forks, node:cluster forks), so every figure is summed over the process tree.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'

const CLOCK_TICKS = readClockTicks()

function readClockTicks(): number {
  try {
    const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
    return Number.isFinite(ticks) && ticks > 0 ? ticks : 100
  } catch {
    return 100
  }
}

interface ProcStat {
  readonly ppid: number
  /** utime of the process (all its threads) plus cutime of its reaped children, in ticks. */
  readonly user: number
  /** stime plus cstime, in ticks. */
  readonly system: number
}

function readStat(pid: number): ProcStat | null {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state); field N of proc(5) is fields[N - 3].
  const ppid = Number(fields[1])
  const user = Number(fields[11]) + Number(fields[13])
  const system = Number(fields[12]) + Number(fields[14])
  return { ppid, user, system }
}

/** The root and all its live descendants. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || pid <= 0) continue
    const stat = readStat(pid)
    if (stat === null) continue
    let list = children.get(stat.ppid)
    if (list === undefined) children.set(stat.ppid, (list = []))
    list.push(pid)
  }
  const tree: number[] = []
  const queue = [root]
  while (queue.length > 0) {
    const pid = queue.pop()!
    tree.push(pid)
    for (const child of children.get(pid) ?? []) queue.push(child)
  }
  return tree
}

/**
 * CPU seconds (user + system) used so far by the process tree under `root`. Children that exited
 * and were reaped are counted in their parent's cutime/cstime, live ones in their own utime/stime,
 * so nothing is counted twice.
 */
export function cpuSeconds(root: number): number {
  const { user, system } = cpuSplit(root)
  return user + system
}

/** The same, split into user and system (kernel) seconds: the relay's cost is mostly the kernel's. */
export function cpuSplit(root: number): { user: number; system: number } {
  let user = 0
  let system = 0
  for (const pid of processTree(root)) {
    const stat = readStat(pid)
    if (stat === null) continue
    user += stat.user
    system += stat.system
  }
  return { user: user / CLOCK_TICKS, system: system / CLOCK_TICKS }
}

/** Resident set size of the process tree under `root`, in KiB (VmRSS summed; shared pages of forked children count in each). */
export function rssKiB(root: number): number {
  let total = 0
  for (const pid of processTree(root)) {
    try {
      const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      if (match !== null) total += Number(match[1])
    } catch {
      // The process exited between the scan and the read.
    }
  }
  return total
}
