import type { Plugin } from 'socksmith'

export interface MaxDurationOptions {
  /** Seconds a relayed connection may last. */
  seconds: number
}

declare const maxDuration: Plugin<{ ms: number }>
export default maxDuration
