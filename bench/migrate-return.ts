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
import { cpus, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { CliSandbox } from './lib/cli.ts'
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

const spec = `
name: migret
sites:
  a: { subnet: 198.18.56.0/24 }
  b: { subnet: 198.18.57.0/24 }
wan: { bandwidth: 200mbit, delay: 5ms }
hosts:
  h1: { site: a, memory: 512M, hypervisor: { accel: tcg } }
  h2: { site: a, memory: 512M, hypervisor: { accel: tcg } }
  h3: { site: b, memory: 512M, hypervisor: { accel: tcg } }
images:
  tiny: { builtin: tiny }
vms:
  mover:
    image: tiny
    host: h1
    memory: 128M
    disks: [ { name: data, size: 256M } ]
    nics: [ { name: eth0, address: 198.18.56.101/24 } ]
`

const log = (m: string): void => { process.stderr.write(`[migrate-return] ${m}\n`) }
const t0 = Date.now()
const load0 = loadavg()

interface Summary { from: string, to: string, totalMs: number, downtimeMs: number, sentBytes: number, diskSentBytes: number, diskSizeBytes: number, diskReused: boolean }

const sb = new CliSandbox(spec, 'sc-bench-migret-')

async function migrate (to: string): Promise<Summary> {
  const r = await sb.run(['migrate', 'mover', '--to', to, '--json'], { timeoutMs: 300000 })
  if (r.code !== 0) throw new Error(`migrate to ${to}: ${r.stderr.split('\n').filter(l => /error/.test(l)).join(' ')}`)
  return JSON.parse(r.stdout) as Summary
}

function brief (s: Summary): Record<string, unknown> {
  return { from: s.from, to: s.to, diskReused: s.diskReused, diskSentMiB: r3(s.diskSentBytes / MiB), diskSizeMiB: r3(s.diskSizeBytes / MiB), diskSentFraction: r3(s.diskSentBytes / s.diskSizeBytes), totalMs: s.totalMs, downtimeMs: s.downtimeMs, sentMiB: r3(s.sentBytes / MiB) }
}

async function main (): Promise<Record<string, unknown>> {
  log('up (3 hosts, 1 guest with a 256 MiB disk)')
  await sb.ok(['up'], { timeoutMs: 900000 })
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
    machine: { cores: cpus().length, loadavgStart: load0.map(r3), loadavgEnd: loadavg().map(r3) },
    settings: { guestMemory: '128M', disk: '256M (64 MiB written before the first move)', writesMiB: WRITES, paths: PATHS, wan: '200mbit, 5ms one way' },
    cases,
    wallSeconds: r3((Date.now() - t0) / 1000)
  }
}

let exitCode = 0
try {
  process.stdout.write(JSON.stringify(await main(), null, 2) + '\n')
} catch (err) {
  process.stderr.write(`bench/migrate-return.ts failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  exitCode = 1
} finally {
  log('down and clean up')
  await sb.cleanup()
}
process.exit(exitCode)
