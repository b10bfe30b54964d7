import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import {
  AddressType,
  ByteReader,
  Command,
  DEFAULT_READER_CAP,
  Method,
  Reply,
  encodeAddress,
  encodeDatagramHeader,
  encodeGreeting,
  encodeMethodSelection,
  encodePasswordRequest,
  encodePasswordStatus,
  encodeReply,
  encodeRequest,
  parseDatagramHeader,
  parseGreeting,
  parseMethodSelection,
  parsePasswordRequest,
  parsePasswordStatus,
  parseReply,
  parseRequest,
  readAddress,
  toAddress,
  type Address,
  type MessageParser,
} from '../../src/protocol/index.js'
import { SocksError } from '../../src/core/errors.js'

/** Hex with optional spaces → bytes. Vectors are written out by hand from the RFC layouts. */
function h(hex: string): Buffer {
  return Buffer.from(hex.replace(/\s+/g, ''), 'hex')
}

function hexOf(buf: Buffer): string {
  return buf.toString('hex')
}

function assertSocksError(fn: () => unknown, code: string, reply?: number | null): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SocksError, `expected a SocksError, got ${String(err)}`)
    assert.equal(err.code, code)
    if (reply !== undefined) assert.equal(err.reply, reply)
    return true
  })
}

/** Every strict prefix of a whole message must mean "need more bytes". */
function assertEveryPrefixNeedsMore(parse: (buf: Buffer) => unknown, message: Buffer): void {
  for (let i = 0; i < message.length; i++) {
    assert.equal(parse(message.subarray(0, i)), null, `prefix of ${i}/${message.length} bytes of ${hexOf(message)}`)
  }
}

describe('greeting (RFC 1928 §3)', () => {
  test('encodes VER NMETHODS METHODS', () => {
    assert.equal(hexOf(encodeGreeting([Method.NO_AUTH])), '050100')
    assert.equal(hexOf(encodeGreeting([Method.NO_AUTH, Method.USERNAME_PASSWORD])), '05020002')
  })

  test('parses methods and reports the length used', () => {
    assert.deepEqual(parseGreeting(h('05 02 00 02')), { value: { methods: [0, 2] }, length: 4 })
    assert.deepEqual(parseGreeting(h('05 01 80 ff ff')), { value: { methods: [0x80] }, length: 3 })
  })

  test('VER ≠ 5 is ERR_SOCKS_BAD_VERSION as soon as the first byte is there', () => {
    assertSocksError(() => parseGreeting(h('04')), 'ERR_SOCKS_BAD_VERSION', null)
    assertSocksError(() => parseGreeting(h('04 01 00')), 'ERR_SOCKS_BAD_VERSION')
  })

  test('NMETHODS 0 is ERR_SOCKS_NO_METHODS', () => {
    assertSocksError(() => parseGreeting(h('05 00')), 'ERR_SOCKS_NO_METHODS', null)
  })

  test('truncated greeting needs more bytes', () => {
    assertEveryPrefixNeedsMore(parseGreeting, h('05 03 00 01 02'))
  })

  test('encoder refuses 0 or more than 255 methods', () => {
    assertSocksError(() => encodeGreeting([]), 'ERR_SOCKS_INVALID_ARGUMENT')
    assertSocksError(() => encodeGreeting(new Array<number>(256).fill(0)), 'ERR_SOCKS_INVALID_ARGUMENT')
  })
})

describe('method selection (RFC 1928 §3)', () => {
  test('encodes VER METHOD from shared buffers', () => {
    assert.equal(hexOf(encodeMethodSelection(Method.NO_AUTH)), '0500')
    assert.equal(hexOf(encodeMethodSelection(Method.USERNAME_PASSWORD)), '0502')
    assert.equal(hexOf(encodeMethodSelection(Method.NO_ACCEPTABLE)), '05ff')
    assert.equal(encodeMethodSelection(2), encodeMethodSelection(2))
  })

  test('parses', () => {
    assert.deepEqual(parseMethodSelection(h('05 00')), { value: 0, length: 2 })
    assert.deepEqual(parseMethodSelection(h('05 ff 99')), { value: 0xff, length: 2 })
  })

  test('VER ≠ 5 and truncation', () => {
    assertSocksError(() => parseMethodSelection(h('04 00')), 'ERR_SOCKS_BAD_VERSION')
    assertEveryPrefixNeedsMore(parseMethodSelection, h('05 02'))
  })
})

