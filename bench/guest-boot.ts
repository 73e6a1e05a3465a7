/**
 * bench/guest-boot.ts — a tiny guest's boot to its ready line under QEMU/TCG, two ways in the
 * same run, alternating so the machine's load falls on both alike:
 *   - baseline: the bzImage (`vmlinuz`), as QEMU boots it through the firmware's real-mode path,
 *     the kernel decompressing itself;
 *   - PVH: the same kernel uncompressed (`vmlinux`, images/lib/pvh-kernel.ts), entered directly.
 * Prints one JSON object with the medians and their ratio. Usage: node --import tsx bench/guest-boot.ts [--runs N]
 */
import { parseArgs } from 'node:util'
import { buildTinyImage } from '../images/guest/build.ts'
import { bareBoot } from './lib/boot.ts'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } })
const runs = Number(values.runs)
const img = await buildTinyImage()
if (img.pvh === undefined) throw new Error('the tiny image has no PVH kernel (the host kernel has no PVH entry)')
const results = { bzImageMs: [] as number[], pvhMs: [] as number[] }
for (let i = 0; i < runs; i++) {
  results.bzImageMs.push(await bareBoot(img.kernel, img.initrd))
  results.pvhMs.push(await bareBoot(img.pvh.kernel, img.initrd))
}
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? NaN }
const m = { bzImageMs: median(results.bzImageMs), pvhMs: median(results.pvhMs) }
process.stdout.write(JSON.stringify({ bench: 'guest-boot', accel: 'tcg', runs, median: m, ratios: { pvhOverBzImage: m.pvhMs / m.bzImageMs }, raw: results }, null, 2) + '\n')
