import type { AddressInfo } from 'node:net'
import { isSocksError } from '../core/errors.js'

// What the CLI says: errors on stderr, the addresses it listens on on stdout (scripts read them).

export function fail(message: string): void {
  process.stderr.write(`socksmith: ${message}\n`)
}

export function errorText(err: unknown): string {
  if (isSocksError(err)) return `${err.message} (${err.code})`
  return err instanceof Error ? err.message : String(err)
}

export function printMetricsAddress(address: AddressInfo | null): void {
  if (address !== null) process.stdout.write(`socksmith metrics on http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}/metrics\n`)
}

export /** One line per listener on stdout that scripts (and tests) can wait for. */
function printListening(address: AddressInfo): void {
  process.stdout.write(`socksmith listening on ${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}\n`)
}
