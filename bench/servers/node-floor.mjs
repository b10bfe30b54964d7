// The floor of a Node SOCKS5 server: the least any server written on node:net does per CONNECT.
// No validation, no auth, no timers, no logging: the greeting is answered NO AUTH unread, the
// request's address is read (IPv4, or a name net.connect looks up), net.connect dials, the reply
// goes out, and data and ends are forwarded both ways with plain listeners (no pipe()). Not a
// usable proxy (it trusts every byte); the bench runs it only when named (--only node-floor), to
// show how much of a connection's cost is node's own sockets rather than any server's code.
//   node bench/servers/node-floor.mjs --port P
import { connect, createServer } from 'node:net'

const port = Number(process.argv[process.argv.indexOf('--port') + 1])
const NO_AUTH = Buffer.from([5, 0])
const SUCCEEDED = Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0])

function target(request) {
  if (request[3] === 1) return { host: `${request[4]}.${request[5]}.${request[6]}.${request[7]}`, port: request.readUInt16BE(8) }
  const length = request[4]
  return { host: request.toString('latin1', 5, 5 + length), port: request.readUInt16BE(5 + length) }
}

const server = createServer({ allowHalfOpen: true }, (client) => {
  let greeted = false
  client.on('error', () => client.destroy())
  const onHandshake = (chunk) => {
    if (!greeted) {
      greeted = true
      client.write(NO_AUTH)
      return
    }
    client.removeListener('data', onHandshake)
    client.pause()
    const upstream = connect({ ...target(chunk), allowHalfOpen: true })
    upstream.on('error', () => client.destroy())
    upstream.on('connect', () => {
      client.write(SUCCEEDED)
      client.on('data', (data) => upstream.write(data))
      client.on('end', () => upstream.end())
      upstream.on('data', (data) => client.write(data))
      upstream.on('end', () => client.end())
      client.on('close', () => upstream.destroy())
      upstream.on('close', () => client.destroy())
      client.resume()
    })
  }
  client.on('data', onHandshake)
})
server.listen(port, '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
