import { SocksError } from '../core/errors.js'

/** A decoder over the bytes collected so far: a value and its length, or null when more bytes are needed. */
export type MessageParser<T> = (buf: Buffer) => { readonly value: T; readonly length: number } | null

/**
 * Default hard cap on bytes held. A handshake message is at most 513 bytes, and the driver stops
 * reading while nobody waits for a message, so what is held is at most a message plus one socket
 * read (64 KiB) of pipelined payload: the cap leaves room for that and stops anything beyond it.
 */
export const DEFAULT_READER_CAP = 192 * 1024

/**
 * Collects handshake bytes until a whole message is there.
 *
 * The common case, a message arriving in one chunk, is parsed straight from that chunk with no copy.
 * Only when a message spans chunks are the bytes copied into one growing scratch buffer (amortised
 * doubling), so a client writing one byte at a time costs one copy per byte, never a concat per chunk.
 * Whatever follows a parsed message (pipelined requests, early payload) stays available via `rest()`.
 */
export class ByteReader {
  #pending: Buffer | null = null
  #scratch: Buffer | null = null
  readonly #cap: number

  constructor(cap: number = DEFAULT_READER_CAP) {
    this.#cap = cap
  }

  /** Bytes collected and not yet consumed. */
  get length(): number {
    return this.#pending === null ? 0 : this.#pending.length
  }

  /** Adds received bytes; throws ERR_SOCKS_HANDSHAKE_TOO_LARGE past the reader's cap. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return
    const pending = this.#pending
    if (pending === null) {
      if (chunk.length > this.#cap) throw new SocksError('ERR_SOCKS_HANDSHAKE_TOO_LARGE')
      this.#pending = chunk
      return
    }
    const total = pending.length + chunk.length
    if (total > this.#cap) throw new SocksError('ERR_SOCKS_HANDSHAKE_TOO_LARGE')
    let scratch = this.#scratch
    const inScratch = scratch !== null && pending.buffer === scratch.buffer && pending.byteOffset >= scratch.byteOffset &&
      pending.byteOffset + pending.length <= scratch.byteOffset + scratch.length
    if (inScratch && pending.byteOffset - scratch!.byteOffset + total <= scratch!.length) {
      // Room after the pending bytes: append in place.
      chunk.copy(scratch!, pending.byteOffset - scratch!.byteOffset + pending.length)
      this.#pending = scratch!.subarray(pending.byteOffset - scratch!.byteOffset, pending.byteOffset - scratch!.byteOffset + total)
      return
    }
    if (scratch === null || scratch.length < total) {
      scratch = Buffer.allocUnsafe(Math.min(this.#cap, Math.max(512, total * 2)))
    }
    // copyWithin semantics: Buffer.copy handles overlap when moving pending to the scratch start.
    pending.copy(scratch, 0)
    chunk.copy(scratch, pending.length)
    this.#scratch = scratch
    this.#pending = scratch.subarray(0, total)
  }

  /** Parses one message from the front; consumes it and returns its value, or returns undefined if incomplete. */
  read<T>(parse: MessageParser<T>): T | undefined {
    const pending = this.#pending
    if (pending === null) return undefined
    const result = parse(pending)
    if (result === null) return undefined
    this.#pending = result.length >= pending.length ? null : pending.subarray(result.length)
    return result.value
  }

  /** Takes everything left (for example payload pipelined after the request). The caller owns the bytes. */
  rest(): Buffer | null {
    const pending = this.#pending
    this.#pending = null
    if (pending === null) return null
    // A view into scratch must not be shared with code that may outlive this reader.
    return this.#scratch !== null && pending.buffer === this.#scratch.buffer ? Buffer.from(pending) : pending
  }
}
