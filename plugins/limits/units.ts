// Sizes and rates as operators write them: 1048576, "64KiB", "10GB", "1.5 MiB"; rates also in bits,
// as links are sold: "8mbit" (= 1,000,000 bytes/s), "100Mbps"; "/s" is optional.

const SIZE = /^(\d+(?:\.\d+)?)\s*(?:([kmgt])(i)?)?(b|byte|bytes|bit|bits|bps)?(?:\/s)?$/i
const POWER: Record<string, number> = { k: 1, m: 2, g: 3, t: 4 }

function parse(value: unknown, allowBits: boolean): number | null {
  if (typeof value === 'number') return Number.isFinite(value) && value > 0 ? value : null
  if (typeof value !== 'string') return null
  const match = SIZE.exec(value.trim())
  if (match === null) return null
  const [, digits, prefix, binary, unit] = match
  const lower = unit?.toLowerCase()
  const bits = lower === 'bit' || lower === 'bits' || lower === 'bps'
  if (bits && !allowBits) return null
  // "8mbit", "100Mbps": network units are decimal, and eight bits make a byte. "KB" is 1000 and
  // "KiB" 1024, as the units say; a bare "8m" counts bytes.
  const base = binary !== undefined ? 1024 : 1000
  const scale = prefix === undefined ? 1 : base ** (POWER[prefix.toLowerCase()] as number)
  const n = (Number(digits) * scale) / (bits ? 8 : 1)
  return Number.isFinite(n) && n > 0 ? n : null
}

/** Bytes from a positive number or a string such as `"64KiB"`, `"10GB"`, `"1.5 MiB"`; null if neither. */
export function parseByteSize(value: unknown): number | null {
  const n = parse(value, false)
  return n === null ? null : Math.round(n)
}

/** Bytes per second from a positive number or a string such as `"1MiB"`, `"512KiB/s"`, `"8mbit"`, `"100Mbps"`; null if neither. */
export function parseByteRate(value: unknown): number | null {
  return parse(value, true)
}
