// `certificateUser`: on a TLS listener with `requestCert`, a verified client certificate naming a
// user logs in as that user, without a password (mutual TLS as authentication).
import { Method, type AuthContext, type Middleware, type NegotiateContext, type TlsInfo } from 'socksmith'
import { isLogLevelEnabled } from 'socksmith/ops'

/** Which name of a client certificate is the user: its subject CN, or a subjectAltName (DNS or email). */
export type CertificateUser = 'cn' | 'san'

/** The user a verified certificate names, or null (no verified certificate, or no known name in it). */
export function certificateUserOf(tls: TlsInfo | null, which: CertificateUser, known: ReadonlySet<string> | ReadonlyMap<string, unknown>): string | null {
  // Only verified certificates: `authorized` is what the listener's CA vouched for.
  if (tls === null || !tls.authorized) return null
  if (which === 'cn') return tls.commonName !== null && known.has(tls.commonName) ? tls.commonName : null
  for (const name of tls.altNames) {
    const colon = name.indexOf(':')
    const type = name.slice(0, colon)
    const value = name.slice(colon + 1)
    if ((type === 'DNS' || type === 'email') && known.has(value)) return value
  }
  return null
}

/**
 * Negotiate: a client whose certificate names a user and that offers NO AUTH gets it (a SOCKS5
 * greeting with 00, an HTTP CONNECT without Proxy-Authorization). One offering a password has
 * chosen to log in with it: the password is checked as usual (selected before this runs).
 */
export function createCertificateNegotiation(which: CertificateUser, known: ReadonlyMap<string, unknown>): Middleware<NegotiateContext> {
  return async function acceptCertificateUser(ctx, next) {
    if (ctx.method === null && ctx.offeredMethods.includes(Method.NO_AUTH) && certificateUserOf(ctx.tls, which, known) !== null) ctx.method = Method.NO_AUTH
    await next()
  }
}

/** Auth: the NO AUTH client of a certificate user becomes that user (unless a reload removed it). */
export function createCertificateLogin(which: CertificateUser, known: ReadonlyMap<string, unknown>, revoked: ReadonlySet<string>): Middleware<AuthContext> {
  return async function loginByCertificate(ctx, next) {
    if (ctx.method === Method.NO_AUTH && ctx.user === null) {
      const user = certificateUserOf(ctx.tls, which, known)
      if (user !== null && !revoked.has(user)) {
        ctx.user = user
        if (isLogLevelEnabled(ctx.log, 'debug')) ctx.log.debug('auth: login by client certificate', { id: ctx.id, client: ctx.client.address, user })
      }
    }
    await next()
  }
}
