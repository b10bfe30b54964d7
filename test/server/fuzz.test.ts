// Live fuzzing: thousands of broken handshakes against a running server. Afterwards it must still
// serve a normal CONNECT, hold no connection, and the process must have the descriptors it started with.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readlinkSync } from 'node:fs'
import { connect } from 'node:net'
import { createSocket } from 'node:dgram'
import { once } from 'node:events'
import { RawClient, startEcho, startListening, startSocks, startUdpEcho, ipv4Request, domainRequest, hex, waitFor, mapResolver } from '../helpers/net.js'
import { encodeDatagramHeader, toAddress } from 'socksmith/protocol'

/** Small deterministic PRNG (mulberry32) so a failure can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * The process's open descriptors, counted by what each points at (`socket:[inode]` names one
 * socket). A leak is a descriptor open after that was not before; comparing totals is not enough,
 * as others close meanwhile: under Node 22 and later, tsx's two connects to the IPC pipe of a tsx
 * CLI parent (there is none: the runner loads tsx with --import) have failed but are still open as
 * the first test starts, and close later.
 */
function openFds(): Map<string, number> {
  const open = new Map<string, number>()
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`)
      open.set(target, (open.get(target) ?? 0) + 1)
    } catch {
      // The descriptor readdirSync listed the folder with, closed by now.
    }
  }
  return open
}

/** What is open now beyond what `before` had (one entry per extra descriptor). */
function leakedSince(before: Map<string, number>): string[] {
  const leaked: string[] = []
  for (const [target, count] of openFds()) {
    for (let extra = count - (before.get(target) ?? 0); extra > 0; extra--) leaked.push(target)
  }
  return leaked
}

function mutatedHandshake(random: () => number, targetPort: number): Buffer[] {
  const int = (n: number) => Math.floor(random() * n)
  const valid = [
    hex('050100'),
    hex('05020002'),
    hex('01 05 alice 05 hello'.replace('alice', '616c696365').replace('hello', '68656c6c6f')),
    ipv4Request(1 + int(3), '127.0.0.1', targetPort),
    domainRequest(1, 'fuzz.test', targetPort),
  ]
  let bytes: Buffer
  switch (int(9)) {
    case 0: // random garbage
      bytes = Buffer.from(Array.from({ length: int(600) }, () => int(256)))
      break
    case 1: // a valid prefix with a corrupted tail
      bytes = Buffer.concat([valid[0]!, valid[3]!])
      for (let i = 0; i < 1 + int(4); i++) bytes[int(bytes.length)] = int(256)
      break
    case 2: // absurd lengths
      bytes = Buffer.concat([hex('05ff'), Buffer.alloc(int(300), 0), hex('0503ff'), Buffer.alloc(int(300), 0x41)])
      break
    case 3: // wrong versions everywhere
      bytes = Buffer.from([int(256), 1, 0, int(256), 1, 0, 1, 127, 0, 0, 1, 0, 80])
      break
    case 4: // truncated valid handshake (left hanging: the handshake deadline must clean it up)
      bytes = Buffer.concat([valid[0]!, valid[4]!]).subarray(0, 1 + int(12))
      break
    case 5: // username/password offered to a server without auth, with a corrupted sub-negotiation
      bytes = Buffer.concat([valid[1]!, valid[2]!])
      bytes[3 + int(bytes.length - 3)] = int(256)
      break
    case 6: // SOCKS4/4a, mutated, or a USERID or name that never ends
      bytes = Buffer.concat([hex('0401'), Buffer.from([targetPort >> 8, targetPort & 255]), int(2) === 0 ? hex('7f000001') : hex('00000001'), Buffer.alloc(int(400), 0x61), int(2) === 0 ? hex('00') : Buffer.alloc(0)])
      for (let i = 0; i < int(3); i++) bytes[int(bytes.length)] = int(256)
      break
    case 7: // plain HTTP requests to forward (keep-alive, pipelined, a chunked body cut short), mutated; the target answers nonsense
      bytes = Buffer.from(Array.from({ length: 1 + int(3) }, (_, i) => (i === 2 ? `POST http://127.0.0.1:${targetPort}/p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab` : `GET http://fuzz.test:${targetPort}/${i} HTTP/1.1\r\nHost: x\r\n\r\n`)).join(''))
      for (let i = 0; i < int(3); i++) bytes[int(bytes.length)] = int(256)
      break
    default: // an HTTP CONNECT, mutated, or a head too large
      bytes = Buffer.from(`CONNECT 127.0.0.1:${targetPort} HTTP/1.1\r\nHost: x\r\n${'X-Pad: '.repeat(int(2) === 0 ? 1 : 4000)}\r\n\r\n`)
      for (let i = 0; i < int(4); i++) bytes[int(bytes.length)] = int(256)
  }
  // Split at random points.
  const pieces: Buffer[] = []
  let start = 0
  while (start < bytes.length) {
    const end = Math.min(bytes.length, start + 1 + int(40))
    pieces.push(bytes.subarray(start, end))
    start = end
  }
  return pieces
}

