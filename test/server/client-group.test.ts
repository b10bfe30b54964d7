// What one client is: every per-client count (connections, UDP associations, the auth throttle)
// groups addresses by the server's clientPrefix, IPv6 by /64 unless told otherwise.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, isSocksError, loadConfig } from 'socksmith'
import { clientGroup } from 'socksmith/net'
import { RawClient, hex, startSocks, waitFor } from '../helpers/net.js'
import { project, write } from '../config/helpers.js'

test('clientGroup: IPv4 per address, IPv6 per /64 by default; any prefix masks the bits after it', () => {
  assert.equal(clientGroup('192.0.2.7'), '192.0.2.7')
  assert.equal(clientGroup('::ffff:192.0.2.7'), '192.0.2.7', 'IPv4-mapped IPv6 is IPv4')
  assert.equal(clientGroup('2001:DB8:1:2::1'), '2001:db8:1:2::/64')
  assert.equal(clientGroup('2001:db8:1:2:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64', 'one /64 is one client')
  assert.notEqual(clientGroup('2001:db8:1:3::1'), clientGroup('2001:db8:1:2::1'))
  assert.equal(clientGroup('2001:db8::1'), '2001:db8:0:0::/64')
  assert.equal(clientGroup('fe80::1%eth0'), 'fe80:0:0:0::/64', 'the zone index is not part of the client')
  assert.equal(clientGroup('::1'), '0:0:0:0::/64')

  assert.equal(clientGroup('192.0.2.7', { ipv4: 24, ipv6: 64 }), '192.0.2.0/24')
  assert.equal(clientGroup('192.0.2.7', { ipv4: 20, ipv6: 64 }), '192.0.0.0/20')
  assert.equal(clientGroup('255.255.255.255', { ipv4: 0, ipv6: 64 }), '0.0.0.0/0')
  assert.equal(clientGroup('2001:db8:abcd:12ff::1', { ipv4: 32, ipv6: 56 }), '2001:db8:abcd:1200::/56')
  assert.equal(clientGroup('2001:db8:abcd:12ff::1', { ipv4: 32, ipv6: 48 }), '2001:db8:abcd::/48')
  assert.equal(clientGroup('2001:db8::1', { ipv4: 32, ipv6: 128 }), '2001:db8:0:0:0:0:0:1', '/128 is the address')
  assert.equal(clientGroup('2001:db8::1', { ipv4: 32, ipv6: 0 }), '::/0')
  assert.equal(clientGroup('not-an-ip'), 'not-an-ip')
})

test('clientPrefix is checked when the server is created', () => {
  for (const [clientPrefix, message] of [
    [{ ipv4: 33 }, /^clientPrefix\.ipv4: must be a prefix length from 0 to 32, found 33$/],
    [{ ipv6: 64.5 }, /^clientPrefix\.ipv6: must be a prefix length from 0 to 128, found 64\.5$/],
    [{ ipv5: 8 }, /^clientPrefix\.ipv5: unknown key/],
  ] as const) {
    assert.throws(() => createServer({ clientPrefix: clientPrefix as never }), (err: unknown) => isSocksError(err) && err.code === 'ERR_SOCKS_INVALID_ARGUMENT' && message.test(err.message))
  }
  assert.deepEqual(createServer().clientPrefix, { ipv4: 32, ipv6: 64 })
  assert.deepEqual(createServer({ clientPrefix: { ipv4: 24 } }).clientPrefix, { ipv4: 24, ipv6: 64 })
})

test('maxConnectionsPerClient counts a whole prefix as one client (127.0.0.2 and 127.0.0.3 in one /24)', async (t) => {
  const { server, port } = await startSocks(t, { maxConnectionsPerClient: 1, clientPrefix: { ipv4: 24 } })
  const first = await RawClient.connect(t, port, '127.0.0.1', '127.0.0.2')
  first.send('050100')
  assert.deepEqual(await first.read(2), hex('0500'))
  const sameBlock = await RawClient.connect(t, port, '127.0.0.1', '127.0.0.3')
  assert.deepEqual(await sameBlock.expectClose(), Buffer.alloc(0), 'refused: its /24 already holds a connection')
  const otherBlock = await RawClient.connect(t, port, '127.0.0.1', '127.0.1.3')
  otherBlock.send('050100')
  assert.deepEqual(await otherBlock.read(2), hex('0500'), 'another /24 is another client')

  // The count is released under the same key it was taken with.
  first.socket.destroy()
  await waitFor(() => server.connections === 1)
  const again = await RawClient.connect(t, port, '127.0.0.1', '127.0.0.3')
  again.send('050100')
  assert.deepEqual(await again.read(2), hex('0500'))
})

test('udp.maxAssociationsPerClient counts a whole prefix as one client', async (t) => {
  const { server, port } = await startSocks(t, { clientPrefix: { ipv4: 24 }, udp: { maxAssociationsPerClient: 1 } })
  const first = await RawClient.connect(t, port, '127.0.0.1', '127.0.0.2')
  first.send('050100 050300 01 00000000 0000')
  assert.deepEqual(await first.read(2 + 4), hex('0500 05000001'))
  await first.read(6)
  const sameBlock = await RawClient.connect(t, port, '127.0.0.1', '127.0.0.3')
  sameBlock.send('050100 050300 01 00000000 0000')
  assert.deepEqual(await sameBlock.expectClose(), hex('0500 05020001000000000000'), 'REP 02: its /24 holds an association already')
  assert.equal(server.udpAssociations, 1)
  first.socket.destroy()
  await waitFor(() => server.udpAssociations === 0)
})

test('limits.clientPrefix in a config file is checked and names the field', async (t) => {
  const dir = project(t, { 'socksmith.config.yaml': 'limits: { clientPrefix: { ipv4: 24, ipv6: 129 } }\n' })
  await assert.rejects(loadConfig({ cwd: dir }), (err: unknown) =>
    isSocksError(err) && err.code === 'ERR_CONFIG_INVALID' && err.message === 'socksmith.config.yaml: limits.clientPrefix.ipv6: must be a prefix length from 0 to 128, found 129')
  write(dir, { 'socksmith.config.yaml': 'limits: { clientPrefix: 48 }\n' })
  await assert.rejects(loadConfig({ cwd: dir }), (err: unknown) => isSocksError(err) && /limits\.clientPrefix: expected \{ ipv4\?, ipv6\? \}/.test(err.message))
})
