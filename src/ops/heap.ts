import { scryptSync } from 'node:crypto'

let done = false

/**
 * Stops glibc from handing freed heap memory back to the kernel after every relayed chunk.
 *
 * Each socket read allocates a 64 KiB buffer with malloc and frees it once written. With glibc's
 * default 128 KiB trim threshold the heap top is trimmed again and again, and every new chunk
 * page-faults its memory back in: about six faults per chunk, which cost a relay more than twice
 * Dante's CPU per GiB (measured with bench/, see bench/README.md). glibc raises its thresholds on
 * its own when a large mmapped block is freed (mmap threshold to the block's size, trim threshold
 * to twice that); one 16 MiB scrypt run does exactly that, synchronously, once per process
 * (about 40 ms at start-up). Other C libraries ignore it.
 */
export function avoidHeapTrimming(): void {
  if (done || process.platform !== 'linux') return
  done = true
  // N=16384, r=8 makes OpenSSL malloc and free one 16 MiB block.
  scryptSync('socksmith', 'heap', 1, { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 })
}
