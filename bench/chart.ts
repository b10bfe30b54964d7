/**
 * The benchmark's comparison as an SVG bar chart: one panel per measured row, one bar per server,
 * each panel scaled to its own largest median (rows have different units), the figure printed on
 * each bar. Pure: results in, SVG text out; no browser, no dependency.
 *
 *   npm run bench -- --chart results.svg                      (written by run.ts at the end of a run)
 *   node --import tsx bench/chart.ts results.json > results.svg   (from a run's --json file)
 */
import { readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'

/** One panel: a metric of run.ts's samples. */
export interface ChartRow {
  /** The sample field (`connIp`, `cpuPerGiB`, ...). */
  readonly key: string
  readonly title: string
  /** Decimals printed on the bars. */
  readonly digits: number
  /** For CPU, latency and memory rows: the shortest bar is the best. */
  readonly lowerIsBetter: boolean
}

/** The rows drawn unless told otherwise: the headline figures of the run's tables. */
export const CHART_ROWS: readonly ChartRow[] = [
  { key: 'connIp', title: 'connections/s (IP destination)', digits: 0, lowerIsBetter: false },
  { key: 'cpu10kIp', title: 'server CPU-s per 10k connections', digits: 2, lowerIsBetter: true },
  { key: 'connAuthIp', title: 'connections/s with RFC 1929 auth', digits: 0, lowerIsBetter: false },
  { key: 'latP50Us', title: 'p50 latency, one client at a time (µs)', digits: 0, lowerIsBetter: true },
  { key: 'udpPerS', title: 'UDP datagrams/s', digits: 0, lowerIsBetter: false },
  { key: 'down1', title: 'download MB/s, 1 stream', digits: 0, lowerIsBetter: false },
  { key: 'down8', title: 'download MB/s, 8 streams', digits: 0, lowerIsBetter: false },
  { key: 'up1', title: 'upload MB/s, 1 stream', digits: 0, lowerIsBetter: false },
  { key: 'cpuPerGiB', title: 'server CPU-s per GiB relayed', digits: 2, lowerIsBetter: true },
  { key: 'rssPerConnKiB', title: 'RSS KiB per held connection', digits: 1, lowerIsBetter: true },
  { key: 'httpConnIp', title: 'HTTP CONNECT connections/s (IP destination)', digits: 0, lowerIsBetter: false },
  { key: 'httpDown1', title: 'download MB/s through HTTP CONNECT, 1 stream', digits: 0, lowerIsBetter: false },
  { key: 'httpReqPerS', title: 'plain-HTTP requests/s (keep-alive GET through the proxy)', digits: 0, lowerIsBetter: false },
]

/** Samples by server (run.ts's `results`, or the `results` object of its --json file), in drawing order. */
export type ChartResults<S extends object> = ReadonlyMap<string, readonly S[]> | Readonly<Record<string, readonly S[]>>

export interface ChartOptions {
  readonly title?: string
  /** A line under the title: the machine, the date. */
  readonly subtitle?: string
  readonly rows?: readonly ChartRow[]
}

const WIDTH = 760
const LABEL = 170
const BAR_AREA = 470
const BAR = 14
const GAP = 4
const PANEL_HEAD = 22
const PANEL_GAP = 14
const PALETTE = ['#1f6feb', '#8250df', '#bf8700', '#1a7f37', '#cf222e', '#57606a', '#0a7ea4', '#9a6700']

/** Renders the chart; a row no server has a figure for is left out, a server without one gets "–". */
export function renderChart<S extends object>(results: ChartResults<S>, options: ChartOptions = {}): string {
  const servers = results instanceof Map ? [...(results as ReadonlyMap<string, readonly S[]>).entries()] : Object.entries(results as Readonly<Record<string, readonly S[]>>)
  const rows = (options.rows ?? CHART_ROWS)
    .map((row) => ({ row, medians: servers.map(([name, samples]) => ({ name, value: medianOf(samples, row.key) })) }))
    .filter(({ medians }) => medians.some((m) => m.value !== null))
  const title = options.title ?? 'socksmith benchmark: medians per server'
  const parts: string[] = []
  let y = 28
  parts.push(`<text x="12" y="${y}" font-size="16" font-weight="bold">${escapeXml(title)}</text>`)
  if (options.subtitle !== undefined) {
    y += 18
    parts.push(`<text x="12" y="${y}" font-size="11" fill="#57606a">${escapeXml(options.subtitle)}</text>`)
  }
  y += PANEL_GAP
  for (const { row, medians } of rows) {
    const max = Math.max(...medians.map((m) => m.value ?? 0))
    y += PANEL_HEAD
    parts.push(`<text x="12" y="${y - 6}" font-size="12" font-weight="bold">${escapeXml(row.title)} <tspan font-weight="normal" fill="#57606a">(${row.lowerIsBetter ? 'lower' : 'higher'} is better)</tspan></text>`)
    medians.forEach(({ name, value }, i) => {
      const top = y + i * (BAR + GAP)
      parts.push(`<text x="${LABEL - 8}" y="${top + BAR - 3}" font-size="11" text-anchor="end">${escapeXml(name)}</text>`)
      if (value === null) {
        parts.push(`<text x="${LABEL + 4}" y="${top + BAR - 3}" font-size="11" fill="#57606a">–</text>`)
        return
      }
      const width = max > 0 ? Math.max(1, (value / max) * BAR_AREA) : 1
      const color = PALETTE[servers.findIndex(([n]) => n === name) % PALETTE.length]!
      parts.push(`<rect class="bar" x="${LABEL}" y="${top}" width="${width.toFixed(1)}" height="${BAR}" fill="${color}"><title>${escapeXml(`${name}: ${format(value, row.digits)}`)}</title></rect>`)
      parts.push(`<text x="${(LABEL + width + 4).toFixed(1)}" y="${top + BAR - 3}" font-size="11">${format(value, row.digits)}</text>`)
    })
    y += medians.length * (BAR + GAP) + PANEL_GAP
  }
  const height = y + 4
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, sans-serif">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n')
}

function medianOf(samples: readonly object[], key: string): number | null {
  const values = samples.map((s) => (s as Record<string, unknown>)[key]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b)
  if (values.length === 0) return null
  const mid = values.length >> 1
  return values.length % 2 === 1 ? values[mid]! : (values[mid - 1]! + values[mid]!) / 2
}

function format(value: number, digits: number): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

// As a program: the chart of a --json file, on stdout.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2]
  if (file === undefined) {
    console.error('usage: node --import tsx bench/chart.ts results.json > chart.svg')
    process.exit(2)
  }
  const run = JSON.parse(readFileSync(file, 'utf8')) as { results: Record<string, object[]>; machine?: string; date?: string }
  process.stdout.write(renderChart(run.results, { subtitle: [run.machine, run.date].filter((s) => s !== undefined).join(', ') }))
}
