import type { Socket } from 'node:net'
import { Reply, SocksError, type Address } from 'socksmith'
import { encodeSocks4Request, parseSocks4Reply, Socks4Status } from 'socksmith/protocol'
import { exchange } from './exchange.js'

/**
 * What a SOCKS4 refusal means for our client. SOCKS4 has one code for "refused by rules" and "the
 * connect failed", so 91 can only be a general failure; the identd codes are refusals.
 */
const STATUS_TO_REPLY: Readonly<Record<number, Reply>> = {
  [Socks4Status.REJECTED]: Reply.GENERAL_FAILURE,
  [Socks4Status.NO_IDENTD]: Reply.NOT_ALLOWED,
  [Socks4Status.IDENTD_MISMATCH]: Reply.NOT_ALLOWED,
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  [Socks4Status.REJECTED]: 'request rejected or failed',
  [Socks4Status.NO_IDENTD]: 'no identd reachable on the client',
  [Socks4Status.IDENTD_MISMATCH]: 'identd reports a different user id',
}

/**
 * Runs a SOCKS4/4a CONNECT over `socket`. Resolves with the reply's address when it names one
 * (not 0.0.0.0), else null. A refusal is ERR_SOCKS_REPLY with the matching SOCKS5 REP.
 */
export async function socks4Connect(socket: Socket, destination: Address, userId: string, options: { name: string; signal: AbortSignal }): Promise<Address | null> {
  const request = encodeSocks4Request(destination, userId)
  const { status, bound } = await exchange(socket, request, parseSocks4Reply, { name: options.name, maxLength: 8, signal: options.signal })
  if (status !== Socks4Status.GRANTED) {
    const text = STATUS_TEXT[status] ?? `unknown status ${status}`
    throw new SocksError('ERR_SOCKS_REPLY', `${options.name} refused CONNECT: ${text} (${status})`, { reply: STATUS_TO_REPLY[status] ?? Reply.GENERAL_FAILURE })
  }
  return bound.host === '0.0.0.0' ? null : bound
}