describe('username/password (RFC 1929 §2)', () => {
  const alice = h('01 05 616c696365 06 736563726574')

  test('encodes VER ULEN UNAME PLEN PASSWD', () => {
    assert.equal(hexOf(encodePasswordRequest('alice', 'secret')), hexOf(alice))
    // UTF-8, lengths in bytes: "ü" is two bytes.
    assert.equal(hexOf(encodePasswordRequest('ü', 'p')), '0102c3bc0170')
  })

  test('parses the request', () => {
    assert.deepEqual(parsePasswordRequest(alice), { value: { username: 'alice', password: 'secret' }, length: 14 })
    assert.deepEqual(parsePasswordRequest(h('0102c3bc0170')), { value: { username: 'ü', password: 'p' }, length: 6 })
  })

  test('auth VER ≠ 1 is ERR_SOCKS_BAD_AUTH_VERSION', () => {
    assertSocksError(() => parsePasswordRequest(h('05')), 'ERR_SOCKS_BAD_AUTH_VERSION')
    assertSocksError(() => parsePasswordStatus(h('05 00')), 'ERR_SOCKS_BAD_AUTH_VERSION')
  })

  test('truncated request needs more bytes', () => {
    assertEveryPrefixNeedsMore(parsePasswordRequest, alice)
  })

  test('encoder refuses empty or over-long fields', () => {
    assertSocksError(() => encodePasswordRequest('', 'x'), 'ERR_SOCKS_INVALID_ARGUMENT')
    assertSocksError(() => encodePasswordRequest('x', ''), 'ERR_SOCKS_INVALID_ARGUMENT')
    assertSocksError(() => encodePasswordRequest('x'.repeat(256), 'x'), 'ERR_SOCKS_INVALID_ARGUMENT')
    assertSocksError(() => encodePasswordRequest('x', 'x'.repeat(256)), 'ERR_SOCKS_INVALID_ARGUMENT')
    assert.equal(encodePasswordRequest('x'.repeat(255), 'y'.repeat(255)).length, 513)
  })

  test('status: encodes and parses, any non-zero STATUS is kept as is', () => {
    assert.equal(hexOf(encodePasswordStatus(true)), '0100')
    assert.equal(hexOf(encodePasswordStatus(false)), '0101')
    assert.deepEqual(parsePasswordStatus(h('01 00')), { value: 0, length: 2 })
    assert.deepEqual(parsePasswordStatus(h('01 7f')), { value: 0x7f, length: 2 })
    assertEveryPrefixNeedsMore(parsePasswordStatus, h('01 00'))
  })
})

/** [address, DST bytes (ATYP ADDR PORT), host as parsed back] */
const ADDRESS_VECTORS: ReadonlyArray<readonly [Address, string, string]> = [
  [toAddress('1.2.3.4', 80), '01 01020304 0050', '1.2.3.4'],
  [toAddress('255.255.255.255', 65535), '01 ffffffff ffff', '255.255.255.255'],
  [toAddress('0.0.0.0', 0), '01 00000000 0000', '0.0.0.0'],
  [toAddress('2001:db8::1', 443), '04 20010db8000000000000000000000001 01bb', '2001:db8::1'],
  [toAddress('2001:0DB8:0000:0000:0000:0000:0000:0001', 443), '04 20010db8000000000000000000000001 01bb', '2001:db8::1'],
  [toAddress('::1', 1080), '04 00000000000000000000000000000001 0438', '::1'],
  [toAddress('::', 0), '04 00000000000000000000000000000000 0000', '::'],
  [toAddress('fe80::', 1), '04 fe800000000000000000000000000000 0001', 'fe80::'],
  [toAddress('::ffff:1.2.3.4', 80), '04 00000000000000000000ffff01020304 0050', '::ffff:1.2.3.4'],
  // RFC 5952: a lone zero group is not compressed; the longest run (first on a tie) is.
  [toAddress('2001:db8:0:1:1:1:1:1', 1), '04 20010db8000000010001000100010001 0001', '2001:db8:0:1:1:1:1:1'],
  [toAddress('2001:0:0:1:0:0:0:1', 1), '04 20010000000000010000000000000001 0001', '2001:0:0:1::1'],
  [toAddress('2001:db8:0:0:1:0:0:1', 1), '04 20010db8000000000001000000000001 0001', '2001:db8::1:0:0:1'],
  [toAddress('example.com', 443), '03 0b 6578616d706c652e636f6d 01bb', 'example.com'],
  [toAddress('a', 1), '03 01 61 0001', 'a'],
]

