/**
 * Behaviour every HypervisorBackend must show, run against a real hypervisor.
 *
 *   await runHypervisorCompliance(t, { backend, makeDefinition: name => ({ ... }) })
 *
 * With `migration` (a second instance of the backend), the guest then moves between the two
 * (migration.compliance.ts).
 *
 * `makeDefinition(name)` returns a guest booting the tiny image (its console must
 * print `SUPERCLOUD-GUEST-READY <name>` and then run a shell on the serial line),
 * with its runDir under a test temp dir. Names given to it carry `prefix`.
 */
import { readdir, readFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import type { GuestDefinition, HypervisorBackend } from '../../../drivers/hypervisor.ts'
import { runMigrationCompliance, type MigrationComplianceOptions } from './migration.compliance.ts'

export interface HypervisorComplianceOptions {
  backend: HypervisorBackend
  makeDefinition: (name: string) => GuestDefinition
  /** Per-run prefix for guest names (e.g. sct1a2b); default sct + 4 random hex digits. */
  prefix?: string
  /** Console text that means the guest booted; default `SUPERCLOUD-GUEST-READY <name>`. */
  readyText?: (name: string) => string
  /** How long a boot may take; default 180 s (TCG on a shared machine). */
  bootTimeoutMs?: number
  /**
   * Pids of live hypervisor-side processes whose command line mentions `text` (a runDir);
   * default: processes on this machine (QEMU). A backend whose guests are not host
   * processes of this machine (Xen domains in a dom0 reached over SSH) passes its own.
   */
  processesMentioning?: (text: string) => Promise<number[]>
  /**
   * Local path of a unix socket carrying the stream of `backend.consoleSocket(runDir)`;
   * default: that path itself. E.g. a forward of a socket in a dom0 over SSH.
   */
  localConsoleSocket?: (path: string) => Promise<string>
  /** Live migration to a second instance of the backend (migration.compliance.ts); absent: not run. */
  migration?: MigrationComplianceOptions
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Polls `fn` until it returns a value other than undefined, or gives up (returns undefined). */
export async function pollUntil<T> (fn: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 500): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() >= deadline) return undefined
    await sleep(intervalMs)
  }
}

/** Pids of live processes whose command line mentions `text` (e.g. a runDir). */
export async function processesMentioning (text: string): Promise<number[]> {
  const out: number[] = []
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue
    try {
      const stat = await readFile(`/proc/${e}/stat`, 'utf8')
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue
      if ((await readFile(`/proc/${e}/cmdline`, 'utf8')).includes(text)) out.push(Number(e))
    } catch { /* gone */ }
  }
  return out
}

/** Connects to a guest's serial console socket, types `line`, resolves with what came back once `expect` appears. */
export function consoleRoundTrip (socketPath: string, line: string, expect: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ path: socketPath })
    let got = ''
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`'${expect}' not echoed on ${socketPath} within ${timeoutMs} ms; got: ${JSON.stringify(got.slice(-500))}`)) }, timeoutMs)
    let typed: NodeJS.Timeout | undefined
    sock.on('connect', () => {
      // Type the line again every few seconds in case the shell was not reading yet.
      const type = (): void => { sock.write(`${line}\n`) }
      type()
      typed = setInterval(type, 5000)
    })
    sock.on('data', (b: Buffer) => {
      got += b.toString('utf8')
      if (got.includes(expect)) {
        clearTimeout(timer)
        clearInterval(typed)
        sock.end()
        resolve(got)
      }
    })
    sock.on('error', err => { clearTimeout(timer); clearInterval(typed); reject(err) })
  })
}

