/**
 * Managed read buffers: the relay's fast path. The kernel reads a relayed socket straight into
 * buffers of this module (Node's `onread`), instead of into a fresh 64 KiB allocation per read
 * that becomes a Buffer, goes through the stream and comes out as a 'data' event.
 *
 * Large reads are what make the relay cheap: at 1 MiB a read the kernel work per GiB relayed
 * roughly halves (bench/README.md). But a buffer of its own per connection would make 10,000 idle
 * connections cost 10 GiB, so:
 * - idle and slow connections all read into one shared buffer and copy out what they got;
 * - only connections moving bulk data hold a buffer of their own (two while the peer is slow: one
 *   held by the pending write, one for the next read), and at most LARGE_BUFFERS of those are
 *   1 MiB (64 MiB in all, what 64 Envoy connections may buffer by default); past that, bulk
 *   connections get 64 KiB buffers, Node's own read size.
 *
 * Ownership rules (this module and the ReadSink it hands reads to are the only code that touches
 * these buffers):
 * 1. The shared buffer belongs to whichever socket is being read, for the length of one read
 *    callback: the next read of any socket overwrites it. A sink never sees it; it gets a copy.
 * 2. A socket's own buffer is lent to the sink for one callback. The sink says whether it still
 *    holds it when the callback returns (a write the kernel did not take at once). If it does, the
 *    buffer is *held*: the socket stops reading, its next read goes into another buffer of its
 *    own, and the sink calls releaseHeld() once that write is done (the peer drained) or can never
 *    be (the peer closed).
 * 3. A buffer goes back to the pool only through releaseHeld() / releaseReadBuffers(), when no
 *    read can land in it and no write can reference it; nothing else frees or reuses one.
 * 4. A socket without a sink (outside the relay, or a side a middleware reads through its stream),
 *    or one whose stream still holds bytes read before (they must go out first), gets a copy of
 *    each read pushed into its stream, exactly as a plain socket would.
 * 5. A socket shaped at a slow rate (setShapedReads) reads into a small shared buffer, under
 *    rule 1: each read is a copy, so such a side never holds a buffer while it waits for its bucket.
 *
 * Nothing is allocated at import: the shared buffer, the first own buffer and the probe of net's
 * internals (readInto) all happen on first use.
 */
import { Socket, type SocketConstructorOpts } from 'node:net'

/** Size of the shared buffer and of the large own buffers. */
export const READ_SIZE_LARGE = 1024 * 1024
/** Size of an own buffer once LARGE_BUFFERS are taken; also the read size that counts as bulk. */
export const READ_SIZE_BULK = 64 * 1024
/**
 * Size of the reads of a shaped socket (setShapedReads): small enough that a slow rate is smooth
 * (a read is what a shaped side may run ahead of its bucket), large enough to cost little at a
 * fast one (64 reads a second at 1 MiB/s).
 */
export const READ_SIZE_SHAPED = 16 * 1024
/** A read below this on an own buffer means the burst is over: the socket goes back to the shared buffer. */
const BURST_OVER = 16 * 1024
/** Large own buffers in use at most. */
const LARGE_BUFFERS = 64
/** Spare buffers kept for reuse, per size; more go to the garbage collector. */
const SPARE_LARGE = 4
const SPARE_SMALL = 16

/** Where a managed socket's reads go while it is relayed (the relay's pump, src/commands/relay.ts). */
export interface ReadSink {
  /**
   * A read, copied out of the shared buffer (or out of an own buffer at the end of a burst): the
   * chunk is the sink's to keep. Returns false to stop reading (backpressure, as `push()` does);
   * the socket reads again on `resume()`.
   */
  take(socket: Socket, chunk: Buffer): boolean
  /**
   * A read in the socket's own buffer, lent for this call. Returns true if nothing references
   * `view` any more once this returns (the socket reads into the same buffer again), false if a
   * pending write still does: the socket stops reading and the sink calls releaseHeld(socket) once
   * that write is done or can never be, then resumes the socket.
   */
  lend(socket: Socket, view: Buffer): boolean
}

type ManagedSocket = Socket & {
  [kSink]?: ReadSink | null
  /** The socket's own buffer, while it moves bulk data. */
  [kOwned]?: Buffer | undefined
  /** A buffer of this socket that a pending write to its peer still references (rule 2). */
  [kHeld]?: Buffer | undefined
  /** Shaped: reads READ_SIZE_SHAPED at a time, into the shared shaped buffer (setShapedReads). */
  [kShaped]?: boolean
}

const kSink = Symbol('socksmith.readSink')
const kOwned = Symbol('socksmith.ownReadBuffer')
const kHeld = Symbol('socksmith.heldReadBuffer')
const kShaped = Symbol('socksmith.shapedReads')

let shared: Buffer | null = null
/** The shared buffer of shaped sockets: rule 1 applies to it as to the large one. */
let sharedShaped: Buffer | null = null
const spareLarge: Buffer[] = []
const spareSmall: Buffer[] = []
let largeInUse = 0
/**
 * The buffer the read callback chose for its socket's next read. net calls `onread.buffer()`
 * with no argument (it cannot say for which socket) right after the callback returns, so the
 * callback leaves its choice here as its very last step and the generator takes it at once; a
 * call with nothing left here (a socket connecting) gets the shared buffer.
 */
