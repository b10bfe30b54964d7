// Running out of file descriptors (EMFILE on accept) does not crash the server: it sheds what it
// cannot take, says so, and serves again once descriptors are free.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { startEcho } from '../helpers/net.js'
import { CLI, echoThrough, listeningPort, plainEnv, start } from '../helpers/spawn.js'
import { needs, peer } from '../helpers/peers.js'

const prlimit = peer('prlimit')

test('EMFILE on accept: the server survives and recovers', needs(prlimit), async (t) => {
  const echo = await startEcho(t)
  // A soft and hard limit of 64 descriptors for the server process.
  const running = start(t, prlimit.path, ['--nofile=64:64', process.execPath, CLI, '--port', '0', '--log-level', 'warn'], { env: plainEnv() })
  const port = await listeningPort(running)
  const held: Socket[] = []
  t.after(() => held.forEach((s) => s.destroy()))
  // Far more connections than descriptors: each relayed one also needs an outgoing socket.
  // libuv sheds connections it cannot accept (its EMFILE trick); dials that hit the limit get REP 01.
  const outcomes = await Promise.all(Array.from({ length: 120 }, async () => {
    const s = connect({ host: '127.0.0.1', port })
    s.on('error', () => {})
    held.push(s)
    await once(s, 'connect').catch(() => {})
    s.write(Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, echo.port >> 8, echo.port & 255]))
    let got = Buffer.alloc(0)
    s.on('data', (d: Buffer) => (got = Buffer.concat([got, d])))
    await Promise.race([once(s, 'close').catch(() => {}), new Promise((r) => setTimeout(r, 5000)), new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (got.length >= 12) {
          clearInterval(check)
          resolve()
        }
      }, 10)
      s.once('close', () => clearInterval(check))
    })])
    return got.length >= 12 && got[3] === 0 ? 'relayed' : 'refused'
  }))
  const relayed = outcomes.filter((o) => o === 'relayed').length
  assert.ok(relayed < 120, `${relayed} of 120 relayed: the descriptor limit was hit`)
  assert.equal(running.child.exitCode, null, 'still running')
  for (const s of held) s.destroy()
  // Once the descriptors are back, a normal CONNECT works again.
  let answer = ''
  for (let attempt = 0; attempt < 100 && answer !== 'ping'; attempt++) {
    answer = await echoThrough(port, echo.port, { payload: 'ping' }).catch(() => '')
    if (answer !== 'ping') await new Promise((r) => setTimeout(r, 100))
  }
  assert.equal(answer, 'ping')
  assert.equal(running.child.exitCode, null)
})
