/**
 * "Did you mean" hints for option and config errors, shared by the config loader and every plugin
 * (exported from `socksmith/plugin-kit` for third-party plugins too).
 */

/**
 * Edit distance counting an insertion, deletion, substitution or swap of two neighbours as one
 * (optimal string alignment): "prot" is one edit from "port".
 */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0
  let beforePrevious: number[] = []
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let best = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, beforePrevious[j - 2]! + 1)
      row[j] = best
    }
    beforePrevious = previous
    previous = row
  }
  return previous[b.length]!
}

/**
 * The candidate `word` most likely meant, or null: compared without case; a candidate that starts
 * with the word (or the other way round) counts as one and a half edits; up to 2 edits for short words, 3 for
 * long ones.
 *
 * @example
 * didYouMean('maxTTL', ['max', 'maxTtl'])   // 'maxTtl'
 * didYouMean('prot', ['host', 'port'])       // 'port'
 */
export function didYouMean(word: string, candidates: Iterable<string>): string | null {
  const lower = word.toLowerCase()
  let best: string | null = null
  let bestDistance = Infinity
  for (const candidate of candidates) {
    const c = candidate.toLowerCase()
    let distance = editDistance(lower, c)
    // A shared prefix ("throttleOptions" for "throttle") ranks just behind a real one-edit miss.
    if (distance > 1.5 && lower.length >= 3 && (c.startsWith(lower) || lower.startsWith(c))) distance = 1.5
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return best !== null && bestDistance <= Math.min(3, Math.max(2, Math.floor(word.length / 3))) ? best : null
}
