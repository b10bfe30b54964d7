// Property-based checks of the codec (fast-check): encoders and decoders round-trip, and any byte
// sequence either parses, asks for more bytes, or fails with a SocksError — never another exception.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { isSocksError } from 'socksmith'
import {
  ByteReader, encodeGreeting, parseGreeting, encodePasswordRequest, parsePasswordRequest, encodeRequest, parseRequest,
  encodeReply, parseReply, encodeDatagramHeader, parseDatagramHeader, parseMethodSelection, parsePasswordStatus, type Address,
} from 'socksmith/protocol'

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map(([a, b, c, d]) => `${a}.${b}.${c}.${d}`)
const ipv6 = fc.ipV6().filter((h) => !h.includes('.'))
const domain = fc.domain().filter((d) => Buffer.byteLength(d) <= 255)
const port = fc.nat(65535)
const address: fc.Arbitrary<Address> = fc.oneof(
  fc.record({ type: fc.constant('ipv4' as const), host: ipv4, port }),
  fc.record({ type: fc.constant('ipv6' as const), host: ipv6, port }),
  fc.record({ type: fc.constant('domain' as const), host: domain, port }),
)

/** The decoded form of an IPv6 literal is canonical; compare the bytes instead of the text. */
function sameAddress(a: Address, b: Address): boolean {
  if (a.type !== b.type || a.port !== b.port) return false
  if (a.type !== 'ipv6') return a.host === b.host
  return encodeDatagramHeader(a).equals(encodeDatagramHeader(b))
}

test('greeting, password request, request, reply and datagram header round-trip', () => {
  fc.assert(fc.property(fc.array(fc.nat(255), { minLength: 1, maxLength: 255 }), (methods) => {
    const decoded = parseGreeting(encodeGreeting(methods))
    assert.deepEqual(decoded?.value.methods, methods)
  }))
  const credential = fc.string({ minLength: 1, maxLength: 60 }).filter((s) => Buffer.byteLength(s) <= 255 && !s.includes('\uFFFD'))
  fc.assert(fc.property(credential, credential, (username, password) => {
    const decoded = parsePasswordRequest(encodePasswordRequest(username, password))
    assert.deepEqual(decoded?.value, { username, password })
  }))
  fc.assert(fc.property(fc.constantFrom(1, 2, 3) as fc.Arbitrary<1 | 2 | 3>, address, (command, destination) => {
    if (destination.type === 'domain' && /[^\x00-\x7f]/.test(destination.host)) return
    const bytes = encodeRequest(command, destination)
    const decoded = parseRequest(bytes)
    assert.ok(decoded !== null)
    assert.equal(decoded.length, bytes.length)
    assert.equal(decoded.value.command, command)
    assert.ok(sameAddress(decoded.value.destination, destination))
  }))
  fc.assert(fc.property(fc.nat(255), address, (rep, bound) => {
    const decoded = parseReply(encodeReply(rep, bound))
    assert.equal(decoded?.value.reply, rep)
    assert.ok(sameAddress(decoded!.value.bound, bound))
  }))
  fc.assert(fc.property(address, fc.uint8Array({ maxLength: 64 }), (peer, data) => {
    const packet = Buffer.concat([encodeDatagramHeader(peer), data])
    const header = parseDatagramHeader(packet)
    assert.ok(header !== null)
    assert.equal(header.frag, 0)
    assert.ok(sameAddress(header.address, peer))
    assert.deepEqual(packet.subarray(header.headerLength), Buffer.from(data))
  }))
})

test('any bytes: every parser returns a value, asks for more, or throws a SocksError', () => {
  const parsers = [parseGreeting, parsePasswordRequest, parseRequest, parseReply, parseMethodSelection, parsePasswordStatus]
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
    const buf = Buffer.from(bytes)
    for (const parse of parsers) {
      try {
        const result = parse(buf)
        if (result !== null) assert.ok(result.length > 0 && result.length <= buf.length)
      } catch (err) {
        assert.ok(isSocksError(err), `${parse.name} threw ${String(err)}`)
      }
    }
    // Datagram headers never throw: malformed packets are simply dropped.
    const header = parseDatagramHeader(buf)
    if (header !== null) assert.ok(header.headerLength <= buf.length)
  }), { numRuns: 2000 })
})

test('the reader gives the same messages however the bytes are split, and stays within its cap', () => {
  fc.assert(fc.property(address, fc.array(fc.nat(40), { maxLength: 8 }), (destination, cuts) => {
    if (destination.type === 'domain' && /[^\x00-\x7f]/.test(destination.host)) return
    const stream = Buffer.concat([encodeGreeting([0, 2]), encodePasswordRequest('u', 'p'), encodeRequest(1, destination), Buffer.from('tail')])
    const reader = new ByteReader()
    const points = [...new Set(cuts.map((c) => c % stream.length))].sort((a, b) => a - b)
    const parsed: unknown[] = []
    const steps = [parseGreeting, parsePasswordRequest, parseRequest]
    let start = 0
    for (const end of [...points, stream.length]) {
      reader.push(stream.subarray(start, end))
      start = end
      while (parsed.length < steps.length) {
        const value = reader.read(steps[parsed.length]! as (b: Buffer) => { value: unknown; length: number } | null)
        if (value === undefined) break
        parsed.push(value)
      }
    }
    assert.equal(parsed.length, 3)
    assert.deepEqual(reader.rest(), Buffer.from('tail'))
  }))
  fc.assert(fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 40 }), (chunks) => {
    const reader = new ByteReader(1024)
    let total = 0
    for (const chunk of chunks) {
      total += chunk.length
      try {
        reader.push(Buffer.from(chunk))
        assert.ok(reader.length <= 1024)
      } catch (err) {
        assert.ok(isSocksError(err) && err.code === 'ERR_SOCKS_HANDSHAKE_TOO_LARGE')
        assert.ok(total > 1024)
        return
      }
    }
  }))
})