let chosen: Buffer | null = null

/**
 * How often the fast path was taken, for tests and diagnostics: accepted sockets switched to
 * managed reads, reads copied out (shared buffer, end of a burst), reads lent without a copy.
 */
export const readBufferStats = { switched: 0, copied: 0, lent: 0 }

function sharedBuffer(): Buffer {
  return (shared ??= Buffer.allocUnsafeSlow(READ_SIZE_LARGE))
}

function shapedBuffer(): Buffer {
  return (sharedShaped ??= Buffer.allocUnsafeSlow(READ_SIZE_SHAPED))
}

/** net's `onread.buffer`: called when a socket connects and after every read callback. */
function nextReadBuffer(): Buffer {
  const buffer = chosen ?? sharedBuffer()
  chosen = null
  return buffer
}

/** An own buffer for a socket that moves bulk data. */
function takeReadBuffer(): Buffer {
  if (largeInUse < LARGE_BUFFERS) {
    largeInUse++
    return spareLarge.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE_LARGE)
  }
  return spareSmall.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE_BULK)
}

/** Back to the pool (rule 3: nothing reads into it or writes from it any more). */
function giveBack(buffer: Buffer): void {
  if (buffer.length === READ_SIZE_LARGE) {
    largeInUse--
    if (spareLarge.length < SPARE_LARGE) spareLarge.push(buffer)
  } else if (spareSmall.length < SPARE_SMALL) {
    spareSmall.push(buffer)
  }
}

/** The socket goes back to the shared buffer; its own, if it had one, is spare again. */
function dropOwned(socket: ManagedSocket): void {
  const owned = socket[kOwned]
  if (owned === undefined) return
  socket[kOwned] = undefined
  giveBack(owned)
}

function copyOf(buffer: Buffer, length: number): Buffer {
  const copy = Buffer.allocUnsafe(length)
  buffer.copy(copy, 0, 0, length)
  return copy
}

/**
 * net's `onread.callback`, `this` the socket. Returning false stops reading (net calls
 * readStop); `resume()` starts it again.
 */
function onManagedRead(this: ManagedSocket, length: number, buffer: Buffer): boolean {
  const sink = this[kSink]
  if (sink === undefined || sink === null || this.readableLength > 0) {
    // Rule 4: as a plain socket would.
    dropOwned(this)
    return this.push(copyOf(buffer, length))
  }
  if (this[kShaped] === true) {
    // Shaped: every read is a copy out of the shaped buffer (or, right after the shaping started,
    // out of the buffer it had), and the next one is small again.
    readBufferStats.copied++
    const chunk = copyOf(buffer, length)
    if (buffer === this[kOwned]) dropOwned(this)
    const ok = sink.take(this, chunk)
    chosen = shapedBuffer()
    return ok
  }
  if (buffer === shared) {
    readBufferStats.copied++
    const ok = sink.take(this, copyOf(buffer, length))
    // A large read means bulk data: from now on the socket reads into a buffer of its own.
    if (length >= READ_SIZE_BULK && this[kOwned] === undefined && !this.destroyed) chosen = this[kOwned] = takeReadBuffer()
    return ok
  }
  if (length < BURST_OVER || buffer !== this[kOwned]) {
    // The burst is over: back to the shared buffer, and this read goes out as a copy.
    readBufferStats.copied++
    const chunk = copyOf(buffer, length)
    dropOwned(this)
    return sink.take(this, chunk)
  }
  readBufferStats.lent++
  if (sink.lend(this, buffer.subarray(0, length))) {
    // Nothing holds it: read into the same buffer again.
    chosen = buffer
    return true
  }
  hold(this, buffer)
  chosen = this[kOwned] = takeReadBuffer()
  return false
}

function hold(socket: ManagedSocket, buffer: Buffer): void {
  const earlier = socket[kHeld]
  // Someone resumed the socket before the sink released its first held buffer: that one stays
  // referenced by its write, so it is not pooled (rule 3), only no longer counted.
  if (earlier !== undefined && earlier.length === READ_SIZE_LARGE) largeInUse--
  socket[kHeld] = buffer
}

/**
 * Where the socket's reads go from now on; null: into its stream, as for a plain socket. (Its own
 * buffer, if it has one, stays its own until its next read: the handle still reads into it.)
 */
export function setReadSink(socket: Socket, sink: ReadSink | null): void {
  ;(socket as ManagedSocket)[kSink] = sink
}

/**
 * Shaped reads (on) make the socket read READ_SIZE_SHAPED bytes at a time, each copied out, from
 * its next read on (from its first, if set before readInto); off: back to large reads. For a
 * socket whose reads do not go through this module it changes nothing (its reads are Node's 64 KiB).
 */
export function setShapedReads(socket: Socket, on: boolean): void {
  ;(socket as ManagedSocket)[kShaped] = on
}