describe('addresses (RFC 1928 §5)', () => {
  test('toAddress classifies IP literals; IPv4-mapped stays IPv6', () => {
    assert.deepEqual(toAddress('1.2.3.4', 1), { type: 'ipv4', host: '1.2.3.4', port: 1 })
    assert.deepEqual(toAddress('::ffff:1.2.3.4', 1), { type: 'ipv6', host: '::ffff:1.2.3.4', port: 1 })
    assert.deepEqual(toAddress('1.2.3.4.example', 1), { type: 'domain', host: '1.2.3.4.example', port: 1 })
  })

  for (const [address, bytes, host] of ADDRESS_VECTORS) {
    test(`${address.host} port ${address.port}`, () => {
      assert.equal(hexOf(encodeAddress(address)), hexOf(h(bytes)))
      assert.deepEqual(readAddress(h(bytes), 0), { value: { type: address.type, host, port: address.port }, length: h(bytes).length })
      assertEveryPrefixNeedsMore((buf) => readAddress(buf, 0), h(bytes))
    })
  }

  test('a non-ASCII domain name goes on the wire as its A-label', () => {
    const encoded = encodeAddress(toAddress('bücher.example', 80))
    assert.deepEqual(readAddress(encoded, 0)?.value, toAddress('xn--bcher-kva.example', 80))
  })

  test('unknown ATYP is ERR_SOCKS_ADDRESS_TYPE_NOT_SUPPORTED (REP 08)', () => {
    for (const atyp of [0x00, 0x02, 0x05, 0xff]) {
      assertSocksError(() => readAddress(Buffer.from([atyp]), 0), 'ERR_SOCKS_ADDRESS_TYPE_NOT_SUPPORTED', Reply.ADDRESS_TYPE_NOT_SUPPORTED)
    }
  })

  test('encoder refuses bad ports, bad literals and names that are not host names', () => {
    assertSocksError(() => encodeAddress(toAddress('1.2.3.4', 65536)), 'ERR_SOCKS_INVALID_ARGUMENT')
    assertSocksError(() => encodeAddress(toAddress('1.2.3.4', -1)), 'ERR_SOCKS_INVALID_ARGUMENT')
    assertSocksError(() => encodeAddress(toAddress('1.2.3.4', 1.5)), 'ERR_SOCKS_INVALID_ARGUMENT')
    assertSocksError(() => encodeAddress({ type: 'ipv4', host: '1.2.3', port: 1 }), 'ERR_SOCKS_INVALID_ARGUMENT')
    assertSocksError(() => encodeAddress({ type: 'ipv4', host: '256.1.1.1', port: 1 }), 'ERR_SOCKS_INVALID_ARGUMENT')
    assertSocksError(() => encodeAddress({ type: 'ipv6', host: 'not-ipv6', port: 1 }), 'ERR_SOCKS_INVALID_ARGUMENT')
    assertSocksError(() => encodeAddress(toAddress('x'.repeat(64), 1)), 'ERR_SOCKS_BAD_ADDRESS', Reply.HOST_UNREACHABLE)
    assertSocksError(() => encodeAddress(toAddress('nul\0.test', 1)), 'ERR_SOCKS_BAD_ADDRESS', Reply.HOST_UNREACHABLE)
    const longest = Array.from({ length: 4 }, () => 'x'.repeat(62)).join('.') + '.y' // 253 octets
    assertSocksError(() => encodeAddress(toAddress(`${longest}z`, 1)), 'ERR_SOCKS_BAD_ADDRESS', Reply.HOST_UNREACHABLE)
    assert.equal(encodeAddress(toAddress(longest, 1)).length, 1 + 1 + 253 + 2)
  })
})

