import type { Socket } from 'node:net'

/** See hearErrors(). */
function ignoreErrorBeforeRelay(): void {}

/**
 * Gives `socket` an 'error' listener if it has none. Between the dial and the relay (a connect
 * middleware's code after next(), a relay middleware awaiting before next()) nobody else listens
 * on the dialled socket, and a target's reset there is an 'error' event nobody hears: node ends
 * the process. The socket closes all the same; the relay finds it closed and ends the connection.
 */
export function hearErrors(socket: Socket): void {
  if (socket.listenerCount('error') === 0) socket.on('error', ignoreErrorBeforeRelay)
}
