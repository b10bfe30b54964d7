// The error table of docs/protocol.md and the catalogue in src/core/errors.ts must agree, both ways.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { ERROR_CATALOGUE, SocksError, isSocksError, toSocksError, Reply } from 'socksmith'

test('every catalogue code is documented in docs/protocol.md with its reply, and nothing else is', () => {
  const page = readFileSync(new URL('../docs/protocol.md', import.meta.url), 'utf8')
  const table = page.split('<!-- error-table:start -->')[1]!.split('<!-- error-table:end -->')[0]!
  const documented = new Map<string, string>()
  for (const match of table.matchAll(/^\| `([A-Z_]+)` \| ([0-9]{2}|—) \|/gm)) documented.set(match[1]!, match[2]!)
  const catalogue = Object.entries(ERROR_CATALOGUE)
  assert.deepEqual([...documented.keys()].sort(), catalogue.map(([code]) => code).sort())
  for (const [code, entry] of catalogue) {
    const expected = entry.reply === null ? '—' : entry.reply.toString(16).padStart(2, '0')
    assert.equal(documented.get(code), expected, `${code} reply`)
  }
})

test('system errors map to replies by err.code, never by message', () => {
  const cases: [string, number][] = [
    ['ECONNREFUSED', Reply.CONNECTION_REFUSED],
    ['ENETUNREACH', Reply.NETWORK_UNREACHABLE],
    ['ENETDOWN', Reply.NETWORK_UNREACHABLE],
    ['EHOSTUNREACH', Reply.HOST_UNREACHABLE],
    ['EHOSTDOWN', Reply.HOST_UNREACHABLE],
    ['ENOTFOUND', Reply.HOST_UNREACHABLE],
    ['EAI_AGAIN', Reply.HOST_UNREACHABLE],
    ['ENODATA', Reply.HOST_UNREACHABLE],
    ['ETIMEDOUT', Reply.TTL_EXPIRED],
    ['EACCES', Reply.NOT_ALLOWED],
    ['EPERM', Reply.NOT_ALLOWED],
    ['EPIPE', Reply.GENERAL_FAILURE],
  ]
  for (const [code, reply] of cases) {
    const err = toSocksError(Object.assign(new Error('connection refused (misleading text)'), { code }))
    assert.equal(err.reply, reply, code)
  }
  const aggregate = Object.assign(new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })]), {})
  assert.equal(toSocksError(aggregate).reply, Reply.CONNECTION_REFUSED)
})

test('SocksError is recognised across copies by its registered brand', () => {
  const err = new SocksError('ERR_SOCKS_NOT_ALLOWED')
  assert.ok(isSocksError(err))
  assert.equal(err.reply, 2)
  const foreign = Object.create(Object.prototype, { [Symbol.for('socksmith.SocksError')]: { value: true } })
  assert.ok(isSocksError(foreign))
  assert.ok(foreign instanceof SocksError)
  assert.ok(!isSocksError(new Error('plain')))
})