describe('request (RFC 1928 §4)', () => {
  test('golden vectors for every command and address type', () => {
    assert.equal(hexOf(encodeRequest(Command.CONNECT, toAddress('1.2.3.4', 80))), hexOf(h('05 01 00 01 01020304 0050')))
    assert.equal(hexOf(encodeRequest(Command.BIND, toAddress('2001:db8::1', 21))), hexOf(h('05 02 00 04 20010db8000000000000000000000001 0015')))
    assert.equal(hexOf(encodeRequest(Command.UDP_ASSOCIATE, toAddress('0.0.0.0', 0))), hexOf(h('05 03 00 01 00000000 0000')))
    assert.equal(hexOf(encodeRequest(Command.CONNECT, toAddress('example.com', 443))), hexOf(h('05 01 00 03 0b 6578616d706c652e636f6d 01bb')))
  })

  for (const [address, bytes, host] of ADDRESS_VECTORS) {
    test(`parses CONNECT ${address.host}`, () => {
      const message = Buffer.concat([h('05 01 00'), h(bytes)])
      assert.deepEqual(parseRequest(message), {
        value: { command: Command.CONNECT, destination: { type: address.type, host, port: address.port } },
        length: message.length,
      })
      assertEveryPrefixNeedsMore(parseRequest, message)
    })
  }

  test('RSV is not checked', () => {
    assert.equal(parseRequest(h('05 01 ff 01 01020304 0050'))?.value.destination.host, '1.2.3.4')
  })

  test('request VER ≠ 5 is ERR_SOCKS_BAD_REQUEST (REP 01)', () => {
    assertSocksError(() => parseRequest(h('04')), 'ERR_SOCKS_BAD_REQUEST', Reply.GENERAL_FAILURE)
    assertSocksError(() => parseRequest(h('04 01 00 01 01020304 0050')), 'ERR_SOCKS_BAD_REQUEST')
  })

  test('unknown CMD is ERR_SOCKS_COMMAND_NOT_SUPPORTED (REP 07) before the address arrives', () => {
    for (const command of [0x00, 0x04, 0x7f, 0xff]) {
      assertSocksError(() => parseRequest(Buffer.from([5, command])), 'ERR_SOCKS_COMMAND_NOT_SUPPORTED', Reply.COMMAND_NOT_SUPPORTED)
    }
  })

  test('unknown ATYP is ERR_SOCKS_ADDRESS_TYPE_NOT_SUPPORTED (REP 08) before the address arrives', () => {
    assertSocksError(() => parseRequest(h('05 01 00 05')), 'ERR_SOCKS_ADDRESS_TYPE_NOT_SUPPORTED', Reply.ADDRESS_TYPE_NOT_SUPPORTED)
    assertSocksError(() => parseRequest(h('05 03 00 00')), 'ERR_SOCKS_ADDRESS_TYPE_NOT_SUPPORTED', Reply.ADDRESS_TYPE_NOT_SUPPORTED)
  })
})

describe('reply (RFC 1928 §6)', () => {
  test('golden vectors', () => {
    assert.equal(hexOf(encodeReply(Reply.SUCCEEDED, toAddress('127.0.0.1', 1080))), hexOf(h('05 00 00 01 7f000001 0438')))
    assert.equal(hexOf(encodeReply(Reply.SUCCEEDED, toAddress('::1', 1080))), hexOf(h('05 00 00 04 00000000000000000000000000000001 0438')))
    assert.equal(hexOf(encodeReply(Reply.SUCCEEDED, toAddress('proxy.test', 1))), hexOf(h('05 00 00 03 0a 70726f78792e74657374 0001')))
    assert.equal(hexOf(encodeReply(Reply.CONNECTION_REFUSED)), hexOf(h('05 05 00 01 00000000 0000')))
    assert.equal(hexOf(encodeReply(Reply.ADDRESS_TYPE_NOT_SUPPORTED, null)), hexOf(h('05 08 00 01 00000000 0000')))
  })

  test('failure replies without BND are shared preallocated buffers', () => {
    assert.equal(encodeReply(Reply.GENERAL_FAILURE), encodeReply(Reply.GENERAL_FAILURE))
  })

  test('parses REP and BND, including unassigned REP values', () => {
    assert.deepEqual(parseReply(h('05 00 00 01 7f000001 0438')), {
      value: { reply: 0, bound: { type: 'ipv4', host: '127.0.0.1', port: 1080 } },
      length: 10,
    })
    assert.deepEqual(parseReply(h('05 04 00 04 20010db8000000000000000000000001 0000 aa')), {
      value: { reply: 4, bound: { type: 'ipv6', host: '2001:db8::1', port: 0 } },
      length: 22,
    })
    assert.deepEqual(parseReply(h('05 0b 00 03 01 78 0001')), {
      value: { reply: 0x0b, bound: { type: 'domain', host: 'x', port: 1 } },
      length: 8,
    })
  })

  test('malformed replies', () => {
    assertSocksError(() => parseReply(h('04 00 00 01 7f000001 0438')), 'ERR_SOCKS_BAD_VERSION')
    assertSocksError(() => parseReply(h('05 00 00 07')), 'ERR_SOCKS_ADDRESS_TYPE_NOT_SUPPORTED')
    assertEveryPrefixNeedsMore(parseReply, h('05 00 00 01 7f000001 0438'))
    assertEveryPrefixNeedsMore(parseReply, h('05 00 00 03 0a 70726f78792e74657374 0001'))
  })
})

