/**
 * Test hygiene: every supercloud a test makes registers its kernel-object prefix here, and
 * `sweepPrefix` removes whatever still carries it (processes in its namespaces, the
 * namespaces, root-namespace links) — used in teardown and by scripts/test.sh at the end.
 */
import { execFileSync } from 'node:child_process'
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export function registryFile (): string {
  const dir = join(tmpdir(), `sc-test-run-${process.env.SC_TEST_RUN ?? 'adhoc'}`)
  mkdirSync(dir, { recursive: true })
  return join(dir, 'prefixes')
}

export function registerPrefix (prefix: string): void {
  appendFileSync(registryFile(), prefix + '\n')
}

export function registeredPrefixes (): string[] {
  try {
    return [...new Set(readFileSync(registryFile(), 'utf8').split('\n').filter(l => /^[a-z0-9]+$/.test(l)))]
  } catch {
    return []
  }
}

function sh (cmd: string, args: string[]): string {
  try { return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }) } catch { return '' }
}

/** Namespaces, root links and processes still carrying `prefix`. */
export function leftovers (prefix: string): { namespaces: string[], links: string[], processes: string[] } {
  const namespaces = sh('ip', ['netns', 'list']).split('\n').map(l => l.split(' ')[0] ?? '').filter(n => n.startsWith(prefix))
  const links = sh('ip', ['-o', 'link', 'show']).split('\n').map(l => (l.split(': ')[1] ?? '').split('@')[0] ?? '').filter(n => n.startsWith(prefix))
  // A zombie (`<defunct>`) is no leak: it runs nothing and waits for init to reap it (QEMU's
  // `-name ...,process=` gives its zombie the prefix; PID 1 here may reap it a while later).
  const processes = sh('ps', ['-eo', 'pid=,stat=,args=']).split('\n').filter(l => l.includes(prefix) && !l.includes('ps -eo') && !/^\s*\d+\s+Z/.test(l)).map(l => l.trim().replace(/^(\d+)\s+\S+\s+/, '$1 '))
  return { namespaces, links, processes }
}

export function sweepPrefix (prefix: string): void {
  const { namespaces, links } = leftovers(prefix)
  for (const ns of namespaces) {
    for (const pid of sh('ip', ['netns', 'pids', ns]).split('\n').filter(Boolean)) sh('kill', ['-9', pid])
  }
  for (const ns of namespaces) sh('ip', ['netns', 'del', ns])
  for (const l of links) sh('ip', ['link', 'del', l])
  for (const l of leftovers(prefix).processes) {
    const pid = l.split(/\s+/)[0]
    if (pid !== undefined && pid !== String(process.pid)) sh('kill', ['-9', pid])
  }
}
