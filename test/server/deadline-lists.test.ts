// Deadlines kept in per-duration lists with one Node timer each (src/core/deadlines.ts).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { armDeadline, DeadlineEntry, disarmDeadline, isArmed } from '../../src/core/deadlines.js'

class Probe extends DeadlineEntry {
  firedAt: number | null = null
  constructor(
    readonly name: string,
    readonly fired: string[],
    readonly onFire?: (self: Probe) => void,
  ) {
    super()
  }
  onDeadline(): void {
    this.firedAt = performance.now()
    this.fired.push(this.name)
    this.onFire?.(this)
  }
}

function probe(name: string, fired: string[], onFire?: (self: Probe) => void): Probe {
  return new Probe(name, fired, onFire)
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

test('deadlines of one duration fire in the order armed, each no earlier than its time; a disarmed one never fires', async () => {
  const fired: string[] = []
  const a = probe('a', fired)
  const b = probe('b', fired)
  const c = probe('c', fired)
  const armedAt = performance.now()
  armDeadline(a, 80)
  await sleep(20)
  armDeadline(b, 80)
  armDeadline(c, 80)
  // The head goes: the list's timer, set for a, fires early and is set again for b.
  disarmDeadline(a)
  assert.equal(isArmed(a), false)
  assert.equal(isArmed(b), true)
  await sleep(200)
  assert.deepEqual(fired, ['b', 'c'])
  assert.ok(b.firedAt! - armedAt >= 20 + 80 - 1, `b fired ${b.firedAt! - armedAt} ms after a was armed`)
  assert.equal(isArmed(b), false)
})

test('re-arming moves a deadline to the back; one entry may re-arm itself when it fires; ms <= 0 disarms', async () => {
  const fired: string[] = []
  let rounds = 0
  const again = probe('again', fired, (self) => {
    if (++rounds < 3) armDeadline(self, 30)
  })
  const moved = probe('moved', fired)
  const off = probe('off', fired)
  armDeadline(moved, 30)
  armDeadline(again, 30)
  armDeadline(off, 30)
  armDeadline(moved, 30) // now behind `again` and `off`
  armDeadline(off, 0)
  assert.equal(isArmed(off), false)
  await sleep(250)
  assert.deepEqual(fired, ['again', 'moved', 'again', 'again'])
})

test('lists of different durations keep their own order', async () => {
  const fired: string[] = []
  armDeadline(probe('long', fired), 120)
  armDeadline(probe('short', fired), 20)
  armDeadline(probe('middle', fired), 60)
  await sleep(250)
  assert.deepEqual(fired, ['short', 'middle', 'long'])
})

test('a pending deadline does not keep the process alive (its timer is unref\'d)', async () => {
  const { spawnSync } = await import('node:child_process')
  const code = `import { armDeadline, DeadlineEntry } from ${JSON.stringify(new URL('../../src/core/deadlines.ts', import.meta.url).href)}
armDeadline(new (class extends DeadlineEntry { onDeadline() { process.exitCode = 3 } })(), 60_000)`
  const started = Date.now()
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', timeout: 20_000 })
  assert.equal(run.status, 0, run.stderr)
  assert.ok(Date.now() - started < 15_000)
})