describe('UDP datagram header (RFC 1928 §7)', () => {
  test('golden vectors', () => {
    assert.equal(hexOf(encodeDatagramHeader(toAddress('8.8.8.8', 53))), hexOf(h('0000 00 01 08080808 0035')))
    assert.equal(hexOf(encodeDatagramHeader(toAddress('::1', 53))), hexOf(h('0000 00 04 00000000000000000000000000000001 0035')))
    assert.equal(hexOf(encodeDatagramHeader(toAddress('dns.test', 53))), hexOf(h('0000 00 03 08 646e732e74657374 0035')))
  })

  test('parses the header and points at DATA without copying', () => {
    const packet = h('0000 00 01 08080808 0035 cafe')
    const header = parseDatagramHeader(packet)
    assert.deepEqual(header, { frag: 0, address: { type: 'ipv4', host: '8.8.8.8', port: 53 }, headerLength: 10 })
    assert.equal(hexOf(packet.subarray(header!.headerLength)), 'cafe')
    assert.deepEqual(parseDatagramHeader(h('0000 00 03 08 646e732e74657374 0035')), {
      frag: 0,
      address: { type: 'domain', host: 'dns.test', port: 53 },
      headerLength: 15,
    })
  })

  test('FRAG is parsed', () => {
    assert.equal(parseDatagramHeader(h('0000 01 01 08080808 0035 ff'))?.frag, 1)
    assert.equal(parseDatagramHeader(h('0000 81 01 08080808 0035'))?.frag, 0x81)
  })

  test('truncated or unknown ATYP is null (dropped), never an exception', () => {
    assertEveryPrefixNeedsMore(parseDatagramHeader, h('0000 00 01 08080808 0035'))
    assertEveryPrefixNeedsMore(parseDatagramHeader, h('0000 00 04 00000000000000000000000000000001 0035'))
    assertEveryPrefixNeedsMore(parseDatagramHeader, h('0000 00 03 08 646e732e74657374 0035'))
    assert.equal(parseDatagramHeader(h('0000 00 02 08080808 0035')), null)
    assert.equal(parseDatagramHeader(h('0000 00 ff')), null)
  })
})

