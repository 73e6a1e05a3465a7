/**
 * grub.cfg for the Xen host bootstrap, pure: the menu tree, GRUB's entry references, which
 * entry is Xen's and which one is the fallback while Xen is on trial.
 */

export interface GrubMenuItem {
  kind: 'menuentry' | 'submenu'
  title: string
  id?: string
  classes: string[]
  /** Body lines of a menuentry (commands), [] for a submenu. */
  lines: string[]
  children: GrubMenuItem[]
}

/** Reads one shell word at s[i] (grub-mkconfig quotes with '…' and '\''), returns it and the next index. */
function shellWord (s: string, i: number): { word: string, next: number } {
  let word = ''
  while (i < s.length && !/\s/.test(s[i] ?? '')) {
    const c = s[i] ?? ''
    if (c === "'") {
      const end = s.indexOf("'", i + 1)
      if (end < 0) { word += s.slice(i + 1); return { word, next: s.length } }
      word += s.slice(i + 1, end)
      i = end + 1
    } else if (c === '"') {
      let j = i + 1
      while (j < s.length && s[j] !== '"') { if (s[j] === '\\') j++; word += s[j] ?? ''; j++ }
      i = j + 1
    } else if (c === '\\') {
      word += s[i + 1] ?? ''
      i += 2
    } else {
      word += c
      i++
    }
  }
  return { word, next: i }
}

function shellWords (s: string): string[] {
  const out: string[] = []
  let i = 0
  while (i < s.length) {
    while (i < s.length && /\s/.test(s[i] ?? '')) i++
    if (i >= s.length) break
    const w = shellWord(s, i)
    out.push(w.word)
    i = w.next
  }
  return out
}

/** The menu tree of a grub.cfg (menuentry / submenu blocks; everything else is ignored). */
export function parseGrubMenu (cfg: string): GrubMenuItem[] {
  const top: GrubMenuItem[] = []
  const stack: Array<{ item?: GrubMenuItem, children: GrubMenuItem[] }> = [{ children: top }]
  for (const raw of cfg.split('\n')) {
    const line = raw.trim()
    const head = /^(menuentry|submenu)\s+(.*)\{$/.exec(line)
    if (head !== null) {
      const w = shellWords(head[2] ?? '')
      const item: GrubMenuItem = { kind: head[1] as 'menuentry' | 'submenu', title: w[0] ?? '', classes: [], lines: [], children: [] }
      for (let i = 1; i < w.length; i++) {
        if (w[i] === '--class') item.classes.push(w[++i] ?? '')
        else if (w[i] === '--id' || w[i] === '$menuentry_id_option') item.id = w[++i]
      }
      stack[stack.length - 1]?.children.push(item)
      stack.push({ item, children: item.children })
      continue
    }
    if (line === '}') {
      if (stack.length > 1) stack.pop()
      continue
    }
    const cur = stack[stack.length - 1]?.item
    if (cur?.kind === 'menuentry' && line !== '') cur.lines.push(line)
  }
  return top
}

/** The `set default="…"` grub.cfg uses when no one-shot entry is set (00_header's else branch). */
export function grubDefaultSetting (cfg: string): string {
  for (const m of cfg.matchAll(/^\s*set default="([^"]*)"\s*$/gm)) {
    if (m[1] !== '${next_entry}') return m[1] ?? '0'
  }
  return '0'
}

export const SAVED_ENTRY = '${saved_entry}'

const kernelOf = (e: GrubMenuItem): string | undefined => {
  for (const l of e.lines) {
    const m = /^(?:linux|linuxefi|module2?)\s+(?:--\S+\s+)*\S*vmlinu[xz]-(\S+)/.exec(l)
    if (m !== null) return m[1]
  }
  return undefined
}
const xenImageOf = (e: GrubMenuItem): string | undefined => {
  for (const l of e.lines) {
    const m = /^multiboot2?\s+(?:--\S+\s+)*(\S+)/.exec(l)
    if (m !== null && /xen/i.test(m[1] ?? '')) return m[1]
  }
  return undefined
}

export const isXenEntry = (e: GrubMenuItem): boolean => e.kind === 'menuentry' && (e.classes.includes('xen') || xenImageOf(e) !== undefined)
export const isRecoveryEntry = (e: GrubMenuItem): boolean => /\(recovery mode\)|single-user/i.test(e.title) || /-recovery-/.test(e.id ?? '')

/** GRUB's escaping of '>' inside a path component. */
const escapeComponent = (s: string): string => s.replace(/>/g, '>>')

function splitRef (ref: string): string[] {
  const parts: string[] = []
  let cur = ''
  for (let i = 0; i < ref.length; i++) {
    const c = ref[i]
    if (c === '>' && ref[i + 1] === '>') { cur += '>'; i++ } else if (c === '>') { parts.push(cur); cur = '' } else cur += c ?? ''
  }
  parts.push(cur)
  return parts
}

