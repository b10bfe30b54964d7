// The codec classifies IP literals without node:net (it may not import I/O modules), yet the rest of
// socksmith asks net.isIP: the two must agree on every string, or a host would be an address to one
// part and a name to another. So ipFamily is held to net.isIP here, on edge cases and random input.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isIP } from 'node:net'
import fc from 'fast-check'
import { ipFamily } from '../../src/protocol/ip-family.js'
import { toAddress, unmapIPv4 } from '../../src/protocol/address.js'

const EDGE_CASES = [
  '', ' ', '.', ':', '::', ':::', '::1', '::ffff:1.2.3.4', '::ffff:01.2.3.4', '::1.2.3.4', '1::', '1::2::3',
  '0.0.0.0', '255.255.255.255', '256.0.0.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.02.3.4', '00.0.0.0',
  '0x7f.0.0.1', '127.1', '2130706433', '1.2.3.4 ', ' 1.2.3.4', '1.2.3.4\n', '1.2.3.-4', '１.２.３.４',
  'fe80::1%eth0', 'fe80::1%', 'fe80::1%eth 0', 'fe80::1%25', '[::1]', '::1/128', '1:2:3:4:5:6:7:8',
  '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:7:1.2.3.4',
  'ABCD:EF01::', 'abcd:ef01::g', '12345::', 'localhost', 'example.test', '1.2.3.4.example', 'ffff::1.2.3.4',
]

test('ipFamily answers what net.isIP answers on edge cases', () => {
  for (const host of EDGE_CASES) assert.equal(ipFamily(host), isIP(host), JSON.stringify(host))
})

test('ipFamily answers what net.isIP answers on random addresses, near-addresses and strings', () => {
  const ipv4 = fc.ipV4()
  const ipv6 = fc.ipV6()
  // Near misses: an address with one character changed, inserted or dropped.
  const mutated = fc.tuple(fc.oneof(ipv4, ipv6), fc.nat(), fc.constantFrom('', '0', '9', 'f', 'g', ':', '.', '%', ' ', '00', '256'), fc.boolean())
    .map(([host, at, piece, replace]) => {
      const i = at % (host.length + 1)
      return host.slice(0, i) + piece + host.slice(replace ? i + 1 : i)
    })
  const anything = fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEFxg.:%-[] ') , maxLength: 45 })
  fc.assert(fc.property(fc.oneof(ipv4, ipv6, fc.ipV4Extended(), mutated, anything), (host) => ipFamily(host) === isIP(host)), { numRuns: 20_000 })
})

test('toAddress and unmapIPv4 classify as before (net.isIP semantics: strict dotted quad)', () => {
  assert.equal(toAddress('1.2.3.4', 1).type, 'ipv4')
  assert.equal(toAddress('01.2.3.4', 1).type, 'domain')
  assert.equal(toAddress('127.1', 1).type, 'domain')
  assert.equal(toAddress('fe80::1%eth0', 1).type, 'ipv6')
  assert.equal(toAddress('::ffff:1.2.3.4', 1).type, 'ipv6')
  assert.equal(unmapIPv4('::ffff:1.2.3.4'), '1.2.3.4')
  assert.equal(unmapIPv4('::ffff:01.2.3.4'), '::ffff:01.2.3.4')
})
