// No example in the docs can rot: every TypeScript block of the README and of docs/ is compiled
// against the package as users get it (its built declarations, through the package's own name),
// and every YAML block is loaded as a config file and its plugins' options parsed. A block that is
// deliberately a fragment is preceded by a `<!-- fragment -->` line and left out.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import ts from 'typescript'
import { loadConfig } from 'socksmith'
import { createServerFromConfig } from 'socksmith/config'
import { silentLogger } from 'socksmith/ops'
import { makeTestPki } from './helpers/pki.js'
import { peer } from './helpers/peers.js'

const ROOT = new URL('..', import.meta.url).pathname
const FRAGMENT = '<!-- fragment -->'

interface Block {
  /** The page, relative to the repository, and the line of the opening fence (1-based). */
  readonly page: string
  readonly line: number
  readonly lang: string
  readonly code: string
}

function pages(): string[] {
  const found = ['README.md']
  const walk = (dir: string): void => {
    for (const name of readdirSync(join(ROOT, dir)).sort()) {
      const path = join(dir, name)
      if (statSync(join(ROOT, path)).isDirectory()) walk(path)
      else if (name.endsWith('.md')) found.push(path)
    }
  }
  walk('docs')
  return found
}

/** The fenced blocks of a page (also indented ones, inside list items), fragments left out. */
export function codeBlocks(page: string, text: string): Block[] {
  const lines = text.split('\n')
  const blocks: Block[] = []
  let previous = ''
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,})(\S*)/.exec(lines[i]!)
    if (open === null) {
      if (lines[i]!.trim() !== '') previous = lines[i]!.trim()
      continue
    }
    const [, indent, fence, lang] = open as unknown as [string, string, string, string]
    const body: string[] = []
    let j = i + 1
    while (j < lines.length && !lines[j]!.trimStart().startsWith(fence)) body.push(lines[j++]!.slice(indent.length))
    if (previous !== FRAGMENT) blocks.push({ page, line: i + 1, lang: lang.toLowerCase(), code: body.join('\n') })
    previous = ''
    i = j
  }
  return blocks
}

const blocks = pages().flatMap((page) => codeBlocks(page, readFileSync(join(ROOT, page), 'utf8')))

test('the docs have code blocks to check, and few fragments', () => {
  assert.ok(blocks.filter((b) => b.lang === 'ts').length >= 20)
  assert.ok(blocks.filter((b) => b.lang === 'yaml').length >= 8)
  const fragments = pages().reduce((n, page) => n + readFileSync(join(ROOT, page), 'utf8').split(FRAGMENT).length - 1, 0)
  assert.ok(fragments <= 5, `${fragments} blocks are marked as fragments`)
  const unknown = blocks.filter((b) => ['js', 'javascript', 'typescript', 'yml', 'mjs'].includes(b.lang))
  assert.deepEqual(unknown.map((b) => `${b.page}:${b.line} (${b.lang})`), [], 'write examples as ts or yaml blocks, which are checked')
})

test('every TypeScript block compiles against the package', (t) => {
  assert.ok(existsSync(join(ROOT, 'dist/src/index.d.ts')), 'the blocks are checked against the build: run npm run build first')
  // Inside the repository, so `import ... from 'socksmith'` resolves to this package by its own name.
  const dir = mkdtempSync(join(ROOT, '.docs-check-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const where = new Map<string, Block>()
  for (const [i, block] of blocks.filter((b) => b.lang === 'ts').entries()) {
    const file = join(dir, `block-${i}.ts`)
    // A module of its own (top-level await, no names shared between blocks).
    writeFileSync(file, `${block.code}\nexport {}\n`)
    where.set(file, block)
  }
  const base = ts.getParsedCommandLineOfConfigFile(join(ROOT, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} })!
  const options: ts.CompilerOptions = {
    ...base.options,
    // The package as users get it: its `types` condition (dist/), not the sources.
    customConditions: [],
    noEmit: true,
    declaration: false,
    sourceMap: false,
    rootDir: undefined,
    outDir: undefined,
  }
  const program = ts.createProgram([...where.keys()], options)
  const problems = ts.getPreEmitDiagnostics(program).map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n')
    const block = d.file === undefined ? undefined : where.get(d.file.fileName)
    if (d.file === undefined || block === undefined) return `${d.file === undefined ? '' : relative(ROOT, d.file.fileName) + ': '}${message}`
    const { line } = d.file.getLineAndCharacterOfPosition(d.start ?? 0)
    return `${block.page}:${block.line + 1 + line}: ${message}`
  })
  assert.deepEqual(problems, [])
})

/** The anchor GitHub gives a heading. */
function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')
}

function anchorsOf(path: string): Set<string> {
  const text = readFileSync(path, 'utf8').replace(/^\s*```[\s\S]*?^\s*```/gm, '')
  return new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1]!)))
}

test('every relative link of the README and docs/ leads to a file, and to a heading there', () => {
  const broken: string[] = []
  for (const page of pages()) {
    const text = readFileSync(join(ROOT, page), 'utf8').replace(/^\s*```[\s\S]*?^\s*```/gm, '')
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue
      const [file, anchor] = target!.split('#') as [string, string | undefined]
      const path = file === '' ? join(ROOT, page) : join(ROOT, page, '..', file)
      if (!existsSync(path)) broken.push(`${page}: ${target} (no such file)`)
      else if (anchor !== undefined && path.endsWith('.md') && !anchorsOf(path).has(anchor)) broken.push(`${page}: ${target} (no such heading)`)
    }
  }
  assert.deepEqual(broken, [])
})

test('every YAML block is a config the loader and the plugins accept', async (t) => {
  const dir = mkdtempSync(join(ROOT, '.docs-check-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const problems: string[] = []
  // The TLS listeners' examples name certificate files, which the loader reads: made here.
  const haveCertificates = peer('openssl').found !== null
  if (haveCertificates) {
    const pki = await makeTestPki(t)
    mkdirSync(join(dir, 'certs'))
    for (const [name, file] of Object.entries({ 'proxy.pem': pki.server.certFile, 'proxy.key': pki.server.keyFile, 'clients-ca.pem': pki.ca.certFile })) copyFileSync(file, join(dir, 'certs', name))
  }
  for (const block of blocks.filter((b) => b.lang === 'yaml')) {
    if (!haveCertificates && /^\s*tls:/m.test(block.code)) continue
    writeFileSync(join(dir, 'socksmith.config.yaml'), block.code)
    try {
      const loaded = await loadConfig({ file: 'socksmith.config.yaml', cwd: dir })
      createServerFromConfig(loaded, { logger: silentLogger })
    } catch (err) {
      problems.push(`${block.page}:${block.line}: ${err instanceof Error ? err.message : String(err)}`)
    }
  }
  assert.deepEqual(problems, [])
})
