/**
 * bench/migrate-return.ts — disk reuse on return (issue 7): a guest with a 256 MiB disk (64 MiB
 * of it written) migrates out, writes W MiB of its disk on the other host, and migrates back.
 * Reports the disk bytes sent on the return against the disk size, the total time and QEMU's
 * downtime, and the same return with the kept image removed (the whole disk is copied), within
 * a site (h1 <-> h2) and across the emulated WAN (h1 <-> h3, 200 Mbit/s, 5 ms one way).
 * Numbers come from `supercloud migrate --json` (diskSentBytes, diskSizeBytes, diskReused,
 * totalMs, downtimeMs). Prints one JSON object.
 * Usage: node --import tsx bench/migrate-return.ts [--writes 1,16] [--paths within,cross]
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import type { MigrateResult } from '../blanket-manager/controller/index.ts'
import { CliSandbox } from './lib/cli.ts'
import { benchLog, machineInfo, runBench } from './lib/entry.ts'
import { bringUp, migrateVm, migrationLabSpec, WAN } from './lib/migrate-lab.ts'
import { r3 } from './lib/proc.ts'

const { values } = parseArgs({
  options: {
    writes: { type: 'string', default: '1,16' },
    paths: { type: 'string', default: 'within,cross' }
  }
})
const WRITES = (values.writes ?? '').split(',').filter(Boolean).map(Number)
const PATHS = (values.paths ?? '').split(',').filter(Boolean)
const MiB = 1048576

const spec = migrationLabSpec({
  name: 'migret',
  octet: 56,
  hosts: { a: ['h1', 'h2'], b: ['h3'] },
  hostMemory: '512M',
  vms: [{ name: 'mover', host: 'h1', memory: '128M', disks: [{ name: 'data', size: '256M' }], address: '198.18.56.101/24' }]
})

const log = benchLog('migrate-return')
const t0 = Date.now()
const load0 = loadavg()

const sb = new CliSandbox(spec, 'sc-bench-migret-')

async function migrate (to: string): Promise<MigrateResult> {
  const m = await migrateVm(sb, { vm: 'mover', to })
  if (!m.ok) throw new Error(`migrate to ${to}: ${m.error}`)
  return m.result
}

function brief (s: MigrateResult): Record<string, unknown> {
  return { from: s.from, to: s.to, diskReused: s.diskReused, diskSentMiB: r3(s.diskSentBytes / MiB), diskSizeMiB: r3(s.diskSizeBytes / MiB), diskSentFraction: r3(s.diskSentBytes / s.diskSizeBytes), totalMs: s.totalMs, downtimeMs: s.downtimeMs, sentMiB: r3(s.sentBytes / MiB) }
}

async function main (): Promise<Record<string, unknown>> {
  await bringUp(sb, log, '3 hosts, 1 guest with a 256 MiB disk')
  await sb.inGuest('mover', 'dd if=/dev/urandom of=/dev/vda bs=1M count=64 conv=notrunc,fsync 2>/dev/null; echo ok', 180)
  const cases: Array<Record<string, unknown>> = []
  let seek = 64
  const write = async (mib: number): Promise<void> => {
    await sb.inGuest('mover', `dd if=/dev/urandom of=/dev/vda bs=1M count=${mib} seek=${seek} conv=notrunc,fsync 2>/dev/null; echo ok`, 180)
    seek = (seek + mib) % 192
  }
  for (const path of PATHS) {
    const away = path === 'within' ? 'h2' : 'h3'
    for (const w of WRITES) {
      for (const kept of [true, false]) {
        if (!kept && w !== Math.max(...WRITES)) continue
        const out = await migrate(away)
        await write(w)
        if (!kept) rmSync(join(sb.dir, 'state', 'migret', 'hosts', 'h1', 'departed', 'mover'), { recursive: true, force: true })
        const back = await migrate('h1')
        log(`${path}: wrote ${w} MiB on ${away}, return ${kept ? 'with' : 'without'} the kept image: disk sent ${(back.diskSentBytes / MiB).toFixed(1)} of ${(back.diskSizeBytes / MiB).toFixed(0)} MiB (reused ${back.diskReused}), total ${back.totalMs} ms, downtime ${back.downtimeMs} ms`)
        cases.push({ path, writtenMiB: w, keptImage: kept, out: brief(out), back: brief(back) })
      }
    }
  }
  return {
    bench: 'migrate-return',
    machine: machineInfo(load0),
    settings: { guestMemory: '128M', disk: '256M (64 MiB written before the first move)', writesMiB: WRITES, paths: PATHS, wan: WAN.label },
    cases,
    wallSeconds: r3((Date.now() - t0) / 1000)
  }
}

await runBench({ file: 'bench/migrate-return.ts', main, log, cleanupMessage: 'down and clean up', cleanup: async () => { await sb.cleanup() } })
