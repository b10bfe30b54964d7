// A throwaway PKI for TLS tests, made with the `openssl` command at test time (never checked in,
// so no certificate in the repository can expire or leak): a CA, a server certificate for
// localhost / 127.0.0.1 / ::1 and a client certificate (CN=alice) for mutual TLS. EC P-256 keys,
// because generating them takes milliseconds where RSA takes a noticeable fraction of a second.
//
//   const openssl = peer('openssl')
//   test('over TLS', needs(openssl), async (t) => {
//     const pki = await makeTestPki(t)
//     tls.createServer({ key: pki.server.key, cert: pki.server.cert }, ...)
//   })
import { execFile } from 'node:child_process'
import { createHash, X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { TestContext } from 'node:test'
import { peer } from './peers.js'

const run = promisify(execFile)

/** A key and its certificate, as files and as PEM text. */
export interface TestIdentity {
  readonly keyFile: string
  readonly certFile: string
  readonly key: string
  readonly cert: string
  /** `sha256/<base64>` of the certificate's SubjectPublicKeyInfo, as curl's --pinnedpubkey writes it. */
  readonly pin: string
}

/** What makeTestPki made; the folder is removed after the test. */
export interface TestPki {
  readonly dir: string
  /** The self-signed CA that signed the two others. */
  readonly ca: TestIdentity
  /** CN=localhost, subjectAltName DNS:localhost, IP:127.0.0.1, IP:::1; serverAuth. */
  readonly server: TestIdentity
  /** CN=alice; clientAuth. */
  readonly client: TestIdentity
}

/** Certificates for this long: a test never outlives them, and nothing else trusts them. */
const DAYS = '2'

/**
 * Makes a fresh CA with a server and a client certificate in a temporary folder, removed after
 * `t`. Needs the openssl peer: guard the test with `needs(peer('openssl'))`. Each call makes a CA
 * of its own, so a second call is "a CA the first one's clients do not trust".
 */
export async function makeTestPki(t: TestContext, options: { name?: string } = {}): Promise<TestPki> {
  const openssl = peer('openssl').path
  const dir = mkdtempSync(join(tmpdir(), 'socksmith-pki-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = (name: string): string => join(dir, name)
  const name = options.name ?? 'socksmith test CA'
  // Extensions go in files: `-addext` would clash with the defaults of the system's openssl.cnf.
  writeFileSync(file('ca.cnf'), [
    '[req]', 'distinguished_name = dn', 'prompt = no', 'x509_extensions = ext', '[dn]', `CN = ${name}`,
    '[ext]', 'basicConstraints = critical, CA:TRUE', 'keyUsage = critical, keyCertSign, cRLSign', 'subjectKeyIdentifier = hash',
  ].join('\n'))
  writeFileSync(file('server.ext'), 'basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1\n')
  writeFileSync(file('client.ext'), 'basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n')
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  await run(openssl, ['req', '-x509', ...ec, '-config', file('ca.cnf'), '-days', DAYS, '-keyout', file('ca.key'), '-out', file('ca.pem')])
  const sign = async (who: string, cn: string): Promise<void> => {
    await run(openssl, ['req', '-new', ...ec, '-subj', `/CN=${cn}`, '-keyout', file(`${who}.key`), '-out', file(`${who}.csr`)])
    await run(openssl, ['x509', '-req', '-in', file(`${who}.csr`), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-set_serial', String(Date.now()), '-days', DAYS, '-extfile', file(`${who}.ext`), '-out', file(`${who}.pem`)])
  }
  await Promise.all([sign('server', 'localhost'), sign('client', 'alice')])
  const identity = (who: string): TestIdentity => {
    const cert = readFileSync(file(`${who}.pem`), 'utf8')
    return { keyFile: file(`${who}.key`), certFile: file(`${who}.pem`), key: readFileSync(file(`${who}.key`), 'utf8'), cert, pin: spkiPin(cert) }
  }
  return { dir, ca: identity('ca'), server: identity('server'), client: identity('client') }
}

/** `sha256/<base64>` of a PEM certificate's public key (SubjectPublicKeyInfo, DER). */
export function spkiPin(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' })
  return `sha256/${createHash('sha256').update(spki).digest('base64')}`
}