/** Follows a GRUB entry reference ("2", "title", "id", "submenu>entry", "1>0") as GRUB does. */
export function resolveGrubRef (menu: GrubMenuItem[], ref: string): GrubMenuItem[] | undefined {
  let level = menu
  const path: GrubMenuItem[] = []
  for (const part of splitRef(ref)) {
    const item = /^\d+$/.test(part) ? level[Number(part)] : level.find(e => e.title === part || e.id === part)
    if (item === undefined) return undefined
    path.push(item)
    level = item.children
  }
  const last = path[path.length - 1]
  return last?.kind === 'menuentry' ? path : undefined
}

/**
 * The reference grub-reboot / grub-set-default get for a path: a submenu by its title (Debian
 * gives the Linux and the Xen "Advanced options" submenus the same id), an entry by its id when
 * that is unique among its siblings, else by its title.
 */
export function grubRef (menu: GrubMenuItem[], path: GrubMenuItem[]): string {
  let level = menu
  const parts: string[] = []
  for (const item of path) {
    const byId = item.kind === 'menuentry' && item.id !== undefined && level.filter(e => e.id === item.id).length === 1
    parts.push(escapeComponent(byId ? item.id ?? '' : item.title))
    level = item.children
  }
  return parts.join('>')
}

function walk (menu: GrubMenuItem[], visit: (path: GrubMenuItem[]) => boolean, prefix: GrubMenuItem[] = []): GrubMenuItem[] | undefined {
  for (const item of menu) {
    const path = [...prefix, item]
    if (item.kind === 'menuentry' && visit(path)) return path
    const found = walk(item.children, visit, path)
    if (found !== undefined) return found
  }
  return undefined
}

export interface GrubChoice {
  /** Reference for grub-reboot / grub-set-default / saved_entry. */
  ref: string
  /** Titles from the top, joined with " > " (for messages). */
  title: string
  kernel?: string
  note?: string
}

const choice = (menu: GrubMenuItem[], path: GrubMenuItem[], note?: string): GrubChoice => {
  const last = path[path.length - 1]
  const kernel = last !== undefined ? kernelOf(last) : undefined
  return { ref: grubRef(menu, path), title: path.map(p => p.title).join(' > '), ...(kernel !== undefined ? { kernel } : {}), ...(note !== undefined ? { note } : {}) }
}

/**
 * The entry to try Xen with: Debian's top-level "…, with Xen hypervisor" entry
 * (id xen-gnulinux-simple-<uuid>), else the first non-recovery Xen entry that loads a
 * multiboot image other than xen-*.efi (that one is a PE binary for chain-loading).
 */
export function findXenEntry (cfg: string): GrubChoice | undefined {
  const menu = parseGrubMenu(cfg)
  const simple = menu.find(e => e.kind === 'menuentry' && /^xen-gnulinux-simple-/.test(e.id ?? '') && !isRecoveryEntry(e))
  if (simple !== undefined) return choice(menu, [simple])
  const path = walk(menu, p => {
    const e = p[p.length - 1]
    return e !== undefined && isXenEntry(e) && !isRecoveryEntry(e) && !/\.efi$/.test(xenImageOf(e) ?? '')
  })
  return path !== undefined ? choice(menu, path) : undefined
}

/** The entry GRUB boots by default now (grubenv: `grub-editenv list`, parsed). */
export function currentDefaultEntry (cfg: string, env: Record<string, string>): GrubChoice | undefined {
  const menu = parseGrubMenu(cfg)
  const setting = grubDefaultSetting(cfg)
  const ref = setting === SAVED_ENTRY ? (env.saved_entry ?? '') : setting
  const path = resolveGrubRef(menu, ref === '' ? '0' : ref) ?? resolveGrubRef(menu, '0')
  return path !== undefined ? choice(menu, path) : undefined
}

/**
 * The entry the host falls back to (the saved default while Xen is on trial): the entry that
 * boots the running kernel (it demonstrably works), the default one if it does, and never a
 * Xen or recovery entry.
 */
export function fallbackEntry (cfg: string, env: Record<string, string>, runningKernel: string): GrubChoice | undefined {
  const menu = parseGrubMenu(cfg)
  const setting = grubDefaultSetting(cfg)
  const ref = setting === SAVED_ENTRY ? (env.saved_entry ?? '') : setting
  const def = resolveGrubRef(menu, ref === '' ? '0' : ref) ?? resolveGrubRef(menu, '0')
  const plain = (e: GrubMenuItem | undefined): boolean => e !== undefined && !isXenEntry(e) && !isRecoveryEntry(e) && kernelOf(e) !== undefined
  const last = def?.[def.length - 1]
  if (def !== undefined && plain(last) && last !== undefined && kernelOf(last) === runningKernel) return choice(menu, def)
  const running = walk(menu, p => { const e = p[p.length - 1]; return plain(e) && e !== undefined && kernelOf(e) === runningKernel })
  if (running !== undefined) {
    return choice(menu, running, def !== undefined && plain(last) ? undefined : `the default entry (${def?.map(p => p.title).join(' > ') ?? 'none'}) is not a plain Linux entry; falling back to the running kernel's entry`)
  }
  if (def !== undefined && plain(last)) return choice(menu, def, `no entry boots the running kernel ${runningKernel}; keeping the default entry`)
  const any = walk(menu, p => plain(p[p.length - 1]))
  return any !== undefined ? choice(menu, any, `no entry boots the running kernel ${runningKernel}; using the first Linux entry`) : undefined
}
