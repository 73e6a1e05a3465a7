/** Finds kernel objects and processes carrying a prefix (to prove nothing leaked). */
import { allPids, processCmdline, run } from './sh.ts'
import { listNamespaces, nsPids } from './netns.ts'

export interface Leftovers {
  namespaces: string[]
  /** Links in the root namespace. */
  links: string[]
  processes: Array<{ pid: number, cmdline: string }>
}

export async function listLeftovers (prefix: string): Promise<Leftovers> {
  const namespaces = (await listNamespaces()).filter(n => n.startsWith(prefix))
  const linkOut = await run(['ip', '-o', 'link', 'show'], { allowFailure: true })
  const links = linkOut.stdout.split('\n')
    .map(l => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && n.startsWith(prefix))
  const pids = new Set<number>()
  for (const ns of namespaces) for (const p of await nsPids(ns)) pids.add(p)
  for (const p of await allPids()) {
    if (p === process.pid) continue
    const cmd = await processCmdline(p)
    if (cmd?.includes(prefix) === true) pids.add(p)
  }
  const processes: Leftovers['processes'] = []
  for (const pid of [...pids].sort((a, b) => a - b)) {
    const cmdline = await processCmdline(pid)
    if (cmdline !== undefined) processes.push({ pid, cmdline })
  }
  return { namespaces, links, processes }
}

export function isClean (l: Leftovers): boolean {
  return l.namespaces.length === 0 && l.links.length === 0 && l.processes.length === 0
}
