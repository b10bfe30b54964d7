/**
 * Read buffers for relayed sockets (see onRelayRead in relay.ts).
 *
 * Large reads are what make the relay cheap: at 1 MiB a read (Node's own reads are 64 KiB) the
 * kernel work per GiB relayed roughly halves (bench/README.md). But a buffer of its own per
 * connection would make 10,000 idle connections cost 10 GiB, so:
 * - idle and slow connections all read into one shared buffer and copy out what they got;
 * - only connections moving bulk data hold a buffer of their own (two while the peer is slow: one
 *   held by the pending write, one for the next read), and at most LARGE_BUFFERS of those are
 *   1 MiB (64 MiB in all, what 64 Envoy connections may buffer by default); past that, bulk
 *   connections get 64 KiB buffers, Node's own read size.
 */
import { Socket } from 'node:net'

/** Size of the shared buffer and of the large private buffers. */
export const READ_SIZE_LARGE = 1024 * 1024
/** Size of a private buffer once LARGE_BUFFERS are taken; also the read size that counts as bulk. */
export const READ_SIZE_BULK = 64 * 1024
/** Large private buffers in use at most. */
const LARGE_BUFFERS = 64
/** Spare buffers kept for reuse, per size; more go to the garbage collector. */
const SPARE_LARGE = 4
const SPARE_SMALL = 16

export const sharedReadBuffer = Buffer.allocUnsafeSlow(READ_SIZE_LARGE)

const spareLarge: Buffer[] = []
const spareSmall: Buffer[] = []
let largeInUse = 0
/** The buffer the read callback chose for its socket's next read (net asks right after the callback). */
let next: Buffer = sharedReadBuffer

/** A private buffer for a connection that moves bulk data; give it back with releaseReadBuffer(). */
export function takeReadBuffer(): Buffer {
  if (largeInUse < LARGE_BUFFERS) {
    largeInUse++
    return spareLarge.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE_LARGE)
  }
  return spareSmall.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE_BULK)
}

export function releaseReadBuffer(buffer: Buffer): void {
  if (buffer.length === READ_SIZE_LARGE) {
    largeInUse--
    if (spareLarge.length < SPARE_LARGE) spareLarge.push(buffer)
  } else if (spareSmall.length < SPARE_SMALL) {
    spareSmall.push(buffer)
  }
}

export function setNextReadBuffer(buffer: Buffer): void {
  next = buffer
}

/** net's `onread.buffer`: called at connect and after every read callback. */
export function nextReadBuffer(): Buffer {
  const buffer = next
  next = sharedReadBuffer
  return buffer
}

/**
 * net keeps a socket's `onread` in three symbol-keyed fields that only its constructor sets, and
 * net.Server gives no way to pass `onread` for accepted sockets. readInto() sets those fields on
 * a live socket, found by their names on a fresh Socket. If a Node version names or stores them
 * differently, this is null and those sockets keep reading through their stream, as before.
 */
const onreadFields = findOnreadFields()

function findOnreadFields(): { buffer: symbol; callback: symbol; generator: symbol } | null {
  const probe = new Socket()
  const symbols = Object.getOwnPropertySymbols(probe)
  const byName = (name: string): symbol | undefined => symbols.find((symbol) => symbol.description === name)
  const buffer = byName('kBuffer')
  const callback = byName('kBufferCb')
  const generator = byName('kBufferGen')
  if (buffer === undefined || callback === undefined || generator === undefined) return null
  const fields = probe as unknown as Record<symbol, unknown>
  if (fields[buffer] !== null || fields[callback] !== null || fields[generator] !== null) return null
  return { buffer, callback, generator }
}

interface StreamHandle {
  useUserBuffer?: (buffer: Uint8Array) => void
}

/**
 * From now on the socket's reads go to `callback` (as with `net.connect({ onread })`), reading
 * into the buffers of this module. Sockets that already have an `onread` are left as they are,
 * and so are sockets without a plain TCP handle (TLS, pipes) or on a Node whose fields differ.
 */
export function readInto<S extends Socket>(socket: S, callback: (this: S, length: number, buffer: Buffer) => boolean): void {
  if (onreadFields === null) return
  const fields = socket as unknown as Record<symbol, unknown>
  if (fields[onreadFields.buffer] !== null) return
  const handle = (socket as unknown as { _handle: StreamHandle | null })._handle
  if (handle === null || handle.constructor.name !== 'TCP' || typeof handle.useUserBuffer !== 'function') return
  fields[onreadFields.buffer] = sharedReadBuffer
  fields[onreadFields.callback] = callback
  fields[onreadFields.generator] = nextReadBuffer
  handle.useUserBuffer(sharedReadBuffer)
}
