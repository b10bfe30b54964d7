// Soak: mixed CONNECT / UDP ASSOCIATE / BIND load, with auth + rules + dns-cache, against the built
// server in its own process, for a bounded time (default 10 min). Loopback only; it stops by itself.
// Every interval it prints the server's RSS and open descriptors; at the end it compares the last
// third of the run with the middle third (flat after warm-up means no leak) and checks that the
// descriptors return to their idle count once the load stops.
//   npm run build && node --import tsx bench/soak.ts [--duration 600] [--interval 10] [--concurrency 48]
import { spawn } from 'node:child_process'
import { createServer as createTcpServer, connect, type AddressInfo, type Socket } from 'node:net'
import { createSocket } from 'node:dgram'
import { once } from 'node:events'
import { readdirSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { rssKiB } from './proc.js'
import { socksConnect, socksBind, socksAssociate } from 'socksmith/client'

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '600' },
    interval: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '48' },
  },
})
const durationMs = Number(values.duration) * 1000
const intervalMs = Number(values.interval) * 1000
const concurrency = Number(values.concurrency)

function fds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length
}

async function main(): Promise<void> {
  // Targets: TCP echo and UDP echo on loopback.
  const echo = createTcpServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {})
    s.pipe(s)
  }).listen(0, '127.0.0.1')
  await once(echo, 'listening')
  const echoPort = (echo.address() as AddressInfo).port
  const udpEcho = createSocket('udp4')
  udpEcho.on('message', (msg, rinfo) => udpEcho.send(msg, rinfo.port, rinfo.address))
  udpEcho.bind(0, '127.0.0.1')
  await once(udpEcho, 'listening')
  const udpPort = udpEcho.address().port

  const probe = createTcpServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const port = (probe.address() as AddressInfo).port
  await new Promise((resolve) => probe.close(resolve))
  const server = spawn('sh', ['-c', `ulimit -n 65536 2>/dev/null; exec ${process.execPath} bench/servers/socksmith.mjs --port ${port} --variant soak`], { stdio: ['ignore', 'inherit', 'inherit'] })
  const pid = server.pid!
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) })
      s.on('error', () => resolve(false))
    })
    if (ok) break
    await new Promise((r) => setTimeout(r, 100))
  }
  // The server's own process may be the shell's child after exec: it is the same pid.
  const idleFds = fds(pid)
  const proxy = { host: '127.0.0.1', port, username: 'bench', password: 'bench-password' }
  const counts = { connect: 0, udp: 0, bind: 0, junk: 0, errors: 0 }
  const deadline = Date.now() + durationMs
  const payload = Buffer.alloc(16 * 1024, 0x42)

  async function oneConnect(): Promise<void> {
    const { socket } = await socksConnect(proxy, { host: 'bench.test', port: echoPort })
    let got = 0
    socket.on('data', (d: Buffer) => (got += d.length))
    socket.end(payload)
    await once(socket, 'close')
    if (got !== payload.length) throw new Error(`echo returned ${got} bytes`)
    counts.connect++
  }
  async function oneUdp(): Promise<void> {
    const association = await socksAssociate(proxy)
    try {
      for (let i = 0; i < 10; i++) {
        const reply = once(association, 'message')
        association.send(Buffer.from(`datagram ${i}`), { host: '127.0.0.1', port: udpPort })
        await Promise.race([reply, new Promise((_, reject) => setTimeout(() => reject(new Error('udp timeout')), 2000))])
      }
      counts.udp++
    } finally {
      association.close()
    }
  }
  async function oneBind(): Promise<void> {
    const { socket, bound, accepted } = await socksBind(proxy, { host: '127.0.0.1', port: 0 })
    const peer: Socket = connect(bound.port, bound.host)
    peer.on('error', () => {})
    await accepted
    peer.end('from peer')
    let got = ''
    socket.on('data', (d: Buffer) => (got += d.toString()))
    await once(socket, 'end')
    socket.destroy()
    if (got !== 'from peer') throw new Error('bind relay lost data')
    counts.bind++
  }
  async function oneJunk(): Promise<void> {
    const s = connect(port, '127.0.0.1')
    s.on('error', () => {})
    await once(s, 'connect')
    s.write(Buffer.from([5, 1, 2, 1, 3, 0x41, 0x41]))
    s.resume()
    await once(s, 'close')
    counts.junk++
  }
  async function worker(n: number): Promise<void> {
    // Each client walks the same mix (6 CONNECT, 2 UDP, 1 BIND, 1 junk in 10), starting at its own place.
    for (let step = n; Date.now() < deadline; step++) {
      const pick = step % 10
      try {
        if (pick < 6) await oneConnect()
        else if (pick < 8) await oneUdp()
        else if (pick < 9) await oneBind()
        else await oneJunk()
      } catch {
        counts.errors++
      }
    }
  }

  const samples: { t: number; rss: number; fds: number }[] = []
  const started = Date.now()
  console.log(`soak: ${values.duration} s, ${concurrency} clients, server pid ${pid}, idle fds ${idleFds}`)
  console.log('   t(s)   RSS MiB   fds   connect     udp    bind    junk  errors')
  const sampler = setInterval(() => {
    const sample = { t: (Date.now() - started) / 1000, rss: rssKiB(pid) / 1024, fds: fds(pid) }
    samples.push(sample)
    console.log(`${sample.t.toFixed(0).padStart(7)} ${sample.rss.toFixed(1).padStart(9)} ${String(sample.fds).padStart(5)} ${String(counts.connect).padStart(9)} ${String(counts.udp).padStart(7)} ${String(counts.bind).padStart(7)} ${String(counts.junk).padStart(7)} ${String(counts.errors).padStart(7)}`)
  }, intervalMs)
  await Promise.all(Array.from({ length: concurrency }, (_, i) => worker(i)))
  clearInterval(sampler)
  // Idle: every descriptor the load opened must be gone.
  let settledFds = fds(pid)
  for (let i = 0; i < 50 && settledFds > idleFds; i++) {
    await new Promise((r) => setTimeout(r, 100))
    settledFds = fds(pid)
  }
  const third = Math.max(1, Math.floor(samples.length / 3))
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
  const middle = mean(samples.slice(third, 2 * third).map((s) => s.rss))
  const last = mean(samples.slice(2 * third).map((s) => s.rss))
  const growth = middle > 0 ? ((last - middle) / middle) * 100 : 0
  console.log(`\nRSS mean, middle third ${middle.toFixed(1)} MiB, last third ${last.toFixed(1)} MiB (${growth >= 0 ? '+' : ''}${growth.toFixed(1)}%)`)
  console.log(`descriptors: idle ${idleFds} before, ${settledFds} after the load stopped`)
  console.log(`operations: ${JSON.stringify(counts)}`)
  const flat = Math.abs(growth) < 10 && settledFds <= idleFds
  console.log(flat ? 'FLAT: no growth after warm-up, descriptors back to idle' : 'NOT FLAT: see the samples above')
  server.kill('SIGTERM')
  echo.close()
  udpEcho.close()
  process.exit(flat ? 0 : 1)
}

void main()
