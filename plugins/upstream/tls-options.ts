import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { resolve } from 'node:path'
import { SocksError, type OptionPath } from 'socksmith'
import { checkKeys, describe, describeKind, isPlainObject } from 'socksmith/plugin-kit'
import { isPin, UpstreamTls, type UpstreamTlsSettings } from './tls.js'
import { isHostName } from './url.js'

/** How socksmith verifies a TLS upstream and which client certificate it shows: `{ url, tls: { ... } }`. */
export interface UpstreamTlsOptions {
  /**
   * CA certificates to trust for this upstream instead of the default store: a file path (relative
   * to the config file) or PEM text, or a list of them.
   */
  ca?: string | string[]
  /** SNI and the name the certificate must carry. Default: the URL's host, when it is a name. */
  servername?: string
  /**
   * `sha256/<base64>` of the certificate's SubjectPublicKeyInfo (as curl `--pinnedpubkey` writes
   * it), or a list of them (any one may match). Checked on top of verification; a mismatch fails.
   */
  pin?: string | string[]
  /** Client certificate for mutual TLS: a file path or PEM text. Needs `key`. */
  cert?: string
  /** The client certificate's private key (unencrypted PEM): a file path or PEM text. Never logged. */
  key?: string
  /** `true` turns certificate verification off (a warning is logged at start). Pins are still checked. */
  insecure?: boolean
}

/** PEM written into the options, or a file to read it from at setup; `field` names it in messages. */
export type PemSource = ({ readonly pem: string } | { readonly file: string }) & { readonly field: string }

/** Validated TLS options: files not read yet (setup reads them, so a reload reads them again). */
export interface TlsSpec {
  readonly ca: readonly PemSource[] | null
  readonly servername: string | null
  readonly pins: readonly string[]
  readonly cert: PemSource | null
  readonly key: PemSource | null
  readonly insecure: boolean
  /** `chain[1].tls`, for messages. */
  readonly source: string
}

const TLS_KEYS = ['ca', 'servername', 'pin', 'cert', 'key', 'insecure'] as const

/** Checks a hop's `tls` object; `field` is its path (`pool[0].tls`). Nothing is read here. */
export function parseTlsOptions(raw: unknown, field: string, at: OptionPath): TlsSpec {
  if (!isPlainObject(raw)) at.fail(field, `must be an object { ca, servername, pin, cert, key, insecure }, found ${describe(raw)}`)
  checkKeys(raw, TLS_KEYS, at, { path: field })
  const dir = at.dir ?? process.cwd()
  const source = (value: unknown, key: string, secret = false): PemSource => {
    if (typeof value !== 'string' || value.trim() === '') at.fail(`${field}.${key}`, `must be a file path or PEM text, found ${secret ? describeKind(value) : describe(value)}`)
    const named = `${field}.${key}`
    return value.trimStart().startsWith('-----BEGIN ') ? { pem: value, field: named } : { file: resolve(dir, value), field: named }
  }
  let ca: PemSource[] | null = null
  if (raw.ca !== undefined) {
    const list = Array.isArray(raw.ca) ? raw.ca : [raw.ca]
    if (list.length === 0) at.fail(`${field}.ca`, 'must name at least one CA certificate (a file path or PEM text)')
    ca = list.map((value, i) => source(value, Array.isArray(raw.ca) ? `ca[${i}]` : 'ca'))
  }
  let servername: string | null = null
  if (raw.servername !== undefined) {
    if (typeof raw.servername !== 'string' || !(isHostName(raw.servername) || isIP(raw.servername) !== 0)) at.fail(`${field}.servername`, `must be a host name, found ${describe(raw.servername)}`)
    // SNI carries names only (RFC 6066 §3); an IP URL is checked against the certificate's IP addresses.
    if (isIP(raw.servername) !== 0) at.fail(`${field}.servername`, 'must be a host name, not an IP address (leave it out to verify the URL\'s IP)')
    servername = raw.servername.toLowerCase()
  }
  let pins: string[] = []
  if (raw.pin !== undefined) {
    const list = Array.isArray(raw.pin) ? raw.pin : [raw.pin]
    if (list.length === 0) at.fail(`${field}.pin`, 'must give at least one pin')
    pins = list.map((pin, i) => {
      const at_ = Array.isArray(raw.pin) ? `${field}.pin[${i}]` : `${field}.pin`
      if (typeof pin !== 'string' || !isPin(pin)) at.fail(at_, `must be sha256/<base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo> (see docs/tls.md), found ${describe(pin)}`)
      return pin
    })
  }
  const cert = raw.cert === undefined ? null : source(raw.cert, 'cert')
  const key = raw.key === undefined ? null : source(raw.key, 'key', true)
  if ((cert === null) !== (key === null)) at.fail(`${field}.${cert === null ? 'cert' : 'key'}`, 'is needed too: a client certificate is cert and key')
  let insecure = false
  if (raw.insecure !== undefined) {
    if (typeof raw.insecure !== 'boolean') at.fail(`${field}.insecure`, `must be true or false, found ${describe(raw.insecure)}`)
    insecure = raw.insecure
  }
  if (insecure && ca !== null) at.fail(`${field}.ca`, 'has nothing to do with insecure: true (no verification); give one or the other')
  return { ca, servername, pins, cert, key, insecure, source: field }
}

/**
 * Reads the files of `spec` and builds its secure context: at setup, so every start and every
 * reload reads them once. A file that cannot be read, PEM that does not parse or a key that does
 * not match its certificate is ERR_PLUGIN_OPTIONS naming the field (never the key's content).
 */
export async function loadTls(spec: TlsSpec): Promise<UpstreamTls> {
  const read = async (source: PemSource): Promise<string> => {
    if ('pem' in source) return source.pem
    try {
      return await readFile(source.file, 'utf8')
    } catch (err) {
      throw new SocksError('ERR_PLUGIN_OPTIONS', `${source.field}: cannot read ${source.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
    }
  }
  const settings: { -readonly [K in keyof UpstreamTlsSettings]: UpstreamTlsSettings[K] } = { pins: spec.pins, insecure: spec.insecure }
  if (spec.servername !== null) settings.servername = spec.servername
  if (spec.ca !== null) settings.ca = await Promise.all(spec.ca.map(read))
  if (spec.cert !== null && spec.key !== null) {
    settings.cert = await read(spec.cert)
    settings.key = await read(spec.key)
  }
  try {
    return new UpstreamTls(settings)
  } catch (err) {
    // OpenSSL's messages name the failing step ("key values mismatch", "no start line"), not the PEM.
    throw new SocksError('ERR_PLUGIN_OPTIONS', `${spec.source}: unusable TLS material (ca, cert or key): ${(err as Error).message}`, { cause: err })
  }
}
