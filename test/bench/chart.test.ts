// The benchmark's chart (bench/chart.ts) from synthetic results: well-formed XML, one bar per
// server per row, bars scaled within each row, names escaped, missing figures shown as such.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { renderChart, CHART_ROWS, type ChartRow } from '../../bench/chart.js'

/** A small well-formedness check: balanced tags, quoted attributes, no stray `<` or `&` in text. */
function assertWellFormedXml(xml: string): void {
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '')
  const stack: string[] = []
  let rest = body
  while (rest.length > 0) {
    const lt = rest.indexOf('<')
    const text = lt === -1 ? rest : rest.slice(0, lt)
    assert.doesNotMatch(text, /&(?!(amp|lt|gt|quot|apos);)/, `bare & in text: ${text}`)
    if (lt === -1) break
    const gt = rest.indexOf('>', lt)
    assert.ok(gt > lt, 'unterminated tag')
    const tag = rest.slice(lt + 1, gt)
    rest = rest.slice(gt + 1)
    if (tag.startsWith('/')) {
      assert.equal(stack.pop(), tag.slice(1), `closing </${tag.slice(1)}>`)
      continue
    }
    const match = /^([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)$/.exec(tag)
    assert.ok(match !== null, `malformed tag <${tag}>`)
    if (match[3] !== '/') stack.push(match[1]!)
  }
  assert.deepEqual(stack, [], 'every element is closed')
  assert.ok(body.startsWith('<svg'), 'one svg root')
}

const rows: ChartRow[] = [
  { key: 'connIp', title: 'connections/s', digits: 0, lowerIsBetter: false },
  { key: 'cpuPerGiB', title: 'CPU-s per GiB <relayed> & more', digits: 2, lowerIsBetter: true },
]

test('one bar per server per row, scaled to the row, in well-formed XML', () => {
  const results = new Map([
    ['socksmith', [{ connIp: 100, cpuPerGiB: 0.5 }, { connIp: 300, cpuPerGiB: 0.7 }, { connIp: 200, cpuPerGiB: 0.6 }]],
    ['dante', [{ connIp: 400, cpuPerGiB: 1.2 }]],
    ['a&b <peer>', [{ connIp: 50, cpuPerGiB: 3 }]],
  ])
  const svg = renderChart(results, { rows, subtitle: 'synthetic' })
  assertWellFormedXml(svg)
  const bars = [...svg.matchAll(/<rect class="bar" x="[\d.]+" y="[\d.]+" width="([\d.]+)"[^>]*><title>([^<]*)<\/title>/g)].map((m) => ({ width: Number(m[1]), title: m[2] }))
  assert.equal(bars.length, 3 * rows.length)
  // Medians: socksmith 200 of the largest 400 is half the width of dante's bar.
  assert.equal(bars[0]!.title, 'socksmith: 200')
  assert.ok(Math.abs(bars[0]!.width * 2 - bars[1]!.width) < 0.2)
  assert.equal(bars[5]!.title, 'a&amp;b &lt;peer&gt;: 3.00')
  assert.match(svg, /CPU-s per GiB &lt;relayed&gt; &amp; more/)
  assert.match(svg, /lower is better/)
})

test('a server without a figure gets no bar; a row nobody measured is left out; JSON results work too', () => {
  const svg = renderChart({ socksmith: [{ connIp: 10, cpuPerGiB: null }], microsocks: [{ connIp: 20, cpuPerGiB: 1 }] }, { rows: [...rows, { key: 'udpPerS', title: 'UDP', digits: 0, lowerIsBetter: false }] })
  assertWellFormedXml(svg)
  assert.equal([...svg.matchAll(/<rect class="bar"/g)].length, 3)
  assert.doesNotMatch(svg, />UDP/)
  assert.match(svg, />–</)
})

test('the default rows are the keys run.ts samples', () => {
  const keys = CHART_ROWS.map((r) => r.key)
  assert.equal(new Set(keys).size, keys.length)
  const svg = renderChart(new Map([['socksmith', [Object.fromEntries(keys.map((k, i) => [k, i + 1]))]]]))
  assertWellFormedXml(svg)
  assert.equal([...svg.matchAll(/<rect class="bar"/g)].length, keys.length)
})

test('an HTTP-only peer gets bars in the HTTP panels only, "–" in the SOCKS5 ones', () => {
  const results: Record<string, Record<string, number | null>[]> = {
    socksmith: [{ connIp: 3000, cpu10kIp: 3, httpConnIp: 2500, httpDown1: 1500, httpReqPerS: null }],
    'proxy-chain': [{ httpConnIp: 1000, httpDown1: 400, httpReqPerS: 2000 }],
  }
  const svg = renderChart(results)
  assertWellFormedXml(svg)
  const titles = [...svg.matchAll(/<rect class="bar"[^>]*><title>([^<]*)<\/title>/g)].map((m) => m[1])
  assert.deepEqual(
    titles.filter((t) => t!.startsWith('proxy-chain')),
    ['proxy-chain: 1,000', 'proxy-chain: 400', 'proxy-chain: 2,000'],
  )
  // socksmith has no forwarding figure (it answered 501): that panel shows proxy-chain's bar and a dash.
  assert.equal(titles.filter((t) => t!.startsWith('socksmith')).length, 4)
  assert.match(svg, /HTTP CONNECT connections\/s/)
  assert.match(svg, /plain-HTTP requests\/s/)
  // Panels only socksmith measured (connIp, cpu10kIp) draw a dash for proxy-chain.
  assert.equal([...svg.matchAll(/>–</g)].length, 3)
})
