/**
 * Named address ranges usable wherever a rule takes CIDRs (`from`, `to`).
 *
 * `private` is exactly RFC 1918 plus IPv6 unique-local (RFC 4193), as the name promises; carrier-grade
 * NAT space (RFC 6598) is its own preset, `cgnat`, because on some networks it is the public side.
 * `unspecified` is the whole of 0.0.0.0/8 ("this network", RFC 1122): on Linux a connect to 0.0.0.0
 * reaches the local host, so a rule keeping clients off the proxy's own services wants it next to
 * `loopback`.
 */
export const PRESETS = {
  loopback: ['127.0.0.0/8', '::1/128'],
  private: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
  'link-local': ['169.254.0.0/16', 'fe80::/10'],
  multicast: ['224.0.0.0/4', 'ff00::/8'],
  unspecified: ['0.0.0.0/8', '::/128'],
  cgnat: ['100.64.0.0/10'],
  any: ['0.0.0.0/0', '::/0'],
} as const satisfies Record<string, readonly string[]>

/** A named address range usable in `from` and `to` (`loopback`, `private`, ...). */
export type PresetName = keyof typeof PRESETS

/** Every preset name, in the order of `PRESETS`. */
export const PRESET_NAMES: readonly PresetName[] = Object.keys(PRESETS) as PresetName[]

export function isPresetName(value: string): value is PresetName {
  return Object.hasOwn(PRESETS, value)
}
