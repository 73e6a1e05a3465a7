/** Network namespace operations of the local driver (kernel-touching). */
import { stat } from 'node:fs/promises'
import { isAlive, killPids, nsRun, processNetns, run, ShellCommandError, sleep } from './sh.ts'

export async function nsExists (ns: string): Promise<boolean> {
  return await stat(`/run/netns/${ns}`).then(() => true, () => false)
}

export async function listNamespaces (): Promise<string[]> {
  const r = await run(['ip', 'netns', 'list'], { allowFailure: true })
  return r.stdout.split('\n').map(l => l.trim().split(/\s+/)[0] ?? '').filter(n => n !== '')
}

/** Creates the namespace if missing, with lo up. */
export async function ensureNs (ns: string): Promise<void> {
  if (!await nsExists(ns)) {
    const r = await run(['ip', 'netns', 'add', ns], { allowFailure: true })
    if (r.code !== 0 && !await nsExists(ns)) await run(['ip', 'netns', 'add', ns])
  }
  await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
}

/** The namespace identity ("net:[inode]") of a named namespace, undefined when absent. */
export async function nsIdentity (ns: string): Promise<string | undefined> {
  const s = await stat(`/run/netns/${ns}`).catch(() => undefined)
  return s === undefined ? undefined : `net:[${s.ino}]`
}

/** Whether `pid` is alive and runs inside namespace `ns`. */
export async function pidInNs (pid: number, ns: string): Promise<boolean> {
  if (!isAlive(pid)) return false
  const id = await nsIdentity(ns)
  return id !== undefined && await processNetns(pid) === id
}

export async function nsPids (ns: string): Promise<number[]> {
  if (!await nsExists(ns)) return []
  const r = await run(['ip', 'netns', 'pids', ns], { allowFailure: true })
  return r.stdout.split('\n').map(s => Number(s.trim())).filter(n => Number.isInteger(n) && n > 1 && n !== process.pid)
}

/** Kills every process in the namespace, then deletes it. Succeeds when already gone. */
export async function destroyNs (ns: string): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const pids = await nsPids(ns)
    if (pids.length === 0) break
    await killPids(pids)
  }
  if (await nsExists(ns)) {
    const r = await run(['ip', 'netns', 'delete', ns], { allowFailure: true })
    if (r.code !== 0 && await nsExists(ns)) await run(['ip', 'netns', 'delete', ns])
  }
}

export async function linkExists (ns: string, link: string): Promise<boolean> {
  const r = await run(['ip', '-n', ns, 'link', 'show', 'dev', link], { allowFailure: true })
  return r.code === 0
}

/** Runs `ip <args>` in `ns`. */
export async function ip (ns: string, args: string[]): Promise<void> {
  await run(['ip', '-n', ns, ...args])
}

export async function sysctl (ns: string, key: string, value: string): Promise<void> {
  await nsRun(ns, ['sysctl', '-q', '-w', `${key}=${value}`])
}

/** Creates a veth pair `a` (in nsA) <-> `b` (in nsB); retries while a peer from a just-deleted namespace lingers. */
export async function addVeth (nsA: string, a: string, nsB: string, b: string): Promise<void> {
  const argv = ['ip', '-n', nsA, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', nsB]
  for (let attempt = 0; ; attempt++) {
    const r = await run(argv, { allowFailure: true })
    if (r.code === 0) return
    if (attempt >= 20 || !/exists/i.test(r.stderr)) throw new ShellCommandError(argv, r.code, r.stderr)
    // A namespace being torn down releases its veths asynchronously.
    await run(['ip', '-n', nsA, 'link', 'del', a], { allowFailure: true })
    await run(['ip', '-n', nsB, 'link', 'del', b], { allowFailure: true })
    await sleep(100)
  }
}