/** The pending write that held the socket's buffer is done, or can never be (rule 2). */
export function releaseHeld(socket: Socket): void {
  const managed = socket as ManagedSocket
  const held = managed[kHeld]
  if (held === undefined) return
  managed[kHeld] = undefined
  giveBack(held)
}

/** The socket is closed: no read lands in its buffers and no write holds one any more. */
export function releaseReadBuffers(socket: Socket): void {
  const managed = socket as ManagedSocket
  if (managed[kSink] !== undefined) managed[kSink] = null
  dropOwned(managed)
  releaseHeld(socket)
}

// ---- switching live sockets ----
//
// Node gap worked around here: accepted sockets cannot take `onread`. The option exists only on
// `new net.Socket()` / `net.connect()` (added in https://github.com/nodejs/node/pull/25436;
// https://github.com/nodejs/node/issues/53792 on where it is accepted), and net.Server builds each
// accepted socket itself without one (`onconnection` in lib/net.js,
// https://github.com/nodejs/node/blob/v20.20.2/lib/net.js#L2204-L2212; the same in v22 and v24).
// No server option passes it on, so readInto() sets the three fields net keeps `onread` in on a
// live socket. They are symbol-keyed and set only by the Socket constructor: they are found on a
// probe Socket built with an `onread`, by name *and* by the values the constructor put there, so
// a Node that renames or reshapes them is detected and its sockets keep reading through their
// streams (managedReadsUnavailable() says why). Dialled sockets are switched the same way: they
// are made without constructor options, which cost inline-cache misses (src/net/dialer.ts, newSocket).

interface OnreadFields {
  readonly buffer: symbol
  readonly callback: symbol
  readonly generator: symbol
}

/** undefined: not probed yet; a string: why it cannot work on this Node. */
let onreadFields: OnreadFields | string | undefined

function probeOnreadFields(): OnreadFields | string {
  // Never called: the probe never connects.
  const generator = (): Buffer => Buffer.alloc(0)
  const callback = (): boolean => true
  // The constructor takes onread (net.connect passes it on), though @types/node does not say so.
  const probe = new Socket({ onread: { buffer: generator, callback } } as SocketConstructorOpts)
  const fields = probe as unknown as Record<symbol, unknown>
  const symbols = Object.getOwnPropertySymbols(probe)
  const named = (name: string): symbol | undefined => symbols.find((symbol) => symbol.description === name)
  const found = { buffer: named('kBuffer'), callback: named('kBufferCb'), generator: named('kBufferGen') }
  if (found.buffer === undefined || found.callback === undefined || found.generator === undefined) {
    return `net.Socket has no kBuffer/kBufferCb/kBufferGen fields on Node ${process.version}`
  }
  if (fields[found.buffer] !== true || fields[found.callback] !== callback || fields[found.generator] !== generator) {
    return `net.Socket keeps onread differently on Node ${process.version} (kBuffer/kBufferCb/kBufferGen do not hold what was passed)`
  }
  return found as OnreadFields
}

function fieldsOf(): OnreadFields | null {
  onreadFields ??= probeOnreadFields()
  return typeof onreadFields === 'string' ? null : onreadFields
}

/** Why accepted sockets cannot be switched to managed reads on this Node, or null if they can. */
export function managedReadsUnavailable(): string | null {
  fieldsOf()
  return typeof onreadFields === 'string' ? onreadFields : null
}

interface StreamHandle {
  useUserBuffer?: (buffer: Uint8Array) => void
}

/**
 * Switches a socket to managed reads, as if it had been created with `onread` set to this
 * module's buffer generator and callback; true if its reads now go through this module. A socket that already
 * has an `onread` is left as it is (true if it is this module's), and so are sockets without a
 * plain TCP handle (TLS, pipes) and every socket on a Node whose fields differ (false).
 */
export function readInto(socket: Socket): boolean {
  const fields = fieldsOf()
  if (fields === null) return false
  const slots = socket as unknown as Record<symbol, unknown>
  if (slots[fields.buffer] !== null) return slots[fields.callback] === onManagedRead
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle
  if (handle === null || handle === undefined || handle.constructor.name !== 'TCP' || typeof handle.useUserBuffer !== 'function') return false
  const buffer = (socket as ManagedSocket)[kShaped] === true ? shapedBuffer() : sharedBuffer()
  slots[fields.buffer] = buffer
  slots[fields.callback] = onManagedRead
  slots[fields.generator] = nextReadBuffer
  handle.useUserBuffer(buffer)
  readBufferStats.switched++
  return true
}

/** True if the socket's reads go through this module (for tests and diagnostics). */
export function readsThroughManagedBuffers(socket: Socket): boolean {
  const fields = fieldsOf()
  return fields !== null && (socket as unknown as Record<symbol, unknown>)[fields.callback] === onManagedRead
}

/**
 * Whether a server uses managed reads: its `fastRelay` option (default true), unless the
 * environment says `SOCKSMITH_FAST_RELAY=0` (or false/off/no), the operator's off switch.
 */
export function fastReadsEnabled(option: boolean | undefined): boolean {
  const env = process.env['SOCKSMITH_FAST_RELAY']?.trim().toLowerCase()
  return option !== false && env !== '0' && env !== 'false' && env !== 'off' && env !== 'no'
}
