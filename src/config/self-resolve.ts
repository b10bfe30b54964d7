// Module resolve hook (registered by the CLI with module.register): a config or plugin file that
// lives outside any project with socksmith installed can still `import ... from 'socksmith'`; it
// gets the copy of socksmith that is running. Anything resolvable the normal way is left alone.

interface ResolveContext {
  parentURL?: string
  conditions?: string[]
}
type NextResolve = (specifier: string, context: ResolveContext) => Promise<{ url: string }>

let selfURL: string | null = null

export function initialize(data: { selfURL?: string } | undefined): void {
  selfURL = data?.selfURL ?? null
}

export async function resolve(specifier: string, context: ResolveContext, nextResolve: NextResolve): Promise<{ url: string }> {
  try {
    return await nextResolve(specifier, context)
  } catch (err) {
    const code = (err as { code?: string }).code
    if (selfURL !== null && code === 'ERR_MODULE_NOT_FOUND' && (specifier === 'socksmith' || specifier.startsWith('socksmith/'))) {
      // Resolved from inside the package, the name is a self-reference through its exports map.
      return nextResolve(specifier, { ...context, parentURL: selfURL })
    }
    throw err
  }
}
