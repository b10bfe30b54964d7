// The one user of the peers' auth variants, as socksmith's (bench/servers/socksmith.mjs, run.ts's
// AUTH): bench / bench-password. Compared in constant time, as the house rule says of any secret.
import { timingSafeEqual } from 'node:crypto'

export const USER = 'bench'
const PASSWORD = Buffer.from('bench-password')

export function checkLogin(user, password) {
  const given = Buffer.from(String(password))
  return user === USER && given.length === PASSWORD.length && timingSafeEqual(given, PASSWORD)
}