describe('ByteReader', () => {
  const request = h('05 01 00 03 0b 6578616d706c652e636f6d 01bb')
  const expected = { command: Command.CONNECT, destination: { type: 'domain', host: 'example.com', port: 443 } }

  test('a message split at every byte boundary parses the same', () => {
    for (let i = 1; i < request.length; i++) {
      const reader = new ByteReader()
      reader.push(request.subarray(0, i))
      assert.equal(reader.read(parseRequest), undefined, `split at ${i}`)
      assert.equal(reader.length, i)
      reader.push(request.subarray(i))
      assert.deepEqual(reader.read(parseRequest), expected, `split at ${i}`)
      assert.equal(reader.length, 0)
      assert.equal(reader.rest(), null)
    }
  })

  test('a message split into three pieces at every pair of boundaries parses the same', () => {
    for (let i = 1; i < request.length - 1; i++) {
      for (let j = i + 1; j < request.length; j++) {
        const reader = new ByteReader()
        for (const piece of [request.subarray(0, i), request.subarray(i, j), request.subarray(j)]) {
          reader.push(piece)
          if (reader.length < request.length) assert.equal(reader.read(parseRequest), undefined)
        }
        assert.deepEqual(reader.read(parseRequest), expected, `split at ${i} and ${j}`)
      }
    }
  })

  const greeting = h('05 02 00 02')
  const auth = h('01 05 616c696365 06 736563726574')
  const payload = Buffer.from('GET / HTTP/1.1\r\n\r\n')
  const pipelined = Buffer.concat([greeting, auth, request, payload])

  function readPipelined(reader: ByteReader): void {
    assert.deepEqual(reader.read(parseGreeting), { methods: [Method.NO_AUTH, Method.USERNAME_PASSWORD] })
    assert.deepEqual(reader.read(parsePasswordRequest), { username: 'alice', password: 'secret' })
    assert.deepEqual(reader.read(parseRequest), expected)
  }

  test('pipelined greeting + auth + request + payload parse in order; rest() is the payload', () => {
    const reader = new ByteReader()
    reader.push(pipelined)
    readPipelined(reader)
    assert.equal(reader.rest()?.toString(), payload.toString())
    assert.equal(reader.length, 0)
    assert.equal(reader.rest(), null)
  })

  test('the same pipeline pushed one byte at a time', () => {
    const reader = new ByteReader()
    const parsers: MessageParser<unknown>[] = [parseGreeting, parsePasswordRequest, parseRequest]
    const values: unknown[] = []
    for (let i = 0; i < pipelined.length; i++) {
      reader.push(pipelined.subarray(i, i + 1))
      if (parsers.length > 0) {
        const value = reader.read(parsers[0]!)
        if (value !== undefined) {
          values.push(value)
          parsers.shift()
        }
      }
    }
    assert.deepEqual(values, [{ methods: [0, 2] }, { username: 'alice', password: 'secret' }, expected])
    assert.equal(reader.rest()?.toString(), payload.toString())
  })

  test('rest() hands out bytes that later pushes cannot overwrite', () => {
    const reader = new ByteReader()
    reader.push(greeting.subarray(0, 1))
    reader.push(Buffer.concat([greeting.subarray(1), Buffer.from('abc')]))
    assert.deepEqual(reader.read(parseGreeting), { methods: [0, 2] })
    const rest = reader.rest()!
    reader.push(h('05'))
    reader.push(h('01 00 ffffffff'))
    assert.equal(rest.toString(), 'abc')
  })

  test('a parser error leaves the bytes unconsumed', () => {
    const reader = new ByteReader()
    reader.push(h('04 01 00'))
    assertSocksError(() => reader.read(parseGreeting), 'ERR_SOCKS_BAD_VERSION')
    assert.equal(reader.length, 3)
  })

  test('holding more than the cap throws ERR_SOCKS_HANDSHAKE_TOO_LARGE', () => {
    assertSocksError(() => new ByteReader(16).push(Buffer.alloc(17)), 'ERR_SOCKS_HANDSHAKE_TOO_LARGE')
    const reader = new ByteReader(16)
    reader.push(Buffer.alloc(10))
    reader.push(Buffer.alloc(6))
    assert.equal(reader.length, 16)
    assertSocksError(() => reader.push(Buffer.alloc(1)), 'ERR_SOCKS_HANDSHAKE_TOO_LARGE')
    assertSocksError(() => new ByteReader().push(Buffer.alloc(DEFAULT_READER_CAP + 1)), 'ERR_SOCKS_HANDSHAKE_TOO_LARGE')
    const atCap = new ByteReader()
    atCap.push(Buffer.alloc(DEFAULT_READER_CAP))
    assert.equal(atCap.length, DEFAULT_READER_CAP)
  })

  test('empty chunks are ignored', () => {
    const reader = new ByteReader()
    reader.push(Buffer.alloc(0))
    assert.equal(reader.length, 0)
    assert.equal(reader.read(parseGreeting), undefined)
  })
})

test('wire constants', () => {
  assert.deepEqual(AddressType, { IPV4: 1, DOMAIN: 3, IPV6: 4 })
  assert.deepEqual(Command, { CONNECT: 1, BIND: 2, UDP_ASSOCIATE: 3 })
})
