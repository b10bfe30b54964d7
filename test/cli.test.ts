// The built `socksmith` binary, run as a user runs it: a real process, real sockets, real clients.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, renameSync, mkdirSync, readFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import { SocksClient } from 'socks'
import { startEcho, startTcpServer } from './helpers/net.js'
import { echoThrough, listeningPort, runCli, start, startCli, stop, tempDir, plainEnv, CLI, ROOT } from './helpers/spawn.js'
import { needs, peer } from './helpers/peers.js'

const python3 = peer('python3')

describe('socksmith cli', { concurrency: 3 }, () => {
  test('with no config: listens on --port, relays a CONNECT, exits 0 on SIGTERM', async (t) => {
    const echo = await startEcho(t)
    const dir = tempDir(t)
    const cli = startCli(t, ['--port', '0', '--log-level', 'warn'], { cwd: dir })
    const port = await listeningPort(cli)
    assert.equal(await echoThrough(port, echo.port, { payload: 'hello through the cli' }), 'hello through the cli')
    await stop(cli)
  })

  test('a YAML config: listeners, auth and rules from the file; --port overrides the listeners', async (t) => {
    const echo = await startEcho(t)
    const dir = tempDir(t)
    writeFileSync(
      join(dir, 'socksmith.config.yaml'),
      `# found by search: no --config
listen:
  host: 127.0.0.1
  port: 1
timeouts:
  idle: 5m
  handshake: 10s
log:
  level: warn
plugins:
  - - auth
    - users:
        alice: wonderland
  - - rules
    - default: deny
      rules:
        - action: allow
          to: [loopback]
          users: [alice]
`,
    )
    const cli = startCli(t, ['--port', '0'], { cwd: dir })
    const port = await listeningPort(cli)
    assert.equal(await echoThrough(port, echo.port, { user: 'alice', password: 'wonderland' }), 'ping')
    await assert.rejects(echoThrough(port, echo.port, { user: 'alice', password: 'wrong' }))
    await assert.rejects(echoThrough(port, echo.port), 'NO AUTH is refused once auth is configured')
    await stop(cli)
  })

  test('listens on every listener of the config, IPv4 and IPv6', async (t) => {
    const echo = await startEcho(t)
    const dir = tempDir(t)
    writeFileSync(join(dir, 'two.json'), JSON.stringify({ listen: [{ host: '127.0.0.1', port: 0 }, { host: '::1', port: 0 }], log: { level: 'silent' } }))
    const cli = startCli(t, ['--config', 'two.json'], { cwd: dir })
    await cli.line(/listening on \[::1\]:\d+/)
    const listeners = [...cli.stdout().matchAll(/listening on \[?([\d.:]+)\]?:(\d+)/g)].map((m) => ({ host: m[1] as string, port: Number(m[2]) }))
    assert.deepEqual(listeners.map((l) => l.host), ['127.0.0.1', '::1'])
    for (const { host, port } of listeners) assert.equal(await echoThrough(port, echo.port, { proxyHost: host }), 'ping')
    await stop(cli)
  })

  test('a bad config exits 1 without listening, naming the file, the entry and the field', async (t) => {
    const dir = tempDir(t)
    writeFileSync(
      join(dir, 'socksmith.config.yaml'),
      `listen: { port: 0 }
plugins:
  - [auth, { users: { alice: wonderland } }]
  - - rules
    - rules:
        - { action: allow, to: [127.0.0.0/8] }
        - { action: deny, to: [192.168.0.0/16] }
        - { action: allow, to: [10.0.0.0/33] }
`,
    )
    const result = await runCli(t, ['--config', 'socksmith.config.yaml'], { cwd: dir })
    assert.equal(result.code, 1)
    assert.doesNotMatch(result.stdout, /listening/)
    assert.match(result.stderr, /socksmith\.config\.yaml: plugins\[1\] \(rules\): rules\[2\]\.to(\[0\])?: "10\.0\.0\.0\/33" is not a valid CIDR/)
  })

  test('unknown keys get a did-you-mean hint; a missing plugin file is ERR_PLUGIN_NOT_FOUND', async (t) => {
    const dir = tempDir(t)
    writeFileSync(join(dir, 'bad.yaml'), 'lisen: { port: 0 }\nplugins: [./nope.js]\n')
    const result = await runCli(t, ['--config', 'bad.yaml'], { cwd: dir })
    assert.equal(result.code, 1)
    assert.match(result.stderr, /bad\.yaml: lisen: unknown key; did you mean "listen"\?/)
    assert.match(result.stderr, /bad\.yaml: plugins\[0\] \(\.\/nope\.js\): plugin file not found/)
  })

  test('--config pointing at no file exits 1 with ERR_CONFIG_NOT_FOUND', async (t) => {
    const result = await runCli(t, ['--config', 'does-not-exist.yaml'], { cwd: tempDir(t) })
    assert.equal(result.code, 1)
    assert.match(result.stderr, /config file not found: .*does-not-exist\.yaml \(ERR_CONFIG_NOT_FOUND\)/)
  })

  test('--check validates and exits 0 or 1 without listening', async (t) => {
    const dir = tempDir(t)
    writeFileSync(join(dir, 'good.yaml'), 'listen: { port: 0 }\nplugins: [dns-cache, [rules, { rules: [{ action: allow }] }]]\n')
    const good = await runCli(t, ['--check', '--config', 'good.yaml'], { cwd: dir })
    assert.equal(good.code, 0, good.stderr)
    assert.match(good.stdout, /good\.yaml OK \(plugins: dns-cache, rules\)/)
    assert.doesNotMatch(good.stdout, /listening/)

    writeFileSync(join(dir, 'open.yaml'), 'listen: { host: 0.0.0.0, port: 0 }\n')
    const open = await runCli(t, ['--check', '--config', 'open.yaml'], { cwd: dir })
    assert.equal(open.code, 1)
    assert.match(open.stderr, /open\.yaml: listen: refusing to listen on 0\.0\.0\.0 without authentication/)
    const allowed = await runCli(t, ['--check', '--config', 'open.yaml', '--allow-open-proxy'], { cwd: dir })
    assert.equal(allowed.code, 0, allowed.stderr)

    writeFileSync(join(dir, 'dup.yaml'), 'plugins: [dns-cache, upstream, dns-cache]\n')
    const dup = await runCli(t, ['--check', '--config', 'dup.yaml'], { cwd: dir })
    assert.equal(dup.code, 1)
    assert.match(dup.stderr, /dup\.yaml: plugins\[2\] \(dns-cache\): plugin "dns-cache" is already listed at plugins\[0\]/)
  })

  test('--print-config shows the effective config with secrets masked', async (t) => {
    const dir = tempDir(t)
    writeFileSync(
      join(dir, '.socksmithrc.json'),
      JSON.stringify({
        timeouts: { idle: '90s' },
        plugins: [
          ['auth', { users: { alice: 'plain-secret' } }],
          ['upstream', { proxy: 'socks5://bob:hunter2@127.0.0.1:1081' }],
        ],
      }),
    )
    const result = await runCli(t, ['--print-config', '--port', '0'], { cwd: dir })
    assert.equal(result.code, 0, result.stderr)
    assert.doesNotMatch(result.stdout, /plain-secret|hunter2/)
    const printed = JSON.parse(result.stdout) as { listen: unknown; timeouts: { idle: number; connect: number }; plugins: { name: string; options: Record<string, unknown> }[] }
    assert.deepEqual(printed.listen, [{ host: '127.0.0.1', port: 0 }])
    assert.equal(printed.timeouts.idle, 90_000)
    assert.equal(printed.timeouts.connect, 10_000)
    assert.deepEqual(printed.plugins[0], { name: 'auth', from: 'bundled', options: { users: { alice: '********' } } })
    assert.equal(printed.plugins[1]?.options.proxy, 'socks5://bob:********@127.0.0.1:1081')
  })

  test('a TS config outside any project imports socksmith and a local .ts plugin', async (t) => {
    const echo = await startEcho(t)
    const dir = tempDir(t)
    writeFileSync(
      join(dir, 'tag.ts'),
      `import { definePlugin, SocksError } from 'socksmith'
const blockPort: number = Number(process.env.BLOCKED_PORT ?? 9)
export default definePlugin({
  name: 'block-port',
  setup(host) {
    host.use('request', async function blockOnePort(ctx, next) {
      if (ctx.destination.port === blockPort) throw new SocksError('ERR_SOCKS_NOT_ALLOWED')
      await next()
    })
  },
})
`,
    )
    writeFileSync(
      join(dir, 'socksmith.config.ts'),
      `import { defineConfig, type SocksmithConfig } from 'socksmith'
const config: SocksmithConfig = defineConfig({ listen: { port: 0 }, log: { level: 'warn' }, plugins: ['./tag.ts'] })
export default config
`,
    )
    const blocked = await startEcho(t)
    const cli = startCli(t, [], { cwd: dir, env: { ...process.env, NODE_OPTIONS: '', BLOCKED_PORT: String(blocked.port) } })
    const port = await listeningPort(cli)
    assert.equal(await echoThrough(port, echo.port), 'ping')
    await assert.rejects(echoThrough(port, blocked.port), /not allowed|ruleset|0x02|rejected/i)
    assert.equal(blocked.accepted(), 0)
    await stop(cli)
  })

  test('an npm-style plugin is resolved from the config file folder', async (t) => {
    const echo = await startEcho(t)
    const dir = tempDir(t)
    const pkg = join(dir, 'node_modules', 'socksmith-plugin-hello')
    mkdirSync(pkg, { recursive: true })
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'socksmith-plugin-hello', type: 'module', exports: { '.': { import: './index.js' } } }))
    writeFileSync(
      join(pkg, 'index.js'),
      `// Sends connections for port \`from\` to port \`to\` instead.
export default {
  name: 'redirect-port',
  parseOptions(raw, at) {
    for (const key of ['from', 'to']) if (!Number.isInteger(raw?.[key])) at.fail(key, 'must be a port number')
    return raw
  },
  setup(host, options) {
    host.use('request', async function redirectPort(ctx, next) {
      if (ctx.destination.port === options.from) ctx.destination = { ...ctx.destination, port: options.to }
      await next()
    })
  },
}
`,
    )
    writeFileSync(join(dir, 'socksmith.config.yaml'), `listen: { port: 0 }\nlog: { level: warn }\nplugins:\n  - [socksmith-plugin-hello, { from: 9, to: ${echo.port} }]\n`)
    const cli = startCli(t, ['--config', join(dir, 'socksmith.config.yaml')], { cwd: ROOT })
    const port = await listeningPort(cli)
    assert.equal(await echoThrough(port, 9, { payload: 'redirected' }), 'redirected')
    await stop(cli)

    writeFileSync(join(dir, 'bad.yaml'), 'plugins:\n  - [socksmith-plugin-hello, { from: 1 }]\n')
    const bad = await runCli(t, ['--check', '--config', 'bad.yaml'], { cwd: dir })
    assert.equal(bad.code, 1)
    assert.match(bad.stderr, /bad\.yaml: plugins\[0\] \(redirect-port\): to: must be a port number/)
    writeFileSync(join(dir, 'absent.yaml'), 'plugins: [socksmith-plugin-absent]\n')
    const absent = await runCli(t, ['--check', '--config', 'absent.yaml'], { cwd: dir })
    assert.equal(absent.code, 1)
    assert.match(absent.stderr, /absent\.yaml: plugins\[0\] \(socksmith-plugin-absent\): package "socksmith-plugin-absent" not found .*\(ERR_PLUGIN_NOT_FOUND\)/)
  })

  test('SIGHUP reloads: new connections get the new pipeline, accepted ones stay, removed users are closed', async (t) => {
    const echo = await startEcho(t)
    const dir = tempDir(t)
    const file = join(dir, 'socksmith.config.yaml')
    const config = (users: string): string => `listen: { port: 0 }\nlog: { level: info }\nplugins:\n  - - auth\n    - users: { ${users} }\n`
    writeFileSync(file, config('alice: a1, bob: b1'))
    const cli = startCli(t, ['--config', file], { cwd: dir })
    const port = await listeningPort(cli)
    const alice = await openRelay(port, echo.port, 'alice', 'a1')
    const bob = await openRelay(port, echo.port, 'bob', 'b1')

    // Invalid: logged, the running config stays.
    writeFileSync(file, 'plugins: [[auth, { users: 3 }]]\n')
    cli.child.kill('SIGHUP')
    await cli.errLine(/reload failed; the running configuration stays: .*socksmith\.config\.yaml: plugins\[0\] \(auth\)/)
    assert.equal(await echoThrough(port, echo.port, { user: 'bob', password: 'b1' }), 'ping')

    writeFileSync(file, config('alice: a1, carol: c1'))
    // Listening first: bob may be closed before the "reloaded" line reaches us.
    const bobClosed = new Promise((resolve) => bob.once('close', resolve))
    cli.child.kill('SIGHUP')
    await cli.line(/socksmith reloaded/)
    await bobClosed
    assert.equal(await roundTrip(alice, 'still here'), 'still here', "alice's accepted connection is untouched")
    assert.equal(await echoThrough(port, echo.port, { user: 'carol', password: 'c1' }), 'ping')
    await assert.rejects(echoThrough(port, echo.port, { user: 'bob', password: 'b1' }))
    alice.destroy()
    await stop(cli)
  })

  test('--pid-file names the socksmith process behind a wrapper that does not pass SIGHUP on (as npx and npm start); SIGHUP to it reloads; removed on exit', async (t) => {
    const dir = tempDir(t)
    const file = join(dir, 'socksmith.config.yaml')
    const pidFile = join(dir, 'socksmith.pid')
    writeFileSync(file, 'listen: { port: 0 }\nlog: { level: info }\n')
    // `sh -c 'node ...; exit $?'` keeps the shell as the parent, as npm exec and npm run do.
    const wrapper = start(t, '/bin/sh', ['-c', `"${process.execPath}" "${CLI}" --config "${file}" --pid-file "${pidFile}"; exit $?`], { cwd: dir })
    await listeningPort(wrapper)
    await wrapper.errLine(/pid \d+ written to /)
    const pid = Number(readFileSync(pidFile, 'utf8'))
    assert.ok(Number.isInteger(pid) && pid > 0)
    assert.notEqual(pid, wrapper.child.pid, 'the pid is the socksmith process, not the wrapper')
    t.after(() => {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    })
    assert.equal(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[1], CLI)
    process.kill(pid, 'SIGHUP')
    await wrapper.line(/socksmith reloaded socksmith\.config\.yaml/)
    process.kill(pid, 'SIGTERM')
    assert.equal((await wrapper.exited).code, 0)
    assert.equal(existsSync(pidFile), false, 'the pid file is removed on exit')

    const unwritable = await runCli(t, ['--port', '0', '--pid-file', join(dir, 'no-such-dir', 'x.pid')], { cwd: dir })
    assert.equal(unwritable.code, 1)
    assert.match(unwritable.stderr, /socksmith: --pid-file: cannot write .*no-such-dir\/x\.pid: ENOENT/)
  })

  test('--watch reloads when the file is replaced', async (t) => {
    const echo = await startEcho(t)
    const dir = tempDir(t)
    const file = join(dir, 'socksmith.config.json')
    writeFileSync(file, JSON.stringify({ listen: { port: 0 }, plugins: [['auth', { users: { alice: 'one' } }]] }))
    const cli = startCli(t, ['--config', file, '--watch'], { cwd: dir })
    const port = await listeningPort(cli)
    // As editors save: write a new file, rename it over the old one.
    writeFileSync(join(dir, 'next.tmp'), JSON.stringify({ listen: { port: 0 }, plugins: [['auth', { users: { alice: 'two' } }]] }))
    renameSync(join(dir, 'next.tmp'), file)
    await cli.line(/socksmith reloaded/)
    assert.equal(await echoThrough(port, echo.port, { user: 'alice', password: 'two' }), 'ping')
    await assert.rejects(echoThrough(port, echo.port, { user: 'alice', password: 'one' }))
    await stop(cli)
  })

  test('hash-password prints a hash the auth plugin accepts', async (t) => {
    const hashed = await runCli(t, ['hash-password'], { input: 'correct horse\n' })
    assert.equal(hashed.code, 0, hashed.stderr)
    const hash = hashed.stdout.trim()
    assert.doesNotMatch(hash, /correct horse/)
    const { verifyPassword } = await import('socksmith/plugins/auth')
    assert.equal(await verifyPassword('correct horse', hash), true)
    assert.equal(await verifyPassword('correct horse\n', hash), false, 'the trailing newline of the input is not part of the password')

    const empty = await runCli(t, ['hash-password'], { input: '' })
    assert.equal(empty.code, 2, 'a refused password is a usage error')
    assert.match(empty.stderr, /password is empty/)
  })

  test('hash-password on a terminal asks twice and echoes nothing', needs(python3), async () => {
    // A pseudo-terminal from Python's pty module: the password is typed as soon as a prompt shows.
    const { run } = await import('./helpers/processes.js')
    const result = await run(python3.path, [join(ROOT, 'test/fixtures/pty-hash-password.py'), process.execPath, CLI, 'tty-secret'], { env: plainEnv() })
    assert.equal(result.code, 0, result.stderr)
    assert.doesNotMatch(result.stdout, /tty-secret/)
    const hash = /\$scrypt\$\S+/.exec(result.stdout)?.[0]
    assert.ok(hash !== undefined, result.stdout)
    const { verifyPassword } = await import('socksmith/plugins/auth')
    assert.equal(await verifyPassword('tty-secret', hash), true, 'the backspace removed the X')
  })

  test('hash-password refuses a password over 255 bytes with one line and exit 2, echoing nothing', async (t) => {
    const long = await runCli(t, ['hash-password'], { input: `${'x'.repeat(256)}\n` })
    assert.equal(long.code, 2)
    assert.equal(long.stdout, '')
    assert.equal(long.stderr, 'socksmith: hash-password: a password must be 1 to 255 bytes of UTF-8 (RFC 1929), found 256 (ERR_SOCKS_INVALID_ARGUMENT)\n')
  })

  test('a port in use: one clean line naming the address, exit 1, no accept-failure log', async (t) => {
    const { port } = await startTcpServer(t, () => {})
    const result = await runCli(t, ['--port', String(port), '--log-level', 'info'], { cwd: tempDir(t) })
    assert.equal(result.code, 1)
    assert.doesNotMatch(result.stdout, /listening/)
    assert.doesNotMatch(result.stderr, /accept failed|\n\s+at /)
    assert.match(result.stderr, new RegExp(`^socksmith: cannot listen on 127\\.0\\.0\\.1:${port}: address already in use \\(EADDRINUSE\\) \\(ERR_SOCKS_LISTEN\\)$`, 'm'))
  })

  test('usage errors exit 2', async (t) => {
    assert.equal((await runCli(t, ['--port', 'x'])).code, 2)
    assert.equal((await runCli(t, ['--nope'])).code, 2)
    assert.equal((await runCli(t, ['frobnicate'])).code, 2)
    const help = await runCli(t, ['--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, /--print-config/)
  })
})

