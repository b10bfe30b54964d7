/** A signal, or how to get it when it is needed (a connection makes its AbortSignal on first use: most logins never need one). */
export type SignalSource = AbortSignal | null | (() => AbortSignal)

/** The signal of a SignalSource, made now if it is made on demand. */
export function signalOf(source: SignalSource): AbortSignal | null {
  return typeof source === 'function' ? source() : source
}
