// A socksmith plugin as published on npm: plain JavaScript (ESM), `socksmith` a peer dependency,
// the plugin object the default export.
import { definePlugin } from 'socksmith'

export default definePlugin({
  name: 'max-duration',

  parseOptions(raw, at) {
    const seconds = raw?.seconds
    if (typeof seconds !== 'number' || !(seconds > 0)) at.fail('seconds', `must be a positive number of seconds, found ${JSON.stringify(seconds)}`)
    return { ms: seconds * 1000 }
  },

  setup(host, { ms }) {
    // Around the relay: start a timer when the transfer starts, clear it when it ends.
    host.use('relay', async function maxDuration(ctx, next) {
      const timer = setTimeout(() => {
        ctx.log.info(`max-duration: closing connection ${ctx.id} after ${ms} ms`)
        ctx.socket.destroy()
        ctx.outbound?.destroy()
      }, ms)
      try {
        await next()
      } finally {
        clearTimeout(timer)
      }
    })
  },
})
