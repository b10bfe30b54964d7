import * as nodeModule from 'node:module'

/**
 * Lets a config or plugin file outside any project that has socksmith installed still import
 * 'socksmith': it gets the running copy. For ESM through a resolve hook (module.register, Node
 * 20.6+; see config/self-resolve.ts); for CommonJS (a .ts file in a folder without
 * "type": "module" is compiled to require() calls) by a fallback in Module._resolveFilename, as
 * tsx does for its own needs. Anything resolvable the normal way is left alone.
 */
export function registerSelfResolve(): void {
  const register = (nodeModule as { register?: (specifier: URL, options: { data: unknown }) => void }).register
  if (typeof register === 'function') {
    try {
      register(new URL('../config/self-resolve.js', import.meta.url), { data: { selfURL: import.meta.url } })
    } catch {
      // Without the hook, such files need socksmith installed next to them, as any package would.
    }
  }
  const Module = nodeModule.Module as unknown as { _resolveFilename?: (request: string, ...rest: unknown[]) => string }
  const original = Module._resolveFilename
  if (typeof original !== 'function') return
  const selfRequire = nodeModule.createRequire(import.meta.url)
  Module._resolveFilename = function resolveSocksmithFallback(this: unknown, request: string, ...rest: unknown[]): string {
    try {
      return original.call(this, request, ...rest)
    } catch (err) {
      if ((request === 'socksmith' || request.startsWith('socksmith/')) && (err as { code?: string }).code === 'MODULE_NOT_FOUND') return selfRequire.resolve(request)
      throw err
    }
  }
}
