// A target that resets the connection while the dialled socket is between the dial and the relay
// (a connect middleware still running after next(), a relay middleware awaiting before next()):
// the socket has no listener of the relay yet, and an 'error' nobody hears ends the process. The
// connection must simply end, every other connection living on.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { ConnectContext, ConnectionContext, RelayContext } from 'socksmith'
import { connectThrough, hex, ipv4Request, RawClient, startEcho, startSocks, startTcpServer, waitFor } from '../helpers/net.js'

/** A target that accepts, then resets (RST) every connection 100 ms later: after the dial, before the relay. */
function startResetter(t: Parameters<typeof startTcpServer>[0]) {
  return startTcpServer(t, (socket) => {
    socket.on('error', () => {})
    setTimeout(() => socket.resetAndDestroy(), 100)
  })
}

describe('a target that resets before the relay runs', () => {
  for (const where of ['relay middleware before next()', 'connect middleware after next()'] as const) {
    test(`${where}: the connection ends, the server lives on`, async (t) => {
      const resetter = await startResetter(t)
      const echo = await startEcho(t)
      const ended: ConnectionContext[] = []
      const { port, server } = await startSocks(t, {}, (s) => {
        if (where === 'relay middleware before next()') {
          s.use('relay', async function waitBeforeRelaying(ctx: RelayContext, next) {
            // Long enough for the target's RST to arrive while nobody else listens on the socket.
            if (ctx.destination.port === resetter.port) await waitFor(() => ctx.outbound?.destroyed === true, 2000)
            await next()
          })
        } else {
          s.use('connect', async function waitAfterDialling(ctx: ConnectContext, next) {
            await next()
            if (ctx.destination.port === resetter.port) await waitFor(() => ctx.outbound?.destroyed === true, 2000)
          })
        }
      })
      server.on('disconnect', (ctx: ConnectionContext) => ended.push(ctx))
      const client = await RawClient.connect(t, port)
      client.send(Buffer.concat([hex('050100'), ipv4Request(1, '127.0.0.1', resetter.port)]))
      assert.deepEqual(await client.read(2), hex('0500'))
      const reply = await client.read(10)
      // Past the relay middleware the success reply is out; a connect phase whose socket is gone
      // by its end has nothing to report a success for (REP 01).
      assert.equal(reply[1], where === 'relay middleware before next()' ? 0x00 : 0x01)
      // The target's side is gone: the client's is ended (half-close), and closes once the client ends too.
      await client.expectClose(3000)
      client.socket.end()
      await waitFor(() => ended.length === 1, 3000)
      // Still serving.
      const other = await connectThrough(t, port, echo.port)
      other.send(Buffer.from('ping'))
      assert.equal((await other.read(4)).toString(), 'ping')
      other.socket.end()
    })
  }
})