for (const protocols of [undefined, ['mixed'] as const]) test(`thousands of random and mutated handshakes leave the server healthy and leak nothing (${protocols === undefined ? 'a SOCKS5 listener' : 'a mixed listener: SOCKS5, SOCKS4 and HTTP'})`, async (t) => {
  const echo = await startEcho(t)
  const options = { timeouts: { handshake: 300, connect: 500, bindAccept: 500 }, resolver: mapResolver({ 'fuzz.test': ['127.0.0.1'] }) }
  const { port, server } = protocols === undefined ? await startSocks(t, options) : await startListening(t, protocols, options)
  const fdsBefore = openFds()
  const random = prng(0x5eed)
  const total = 2000
  let next = 0
  async function worker(): Promise<void> {
    while (next < total) {
      next++
      const pieces = mutatedHandshake(random, echo.port)
      const leaveEarly = random() < 0.3
      const socket = connect({ host: '127.0.0.1', port })
      socket.on('error', () => {})
      socket.on('data', () => {})
      await once(socket, 'connect').catch(() => {})
      for (const piece of pieces) {
        if (socket.destroyed) break
        socket.write(piece)
        if (random() < 0.2) await new Promise((resolve) => setImmediate(resolve))
      }
      if (leaveEarly) socket.destroy()
      else {
        // Wait for the server to answer or hang up (the deadline guarantees one of them), then leave.
        // events.once rejects on an 'error' (a write that met the server's close: EPIPE): that is a hang-up too.
        await Promise.race([once(socket, 'close').catch(() => {}), new Promise((resolve) => setTimeout(resolve, 400))])
        socket.destroy()
      }
    }
  }
  await Promise.all(Array.from({ length: 64 }, worker))
  await waitFor(() => server.connections === 0, 5000)
  const c = await RawClient.connect(t, port)
  c.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', echo.port)]))
  assert.deepEqual(await c.read(2), hex('0500'))
  assert.equal((await c.read(10))[1], 0)
  c.send(Buffer.from('still alive'))
  assert.equal((await c.read(11)).toString(), 'still alive')
  c.socket.destroy()
  for (const s of echo.sockets) s.destroy()
  await waitFor(() => server.connections === 0)
  await waitFor(() => leakedSince(fdsBefore).length === 0, 3000).catch(() => {})
  assert.deepEqual(leakedSince(fdsBefore), [], 'no file descriptor is open that was not open before')
})

test('malformed datagrams, strangers and a flood on one association do not disturb another', async (t) => {
  const echo = await startUdpEcho(t)
  const { port } = await startSocks(t)
  async function associate(): Promise<{ udp: ReturnType<typeof createSocket>; relayPort: number; control: RawClient }> {
    const udp = createSocket('udp4')
    udp.bind(0, '127.0.0.1')
    await once(udp, 'listening')
    t.after(() => udp.close())
    const control = await RawClient.connect(t, port)
    control.send('050100 050300 01 00000000 0000')
    await control.read(2)
    const reply = await control.read(10)
    return { udp, relayPort: reply.readUInt16BE(8), control }
  }
  const victim = await associate()
  const noisy = await associate()
  const random = prng(7)
  const header = encodeDatagramHeader(toAddress('127.0.0.1', echo.port))
  for (let i = 0; i < 3000; i++) {
    const kind = i % 3
    const packet = kind === 0
      ? Buffer.from(Array.from({ length: Math.floor(random() * 40) }, () => Math.floor(random() * 256)))
      : kind === 1 ? Buffer.concat([hex('0000ff'), header.subarray(3), Buffer.from('frag')]) : Buffer.concat([header, Buffer.from('flood')])
    noisy.udp.send(packet, noisy.relayPort, '127.0.0.1')
  }
  const stranger = createSocket('udp4')
  t.after(() => stranger.close())
  stranger.send(Buffer.concat([header, Buffer.from('not yours')]), victim.relayPort, '127.0.0.1')
  const got = new Promise<Buffer>((resolve) => victim.udp.once('message', resolve))
  victim.udp.send(Buffer.concat([header, Buffer.from('victim ok')]), victim.relayPort, '127.0.0.1')
  const reply = await got
  assert.equal(reply.subarray(header.length).toString(), 'victim ok')
  assert.ok(!echo.received.some((r) => r.data.toString() === 'not yours'), 'a stranger cannot use an association')
})
