// Counts how often node's net.Socket constructor hands stream.Duplex an options object whose hidden
// class (V8 map) differs from the previous socket's. A changing map makes every option read in the
// stream constructors miss V8's inline caches (bench/README.md, "Node 20 gives every accepted
// socket's options a map of its own"). Preload it into any server:
//   node --allow-natives-syntax -r ./bench/probes/socket-options-map.cjs dist/src/cli/bin.cjs
// It prints `probe n=N same=S diff=D` to stderr every 1,000 sockets made from a handle (accepted
// sockets). Diagnostic only: it replaces stream.Duplex with a wrapper, so never run it in production.
const stream = require('node:stream')

const Duplex = stream.Duplex
let previous = null
let sockets = 0
let same = 0
let differ = 0

function ProbedDuplex(options) {
  if (options != null && options.handle) {
    sockets++
    if (previous !== null) {
      if (%HaveSameMap(previous, options)) same++
      else differ++
    }
    previous = options
    if (sockets % 1000 === 0) process._rawDebug(`probe n=${sockets} same=${same} diff=${differ}`)
  }
  return Duplex.call(this, options)
}
ProbedDuplex.prototype = Duplex.prototype
Object.setPrototypeOf(ProbedDuplex, Duplex)
stream.Duplex = ProbedDuplex
