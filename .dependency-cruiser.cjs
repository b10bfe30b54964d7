// The layer rules of docs/design §2, checked by dependency-cruiser on every `npm test`
// (`npm run lint:deps`), so the folders stay the architecture instead of a suggestion.
// Paths are matched against files as resolved from the repository root (src/…, plugins/…);
// test/architecture.test.ts runs this file on a small tree that breaks each rule, so a rule that
// stops biting fails a test.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment:
        'An import cycle, type imports included. A cycle means two modules are one module in two files: ' +
        'neither can be understood, tested or moved alone, and a value cycle is also an evaluation-order ' +
        'trap (one side sees the other half-initialised). Break it by moving the shared part down, or by ' +
        'typing against a narrow interface the lower module owns.',
      from: {},
      // No viaOnly/dependencyTypesNot filter: an `import type` cycle counts too, because it ties the
      // two modules together at design time just as much (and turns into a value cycle the day
      // someone needs a value from the other side).
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment:
        'An import that does not resolve. Besides typos this is how a plugin reaching for ' +
        '`socksmith/<internal path>` shows up: the exports map offers only the public entry points, so ' +
        'such a specifier resolves to nothing, and for the layer rules nothing must stay unseen.',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'plugin-relative-import-outside-own-folder',
      severity: 'error',
      comment:
        'A bundled plugin imports by relative path from outside its own folder (src/ or another plugin). ' +
        'Bundled plugins are written against the same public API a third-party npm plugin gets: import ' +
        "from 'socksmith' (or 'socksmith/protocol', 'socksmith/client', 'socksmith/plugins/<name>').",
      from: { path: '^plugins/([^/]+)/' },
      to: { dependencyTypes: ['local'], pathNot: '^plugins/$1/' },
    },
    {
      name: 'plugin-imports-only-public-entries',
      severity: 'error',
      comment:
        "A bundled plugin depends on a module of the package that is not a public entry point. Only the " +
        "exports map's entries are API (src/index.ts, src/protocol/index.ts, src/client/index.ts, " +
        'src/plugin-kit/index.ts, src/net, src/ops and src/config index files, another plugin\'s index.ts); everything behind them may ' +
        'change without notice, and a third-party plugin could not import it at all.',
      from: { path: '^plugins/([^/]+)/' },
      to: {
        // Relative imports are the rule above's; this one is about what `socksmith/…` resolves to.
        dependencyTypesNot: ['local'],
        path: '^(src|plugins)/',
        pathNot: [
          '^plugins/$1/',
          '^src/index\\.ts$',
          '^src/(protocol|client|plugin-kit|net|ops|config)/index\\.ts$',
          '^plugins/[^/]+/index\\.ts$',
        ],
      },
    },
    {
      name: 'protocol-is-pure',
      severity: 'error',
      comment:
        'The codec (src/protocol) is pure: no sockets, no timers, no files, no policy, so it can be ' +
        'golden-vector tested, reused by the client, and never surprises a caller with I/O. It may ' +
        'import only itself, the error catalogue src/core/errors.ts, ipaddr.js and the pure builtins ' +
        'node:buffer and node:url. The same holds for errors.ts, or the codec would reach I/O through it.',
      from: { path: ['^src/protocol/', '^src/core/errors\\.ts$'] },
      to: {
        pathNot: [
          '^src/protocol/',
          '^src/core/errors\\.ts$',
          // Unanchored: a tree cruised from a subfolder (test/fixtures/…) finds it further up.
          '(^|/)node_modules/ipaddr\\.js/',
          // Builtins are reported by their bare name (`node:` stripped).
          '^(buffer|url)$',
        ],
      },
    },
    {
      name: 'core-never-names-a-plugin',
      severity: 'error',
      comment:
        'src/ imports a bundled plugin. The core knows nothing about auth, rules, DNS caching or ' +
        'upstreams; plugins bring their own hooks (options redaction, reload, metrics) through the ' +
        'plugin API. (Config resolves bundled plugin names at run time through the exports map; that ' +
        'is not an import. Nor is any import() of a computed string, which no rule here can see.)',
      from: { path: '^src/' },
      to: { path: '^plugins/' },
    },
    {
      name: 'config-and-cli-sit-on-top',
      severity: 'error',
      comment:
        'src/core, src/commands or src/net import src/config or the CLI. Config loading and the CLI ' +
        'are built on the server, not the other way round: the engine must run from a program that ' +
        'never loads a config file or parses argv.',
      from: { path: '^src/(core|commands|net)/' },
      to: { path: ['^src/config/', '^src/cli/', '^src/cli\\.ts$'] },
    },
    {
      name: 'store-sits-below-the-core',
      severity: 'error',
      comment:
        'src/store (the shared store plugins get as host.store) imports more of src/ than it may. The core ' +
        'creates the store, so the store must not need the core: it may import itself, the error catalogue ' +
        'src/core/errors.ts, the pure option checks of src/plugin-kit, and src/ops/cluster.ts (whether this ' +
        'process is a --workers worker). Anything more ties a backend to the server it serves, a cycle away.',
      from: { path: '^src/store/' },
      to: { path: '^src/', pathNot: ['^src/store/', '^src/core/errors\\.ts$', '^src/plugin-kit/', '^src/ops/cluster\\.ts$'] },
    },
    {
      name: 'shipped-code-uses-no-dev-dependency',
      severity: 'error',
      comment:
        'src/ or plugins/ (what ships in dist/) imports a devDependency. A user\'s `npm install socksmith` ' +
        'does not install devDependencies, so the import would fail for them while every test here ' +
        'passes. Move the package to dependencies, or keep the import in test/, bench/ or examples/. ' +
        '(A type-only import vanishes from the emitted JavaScript, so it cannot fail at run time.)',
      from: { path: '^(src|plugins)/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
  ],
  options: {
    // Follow our own code only; an npm package's internals are its business.
    doNotFollow: { path: 'node_modules' },
    // Count `import type` and type-only re-exports too (see no-circular).
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      // Resolve `socksmith` self-imports as Node does (package.json exports), with the "source"
      // condition first like tsconfig's customConditions, so they land on src/*.ts, not dist/.
      exportsFields: ['exports'],
      conditionNames: ['source', 'import', 'types', 'default'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
}
