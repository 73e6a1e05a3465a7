/**
 * bench/migrate-tls.ts — what TLS costs a QEMU live migration (issue 14): the same guest moved
 * back and forth between two QEMU backends on this machine (loopback, the drivers' own
 * migration: no controller, no CLI), alternating TLS (per-migration PSK, the default) and clear
 * text (`tls: 'off'`) so both see the same machine load. A 256 MiB tiny guest with a 64 MiB
 * disk (16 MiB written) runs `memload --mb 64` idle or rewriting at --write-mbps.
 *
 * Paths: `local` (no cap: the streams are CPU-bound, the worst case for TLS) and `capped` (QEMU's
 * max-bandwidth at 200 Mbit/s, the WAN's rate; no delay, and the disk mirror is not capped).
 * Per case: median total time and QEMU's downtime for each, and TLS / clear ratios. (QEMU
 * reports no downtime figure for some runs: those count as 0 in `downtimeMs`.)
 * Prints one JSON object.
 * Usage: node --import tsx bench/migrate-tls.ts [--rounds 3] [--workloads 0,16] [--paths local,capped]
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { MigrationSecurity } from '../core/migration.ts'
import type { GuestDefinition, MigratingGuest, MigrationSummary } from '../drivers/hypervisor.ts'
import { createQemuBackend } from '../drivers/qemu/backend.ts'
import { freeMigrationPort } from '../blanket-manager/agent/vms.ts'
import { buildTinyImage } from '../images/guest/build.ts'
import { benchLog, machineInfo, runBench } from './lib/entry.ts'
import { median, r3 } from './lib/proc.ts'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, workloads: { type: 'string', default: '0,16' }, paths: { type: 'string', default: 'local,capped' } } })
const ROUNDS = Number(values.rounds)
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`--rounds must be a positive integer, got ${values.rounds ?? ''}`)
const WORKLOADS = (values.workloads ?? '').split(',').filter(Boolean).map(Number)
const PATHS = (values.paths ?? '').split(',').filter(Boolean)
const MiB = 1048576
const CAP = 200e6 / 8
const log = benchLog('migrate-tls')
const start = loadavg()
const root = mkdtempSync(`/tmp/scb${randomBytes(2).toString('hex')}-`)
const backend = createQemuBackend()
const name = `scb${randomBytes(2).toString('hex')}-m`

/** Types `line` on the guest's serial console once (after an idempotent echo answered) and resolves with the output up to `done-42`. */
async function inGuest (runDir: string, line: string): Promise<string> {
  const say = async (text: string, expect: string, again: boolean): Promise<string> => await new Promise((resolve, reject) => {
    let got = ''
    const s = connect({ path: backend.consoleSocket(runDir) }, () => { s.write(`${text}\n`) })
    const retype = again ? setInterval(() => s.write(`${text}\n`), 5000) : undefined
    const timer = setTimeout(() => { clearInterval(retype); s.destroy(); reject(new Error(`no '${expect}' from the guest: ${got.slice(-300)}`)) }, 180_000)
    s.on('data', (b: Buffer) => { got += b.toString(); if (got.includes(expect)) { clearTimeout(timer); clearInterval(retype); s.end(); resolve(got) } })
    s.on('error', err => { clearTimeout(timer); clearInterval(retype); reject(err) })
  })
  await say('echo up-$((6*7))', 'up-42', true)
  return await say(`${line}; echo done-$((6*7))`, 'done-42', false)
}

function guest (side: 'a' | 'b'): GuestDefinition {
  const img = join(root, `${side}.qcow2`)
  return { name, cpus: 1, memoryBytes: 256 * MiB, accel: 'tcg', boot: { kind: 'kernel', kernel: '', append: `console=ttyS0 sc.name=${name}` }, disks: [{ id: 'data', path: img, format: 'qcow2' }], nics: [], runDir: join(root, side) }
}

