// listen(): a port that cannot be opened is the caller's error (a typed SocksError), not an accept failure.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, isSocksError, type Logger } from 'socksmith'
import { startTcpServer } from '../helpers/net.js'

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = []
  const record = (level: string) => (message: string) => void lines.push(`${level} ${message}`)
  return { lines, error: record('error'), warn: record('warn'), info: record('info'), debug: record('debug') }
}

test('listen() on a port in use rejects with ERR_SOCKS_LISTEN naming the address, logs no accept failure, and the server can listen elsewhere', async (t) => {
  // Something else holds the port.
  const { port } = await startTcpServer(t, () => {})

  const logger = recordingLogger()
  const server = createServer({ logger })
  t.after(() => server.close({ drainTimeout: 0 }))
  await assert.rejects(server.listen({ host: '127.0.0.1', port }), (err: unknown) => {
    assert.ok(isSocksError(err), String(err))
    assert.equal(err.code, 'ERR_SOCKS_LISTEN')
    assert.equal(err.message, `cannot listen on 127.0.0.1:${port}: address already in use (EADDRINUSE)`)
    assert.equal((err.cause as NodeJS.ErrnoException).code, 'EADDRINUSE')
    return true
  })
  assert.deepEqual(logger.lines.filter((line) => line.startsWith('error')), [], 'a failed listen() is not an accept failure')
  assert.deepEqual(server.addresses(), [])

  const other = await server.listen({ host: '127.0.0.1', port: 0 })
  assert.notEqual(other.port, port)
})

test('listen() on an address this host does not have: ERR_SOCKS_LISTEN, IPv6 in brackets', async (t) => {
  const server = createServer({ logger: recordingLogger(), allowOpenProxy: true })
  t.after(() => server.close({ drainTimeout: 0 }))
  // TEST-NET addresses (RFC 5737, RFC 3849) are never assigned to a local interface: bind fails, nothing is sent.
  await assert.rejects(server.listen({ host: '192.0.2.1', port: 0 }), (err: unknown) => {
    assert.ok(isSocksError(err) && err.code === 'ERR_SOCKS_LISTEN', String(err))
    assert.equal(err.message, 'cannot listen on 192.0.2.1:0: address not available (EADDRNOTAVAIL)')
    return true
  })
  await assert.rejects(server.listen({ host: '2001:db8::1', port: 1080 }), (err: unknown) => {
    assert.ok(isSocksError(err) && err.code === 'ERR_SOCKS_LISTEN', String(err))
    assert.match(err.message, /^cannot listen on \[2001:db8::1\]:1080: .+ \(E[A-Z]+\)$/)
    return true
  })
})
