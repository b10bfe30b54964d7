// PROXY protocol v1/v2 headers (haproxy's proxy-protocol.txt): golden vectors and malformed cases.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isSocksError } from 'socksmith'
import { parseProxyHeader, encodeProxyHeaderV1 } from 'socksmith/protocol'

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex')
const SIG = '0d0a0d0a000d0a515549540a'

test('v1 TCP4 and TCP6 lines, with what follows left unread', () => {
  const line = Buffer.from('PROXY TCP4 192.0.2.1 127.0.0.1 56324 1080\r\n\x05\x01\x00')
  assert.deepEqual(parseProxyHeader(line), {
    value: { command: 'proxy', source: { address: '192.0.2.1', port: 56324 }, destination: { address: '127.0.0.1', port: 1080 } },
    length: line.length - 3,
  })
  const six = parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 ::1 4000 1080\r\n'))
  assert.deepEqual(six?.value.source, { address: '2001:db8::1', port: 4000 })
  assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))?.value, { command: 'local', source: null, destination: null })
  assert.deepEqual(encodeProxyHeaderV1({ address: '192.0.2.1', port: 56324 }, { address: '127.0.0.1', port: 1080 }), line.subarray(0, line.length - 3))
})

test('v2 PROXY over IPv4 and IPv6, LOCAL, and TLVs skipped', () => {
  const v4 = hex(`${SIG} 21 11 000c c0000201 7f000001 dc04 0438`)
  assert.deepEqual(parseProxyHeader(v4), {
    value: { command: 'proxy', source: { address: '192.0.2.1', port: 56324 }, destination: { address: '127.0.0.1', port: 1080 } },
    length: 28,
  })
  const v6 = hex(`${SIG} 21 21 0024 20010db8000000000000000000000001 00000000000000000000000000000001 0fa0 0438`)
  assert.deepEqual(parseProxyHeader(v6)?.value.source, { address: '2001:db8::1', port: 4000 })
  assert.deepEqual(parseProxyHeader(hex(`${SIG} 20 00 0000`)), { value: { command: 'local', source: null, destination: null }, length: 16 })
  const withTlv = hex(`${SIG} 21 11 0011 c0000201 7f000001 dc04 0438 04 0002 abcd`)
  assert.equal(parseProxyHeader(withTlv)?.length, withTlv.length)
})

test('incomplete headers ask for more at every prefix', () => {
  const v1 = Buffer.from('PROXY TCP4 192.0.2.1 127.0.0.1 56324 1080\r\n')
  const v2 = hex(`${SIG} 21 11 000c c0000201 7f000001 dc04 0438`)
  for (const whole of [v1, v2]) {
    for (let n = 1; n < whole.length; n++) assert.equal(parseProxyHeader(whole.subarray(0, n)), null, `prefix ${n}`)
  }
})

test('a missing or malformed header is ERR_SOCKS_PROXY_HEADER', () => {
  const bad = [
    hex('050100'),
    Buffer.from('GET / HTTP/1.1\r\n'),
    Buffer.from('PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n'),
    Buffer.from('PROXY TCP4 192.0.2.1 127.0.0.1 70000 2\r\n'),
    Buffer.from('PROXY TCP5 a b 1 2\r\n'),
    Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`),
    hex(`${SIG} 11 11 000c`),
    hex(`${SIG} 23 11 000c`),
    hex(`${SIG} 21 11 0004 01020304`),
    hex('0d0a0d0a00ff'),
  ]
  for (const buf of bad) assert.throws(() => parseProxyHeader(buf), (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_PROXY_HEADER', buf.toString('hex'))
})
