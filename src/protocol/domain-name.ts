import { domainToASCII } from 'node:url'

/**
 * What socksmith accepts as a domain name in DST.ADDR (ATYP 03) and in UDP datagram headers.
 *
 * RFC 1928 §5 says only that the field is a length octet and a name "with no terminating NUL". The
 * resolver behind it (getaddrinfo) reads a C string, so `evil\0.allowed.test` would be *checked* as
 * one name and *resolved* as another. A name is therefore accepted only in the form a resolver reads
 * the same way the rules do (RFC 1035 §2.3.1 / RFC 1123 §2.1 host names, plus `_`, which service
 * names use):
 *
 * - letters, digits, `-` and `_` in dot-separated labels of 1 to 63 octets;
 * - at most 253 octets, not counting one optional trailing dot (the root);
 * - no empty label (no leading dot, no `..`);
 * - an internationalised name (any non-ASCII character) is converted to its IDNA A-label form
 *   (`bücher.example` → `xn--bcher-kva.example`), which is what a resolver is asked; one that has
 *   no valid A-label form is refused.
 *
 * Anything else — NUL or any control character, whitespace, `%`, `/`, `@`, `:`, … — is not a name.
 */
export function toAsciiDomainName(name: string): string | null {
  let ascii = name
  for (let i = 0; i < name.length; i++) {
    if (name.charCodeAt(i) > 0x7e) {
      ascii = domainToASCII(name)
      if (ascii === '') return null
      break
    }
  }
  return isValidDomainName(ascii) ? ascii : null
}

/** True for an ASCII host name as {@link toAsciiDomainName} describes it (no conversion). */
export function isValidDomainName(name: string): boolean {
  let end = name.length
  if (end > 0 && name.charCodeAt(end - 1) === 46 /* . */) end--
  if (end === 0 || end > 253) return false
  let label = 0
  for (let i = 0; i < end; i++) {
    const c = name.charCodeAt(i)
    if (c === 46 /* . */) {
      if (label === 0) return false
      label = 0
      continue
    }
    if (!isNameChar(c) || ++label > 63) return false
  }
  return label > 0
}

function isNameChar(c: number): boolean {
  return (c >= 97 && c <= 122) /* a-z */ || (c >= 65 && c <= 90) /* A-Z */ || (c >= 48 && c <= 57) /* 0-9 */ || c === 45 /* - */ || c === 95 /* _ */
}
