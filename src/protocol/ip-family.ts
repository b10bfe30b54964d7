// The codec must not import node:net (it is I/O; .dependency-cruiser.cjs rule protocol-is-pure),
// yet it needs net.isIP's exact judgement, because every other part of socksmith asks net.isIP and
// the two must never disagree about what is an address and what is a name. So these are the same
// regular expressions Node builds in lib/internal/net.js (unchanged from Node 20 to 24):
// IPv4 is strict dotted-quad (four decimal parts 0-255, no leading zeros, no shorthand); IPv6 is
// any RFC 4291 text form, an embedded dotted-quad tail allowed, with an optional %zone.
// test/protocol/ip-family.test.ts holds it to net.isIP on edge cases and random strings.

const V4_SEG = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])'
const V4_STR = `(?:${V4_SEG}\\.){3}${V4_SEG}`
const IPV4 = new RegExp(`^${V4_STR}$`)

const V6_SEG = '(?:[0-9a-fA-F]{1,4})'
const IPV6 = new RegExp(
  '^(?:' +
    `(?:${V6_SEG}:){7}(?:${V6_SEG}|:)|` +
    `(?:${V6_SEG}:){6}(?:${V4_STR}|:${V6_SEG}|:)|` +
    `(?:${V6_SEG}:){5}(?::${V4_STR}|(?::${V6_SEG}){1,2}|:)|` +
    `(?:${V6_SEG}:){4}(?:(?::${V6_SEG}){0,1}:${V4_STR}|(?::${V6_SEG}){1,3}|:)|` +
    `(?:${V6_SEG}:){3}(?:(?::${V6_SEG}){0,2}:${V4_STR}|(?::${V6_SEG}){1,4}|:)|` +
    `(?:${V6_SEG}:){2}(?:(?::${V6_SEG}){0,3}:${V4_STR}|(?::${V6_SEG}){1,5}|:)|` +
    `(?:${V6_SEG}:){1}(?:(?::${V6_SEG}){0,4}:${V4_STR}|(?::${V6_SEG}){1,6}|:)|` +
    `(?::(?:(?::${V6_SEG}){0,5}:${V4_STR}|(?::${V6_SEG}){1,7}|:))` +
    ')(?:%[0-9a-zA-Z-.:]{1,})?$',
)

/** 4 for an IPv4 literal, 6 for an IPv6 literal, 0 for anything else: what `net.isIP` answers. */
export function ipFamily(host: string): 0 | 4 | 6 {
  if (IPV4.test(host)) return 4
  if (IPV6.test(host)) return 6
  return 0
}