// ---- helpers ----

async function openRelay(proxyPort: number, echoPort: number, user: string, password: string): Promise<Socket> {
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port: proxyPort, type: 5, userId: user, password },
    command: 'connect',
    destination: { host: '127.0.0.1', port: echoPort },
  })
  socket.on('error', () => {})
  assert.equal(await roundTrip(socket, `${user} here`), `${user} here`)
  return socket
}

async function roundTrip(socket: Socket, text: string): Promise<string> {
  socket.write(text)
  let received = ''
  while (received.length < text.length) {
    const [chunk] = (await once(socket, 'data')) as [Buffer]
    received += chunk.toString()
  }
  return received
}

test('the socksmith command and npm start run Node with the same flags (a small young generation)', async (t) => {
  const shebang = readFileSync(CLI, 'utf8').split('\n', 1)[0]!
  const match = /^#!\/usr\/bin\/env -S node (.+)$/.exec(shebang)
  assert.ok(match !== null, `shebang of dist/src/cli/bin.cjs: ${shebang}`)
  const flags = match[1]!
  assert.match(flags, /--max-semi-space-size=\d+/)
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  assert.equal(pkg.scripts.start, `node ${flags} dist/src/cli/bin.cjs`)
  // Started as an installed bin is (npm makes it executable; a build alone does not): the kernel
  // runs the #! line's program with its argument, then the file and the command's arguments.
  const echo = await startEcho(t)
  const cli = start(t, '/usr/bin/env', ['-S', `node ${flags}`, CLI, '--port', '0'], { cwd: tempDir(t) })
  const port = await listeningPort(cli)
  assert.equal(await echoThrough(port, echo.port), 'ping')
  const argv = readFileSync(`/proc/${cli.child.pid}/cmdline`, 'utf8').split('\0')
  assert.ok(argv.includes(flags.split(' ')[0]!), `node was started as: ${argv.join(' ')}`)
  await stop(cli)
})
