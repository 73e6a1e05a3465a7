/**
 * Kernel module selection for the tiny guest: parse modules.dep and order the
 * wanted modules with all their dependencies so each loads after what it needs.
 * Pure (text in, paths out).
 */

/** Module name as modprobe sees it: basename without .ko[.xz|.zst|.gz], '-' folded to '_'. */
export function moduleName (path: string): string {
  const base = path.slice(path.lastIndexOf('/') + 1)
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_')
}

export interface ModuleDep {
  /** Path relative to /lib/modules/<version>, as modules.dep writes it. */
  path: string
  /** Names of the modules it depends on. */
  deps: string[]
}

/** modules.dep: `kernel/a/x.ko: kernel/b/y.ko kernel/c/z.ko` per line. Keyed by moduleName(). */
export function parseModulesDep (text: string): Map<string, ModuleDep> {
  const out = new Map<string, ModuleDep>()
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const colon = line.indexOf(':')
    if (colon < 0) continue
    const path = line.slice(0, colon).trim()
    const deps = line.slice(colon + 1).trim().split(/\s+/).filter(s => s !== '').map(moduleName)
    out.set(moduleName(path), { path, deps })
  }
  return out
}

export class UnknownModuleError extends Error {
  readonly module: string
  constructor (module: string, wantedBy?: string) {
    super(`kernel module '${module}' not found in modules.dep${wantedBy !== undefined ? ` (needed by ${wantedBy})` : ''}`)
    this.name = 'UnknownModuleError'
    this.module = module
  }
}

/**
 * The wanted modules plus their dependencies, dependencies first, each once.
 * Names in `builtin` (modules.builtin) are skipped silently, as modprobe does.
 * Throws UnknownModuleError for a name that is neither.
 */
export function resolveModules (dep: Map<string, ModuleDep>, wanted: string[], builtin: Set<string> = new Set()): Array<{ name: string, path: string }> {
  const order: Array<{ name: string, path: string }> = []
  const done = new Set<string>()
  const visiting = new Set<string>()
  const visit = (name: string, wantedBy?: string): void => {
    if (done.has(name) || visiting.has(name)) return
    const m = dep.get(name)
    if (m === undefined) {
      if (builtin.has(name)) { done.add(name); return }
      throw new UnknownModuleError(name, wantedBy)
    }
    visiting.add(name)
    for (const d of m.deps) visit(d, name)
    visiting.delete(name)
    done.add(name)
    order.push({ name, path: m.path })
  }
  for (const w of wanted) visit(moduleName(w))
  return order
}

/** modules.builtin lists `kernel/x/y.ko` paths; returns their names. */
export function parseModulesBuiltin (text: string): Set<string> {
  return new Set(text.split('\n').map(l => l.trim()).filter(l => l !== '').map(moduleName))
}

/** Compares kernel versions like 6.1.0-56-amd64 piecewise, numbers numerically. */
export function compareKernelVersions (a: string, b: string): number {
  const pa = a.split(/[.\-+~_]/)
  const pb = b.split(/[.\-+~_]/)
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i]
    const y = pb[i]
    if (x === undefined) return -1
    if (y === undefined) return 1
    if (x === y) continue
    const nx = /^\d+$/.test(x) ? Number(x) : NaN
    const ny = /^\d+$/.test(y) ? Number(y) : NaN
    if (!Number.isNaN(nx) && !Number.isNaN(ny)) return nx - ny
    return x < y ? -1 : 1
  }
  return 0
}

/** From /boot's file names, the version of the newest `vmlinuz-<version>`, or undefined. */
export function newestKernelVersion (bootFiles: string[]): string | undefined {
  const versions = bootFiles.filter(f => f.startsWith('vmlinuz-')).map(f => f.slice('vmlinuz-'.length)).filter(v => v !== '')
  return versions.sort(compareKernelVersions).at(-1)
}
