import type { Socket } from 'node:net'
import { SocksError } from 'socksmith'
import { ByteReader, type MessageParser } from 'socksmith/protocol'

/**
 * Writes a request and reads one answer from a proxy, leaving the socket clean for the relay.
 *
 * Answers are pulled with `socket.read(n)` in paused mode, at most `maxLength` bytes at a time, and
 * whatever was read past the answer is unshifted back. Reading exact amounts also means the stream
 * never emits 'end' before the relay listens for it (a proxy may send data and FIN right after its
 * answer). Fails with ERR_SOCKS_PROXY_FAILED when the proxy closes or sends too much, with
 * `signal.reason` when aborted, and with the socket's own error otherwise.
 */
export function exchange<T>(socket: Socket, request: Buffer, parse: MessageParser<T>, options: { name: string; maxLength: number; signal: AbortSignal }): Promise<T> {
  const { name, maxLength, signal } = options
  const bytes = new ByteReader(maxLength)
  return new Promise<T>((resolve, reject) => {
    let settled = false
    const finish = (err: unknown, value?: T): void => {
      if (settled) return
      settled = true
      socket.off('readable', pull)
      socket.off('error', onError)
      socket.off('end', onClose)
      socket.off('close', onClose)
      signal.removeEventListener('abort', onAbort)
      if (err !== null) {
        // A late 'error' from the dying socket must have somewhere to go.
        socket.on('error', noop)
        socket.destroy()
        reject(err)
        return
      }
      const rest = bytes.rest()
      if (rest !== null) socket.unshift(rest)
      resolve(value as T)
    }
    const pull = (): void => {
      if (settled) return
      let value: T | undefined
      try {
        while ((value = bytes.read(parse)) === undefined) {
          const available = socket.readableLength
          if (available === 0) {
            // Starts a read, or emits 'end' if the proxy has already closed; either way an event follows.
            socket.read(0)
            return
          }
          // Never more than the answer can still be, so tunnel bytes behind it cannot overflow the cap.
          const room = maxLength - bytes.length
          if (room <= 0) throw new SocksError('ERR_SOCKS_HANDSHAKE_TOO_LARGE', `answer longer than ${maxLength} bytes`)
          bytes.push(socket.read(Math.min(available, room)) as Buffer)
        }
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err)
        finish(new SocksError('ERR_SOCKS_PROXY_FAILED', `malformed answer from ${name}: ${message}`, { cause: err }))
        return
      }
      finish(null, value)
    }
    const onError = (err: Error): void => finish(err)
    const onClose = (): void => finish(new SocksError('ERR_SOCKS_PROXY_FAILED', `${name} closed the connection during the handshake`))
    const onAbort = (): void => finish(signal.reason)
    if (signal.aborted) {
      finish(signal.reason)
      return
    }
    socket.on('readable', pull)
    socket.on('error', onError)
    socket.on('end', onClose)
    socket.on('close', onClose)
    signal.addEventListener('abort', onAbort, { once: true })
    socket.write(request)
    pull()
  })
}

function noop(): void {}