export async function runHypervisorCompliance (t: Test, opts: HypervisorComplianceOptions): Promise<void> {
  const { backend } = opts
  const bootTimeoutMs = opts.bootTimeoutMs ?? 180_000
  const name = `${opts.prefix ?? `sct${randomBytes(2).toString('hex')}`}-c1`
  const def = opts.makeDefinition(name)
  const ready = (opts.readyText ?? (n => `SUPERCLOUD-GUEST-READY ${n}`))(name)
  const processes = opts.processesMentioning ?? processesMentioning
  const consolePath = opts.localConsoleSocket ?? (async (p: string) => p)
  t.teardown(async () => {
    await backend.destroy(name, def.runDir).catch(() => {})
    if (opts.processesMentioning === undefined) {
      for (const pid of await processesMentioning(def.runDir)) { try { process.kill(pid, 'SIGKILL') } catch {} }
    }
  })

  await t.test(`${backend.kind}: guest lifecycle`, async t => {
    t.equal((await backend.status(name, def.runDir)).state, 'absent', 'absent before start')

    const st = await backend.start(def)
    t.equal(st.state, 'running', 'start returns running')
    t.equal(st.name, name)
    t.ok(st.pid !== undefined && st.pid > 0, 'start reports the pid')

    const booted = await pollUntil(async () => {
      const tail = await backend.consoleTail(def.runDir, 400)
      return tail.includes(ready) ? tail : undefined
    }, bootTimeoutMs)
    t.ok(booted !== undefined, `console shows '${ready}'`)
    if (booted === undefined) { t.comment(await backend.consoleTail(def.runDir, 30)); return }

    const again = await backend.start(def)
    t.equal(again.state, 'running', 'second start: running')
    t.equal(again.pid, st.pid, 'second start is idempotent (same process)')

    const s = await backend.status(name, def.runDir)
    t.equal(s.state, 'running')
    t.equal(s.pid, st.pid)

    const stats = await backend.stats(name, def.runDir)
    t.equal(stats.memoryBytes, def.memoryBytes, 'stats: memory equals the definition')
    t.ok(stats.balloonActualBytes <= stats.memoryBytes, 'stats: balloon actual <= memory')
    t.ok(stats.balloonActualBytes > 0, 'stats: balloon actual > 0')
    t.ok(stats.residentBytes > 0, 'stats: resident size of the guest process > 0')

    const target = Math.floor(def.memoryBytes / 2)
    await backend.setBalloon(name, def.runDir, target)
    const shrunk = await pollUntil(async () => {
      const now = await backend.stats(name, def.runDir)
      return now.balloonActualBytes <= target ? now : undefined
    }, 60_000)
    t.ok(shrunk !== undefined, `balloon reached the lower target ${target}`)
    const after = shrunk ?? await backend.stats(name, def.runDir)
    t.ok(after.balloonActualBytes < stats.balloonActualBytes, `balloon actual decreased (${stats.balloonActualBytes} -> ${after.balloonActualBytes})`)
    t.equal(after.memoryBytes, def.memoryBytes, 'memory size unchanged by the balloon')

    // Serial console: type a command whose output differs from the typed text.
    const nonce = randomBytes(3).toString('hex')
    const expect = `sc-${nonce}-42-ok`
    const got = await consoleRoundTrip(await consolePath(backend.consoleSocket(def.runDir)), `echo sc-${nonce}-$((6*7))-ok`, expect, 60_000)
    t.ok(got.includes(expect), 'console socket: command output read back')
    const logged = await pollUntil(async () => {
      const tail = await backend.consoleTail(def.runDir, 100)
      return tail.includes(expect) ? true : undefined
    }, 10_000, 200)
    t.ok(logged, 'console output is also in the console log')
    const again2 = await consoleRoundTrip(await consolePath(backend.consoleSocket(def.runDir)), `echo sc-${nonce}-$((7*7))-ok`, `sc-${nonce}-49-ok`, 60_000)
    t.ok(again2.includes(`sc-${nonce}-49-ok`), 'console can be re-attached after detaching')

    await backend.stop(name, def.runDir, 10_000)
    const stopped = await backend.status(name, def.runDir)
    t.not(stopped.state, 'running', `not running after stop (${stopped.state})`)
    t.same(await processes(def.runDir), stopped.state === 'absent' ? [] : [stopped.pid], 'no process left after stop unless the backend keeps a shut-down guest')
  })

  await t.test(`${backend.kind}: destroy`, async t => {
    const st = await backend.start(def)
    t.equal(st.state, 'running', 'start after stop works')
    await backend.destroy(name, def.runDir)
    t.same(await processes(def.runDir), [], 'destroy leaves no hypervisor process (no orphan)')
    t.equal((await backend.status(name, def.runDir)).state, 'absent', 'status absent after destroy')
    await backend.destroy(name, def.runDir)
    t.pass('destroy again is fine')
    t.equal((await backend.status(name, def.runDir)).state, 'absent')
    await t.rejects(backend.stats(name, def.runDir), 'stats of an absent guest rejects')
    await t.rejects(backend.setBalloon(name, def.runDir, def.memoryBytes), 'setBalloon of an absent guest rejects')
  })

  if (opts.migration !== undefined) {
    await runMigrationCompliance(t, { backend, name, def, ready, bootTimeoutMs, consolePath, roundTrip: consoleRoundTrip, pollUntil }, opts.migration)
  }
}