async function main (): Promise<Record<string, unknown>> {
  const img = await buildTinyImage()
  const defs = { a: guest('a'), b: guest('b') }
  for (const d of Object.values(defs)) d.boot = { kind: 'kernel', kernel: img.kernel, initrd: img.initrd, append: `console=ttyS0 sc.name=${name}` }
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', defs.a.disks[0]?.path ?? '', '64M'])
  log('booting the guest')
  await backend.start(defs.a)
  await backend.waitForConsole(name, defs.a.runDir, `SUPERCLOUD-GUEST-READY ${name}`, 240_000)
  await inGuest(defs.a.runDir, 'dd if=/dev/urandom of=/dev/vda bs=1M count=16 2>/dev/null; sync')
  let at: 'a' | 'b' = 'a'
  const moving = (d: GuestDefinition): MigratingGuest => ({ name, runDir: d.runDir, diskIds: ['data'], swap: false, memoryBytes: d.memoryBytes })
  const moveOnce = async (tls: MigrationSecurity, bandwidth: number | undefined): Promise<MigrationSummary> => {
    const to = at === 'a' ? 'b' : 'a'
    const from = defs[at]
    const dest = defs[to]
    rmSync(dest.disks[0]?.path ?? '', { force: true })
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', dest.disks[0]?.path ?? '', '64M'])
    const inc = await backend.migration.prepareIncoming(dest, { listenIp: '127.0.0.1', mode: 'precopy', tls, port: async avoid => await freeMigrationPort('127.0.0.1', avoid) })
    const s = await backend.migration.migrateOut(moving(from), { destIp: '127.0.0.1', migrationPort: inc.migrationPort, nbdPort: inc.nbdPort, mode: 'precopy', maxDowntimeMs: 300, deadlineMs: 300_000, holdAtSwitchover: false, tls, ...(bandwidth !== undefined ? { bandwidth } : {}) })
    await backend.migration.finish(moving(dest))
    await backend.destroy(name, from.runDir)
    at = to
    return s
  }
  const cases: Array<Record<string, unknown>> = []
  for (const path of PATHS) {
    for (const mbps of WORKLOADS) {
      await inGuest(defs[at].runDir, `kill $(pidof memload) 2>/dev/null; memload --mb 64 --seconds 0 ${mbps > 0 ? `--write-mbps ${mbps}` : '--hold'} > /tmp/ml.out 2>&1 & sleep 3`)
      const runs: Record<'tls' | 'clear', MigrationSummary[]> = { tls: [], clear: [] }
      for (let i = 0; i < ROUNDS; i++) {
        for (const kind of (i % 2 === 0 ? ['tls', 'clear'] : ['clear', 'tls']) as Array<'tls' | 'clear'>) {
          const tls: MigrationSecurity = kind === 'tls' ? { identity: `bench.${randomBytes(6).toString('hex')}`, key: randomBytes(32).toString('hex') } : 'off'
          const s = await moveOnce(tls, path === 'capped' ? CAP : undefined)
          log(`${path} ${mbps} MiB/s ${kind}: total ${s.totalMs} ms, downtime ${s.downtimeMs} ms, sent ${Math.round(s.sentBytes / MiB)} MiB`)
          runs[kind].push(s)
        }
      }
      const m = (k: 'tls' | 'clear', f: 'totalMs' | 'downtimeMs'): number => median(runs[k].map(s => s[f]))
      cases.push({
        path,
        writeMiBps: mbps,
        tls: { totalMs: m('tls', 'totalMs'), downtimeMs: m('tls', 'downtimeMs'), sentMiB: r3(median(runs.tls.map(s => s.sentBytes)) / MiB) },
        clear: { totalMs: m('clear', 'totalMs'), downtimeMs: m('clear', 'downtimeMs'), sentMiB: r3(median(runs.clear.map(s => s.sentBytes)) / MiB) },
        ratio: { totalMs: r3(m('tls', 'totalMs') / m('clear', 'totalMs')), downtimeMs: r3(m('tls', 'downtimeMs') / Math.max(1, m('clear', 'downtimeMs'))) },
        runs: { tls: runs.tls.map(s => [s.totalMs, s.downtimeMs]), clear: runs.clear.map(s => [s.totalMs, s.downtimeMs]) }
      })
    }
  }
  // (Integrity is test/integration/qemu/migration-tls.spec.ts's business; this bench only times.)
  return { rounds: ROUNDS, cases, machine: machineInfo(start) }
}

await runBench({
  file: 'bench/migrate-tls.ts',
  main,
  log,
  cleanupMessage: 'destroying the guest',
  cleanup: async () => {
    for (const side of ['a', 'b']) await backend.destroy(name, join(root, side)).catch(() => {})
    rmSync(root, { recursive: true, force: true })
  }
})
