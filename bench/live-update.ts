/**
 * bench/live-update.ts — each live update of a running guest (issue 15: a vCPU hot-plugged, a
 * 256 MiB memory step, a disk added) against a cold restart of the same guest to its ready
 * line, measured in one run on one machine, through the QEMU backend the agent uses
 * (drivers/qemu/backend.ts, hot-plug steps from drivers/qemu/hotplug.ts).
 *   - live: from the first QMP command to the last answer (DIMM and disk: the device is in the
 *     guest's ACPI / PCIe hot-plug path when QEMU answers; the guest kernel picks it up after);
 *   - cold restart: the guest killed and started again with the same devices, to its ready line.
 * Prints one JSON object. Usage: node --import tsx bench/live-update.ts [--runs N]
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { buildTinyImage } from '../images/guest/build.ts'
import { createQemuBackend } from '../drivers/qemu/backend.ts'
import type { GuestDefinition } from '../drivers/hypervisor.ts'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' } } })
const runs = Number(values.runs)
const M = 1024 * 1024
const READY = 'SUPERCLOUD-GUEST-READY bench'

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? NaN }

const img = await buildTinyImage()
const backend = createQemuBackend({ balloonStatsIntervalS: 0 })
const live = backend.liveUpdate
if (live === undefined) throw new Error('the QEMU backend has no liveUpdate')
const results = { coldBootMs: [] as number[], vcpuMs: [] as number[], memory256MiBMs: [] as number[], diskMs: [] as number[], coldRestartMs: [] as number[] }

for (let i = 0; i < runs; i++) {
  const dir = mkdtempSync(join(tmpdir(), 'sc-bench-live-'))
  const base: GuestDefinition = {
    name: 'bench',
    cpus: 1,
    memoryBytes: 128 * M,
    accel: 'tcg',
    boot: { kind: 'kernel', kernel: img.kernel, initrd: img.initrd, append: 'console=ttyS0 sc.name=bench' },
    disks: [],
    nics: [],
    runDir: join(dir, 'run')
  }
  try {
    let t0 = process.hrtime.bigint()
    await backend.start(base)
    await backend.waitForConsole('bench', base.runDir, READY, 180000)
    results.coldBootMs.push(ms(t0))

    let now = base
    const step = async (to: GuestDefinition): Promise<number> => {
      const t = process.hrtime.bigint()
      const plugged = await live.call(backend, { from: now, to })
      const took = ms(t)
      now = { ...to, plugged }
      return took
    }
    results.vcpuMs.push(await step({ ...now, cpus: 2 }))
    results.memory256MiBMs.push(await step({ ...now, memoryBytes: now.memoryBytes + 256 * M }))
    const disk = join(dir, 'disk-logs.qcow2')
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', disk, String(64 * M)])
    results.diskMs.push(await step({ ...now, disks: [{ id: 'disk-logs', path: disk, format: 'qcow2' }] }))

    // The same guest, cold: killed and started again with the devices it has now.
    t0 = process.hrtime.bigint()
    await backend.destroy('bench', base.runDir)
    await backend.start(now)
    await backend.waitForConsole('bench', base.runDir, READY, 180000)
    results.coldRestartMs.push(ms(t0))
  } finally {
    await backend.destroy('bench', base.runDir).catch(() => {})
    rmSync(dir, { recursive: true, force: true })
  }
}

const summary = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, { median: Math.round(median(v)), runs: v.map(Math.round) }]))
process.stdout.write(JSON.stringify({ runs, accel: 'tcg', cpus: (await import('node:os')).cpus().length, loadavg: (await import('node:os')).loadavg().map(x => Math.round(x * 10) / 10), ...summary }, null, 2) + '\n')
