/**
 * bench/up.ts — time to `up` the example from nothing, time of a no-op `up`, and `down`,
 * each next to a baseline measured in the same run on the same machine:
 *   - baseline for up: one bare QEMU boot of the same guest image to its ready line
 *     (the irreducible cost of a guest under this machine's hypervisor mode);
 *   - baseline for no-op up: `supercloud status` (the same observation without planning/applying).
 * Prints one JSON object. Usage: node --import tsx bench/up.ts [--runs N] [--spec FILE]
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { buildTinyImage, qemuKernel } from '../images/guest/build.ts'
import { bareBoot } from './lib/boot.ts'
import { parseSpec } from '../blanket-manager/specfile/load.ts'

const root = resolve(import.meta.dirname, '..')
const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, spec: { type: 'string', default: join(root, 'examples', 'local.yaml') } } })
const runs = Number(values.runs)
const specFile = resolve(values.spec ?? '')

function cli (args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint()
  const r = spawnSync(join(root, 'bin', 'supercloud'), ['-f', specFile, ...args], { env, encoding: 'utf8' })
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  if (r.status !== 0) throw new Error(`supercloud ${args.join(' ')} failed:\n${r.stderr}`)
  return ms
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? NaN }

const img = await buildTinyImage()
const spec = parseSpec(readFileSync(specFile, 'utf8'), specFile)
const results = { upMs: [] as number[], noopUpMs: [] as number[], statusMs: [] as number[], downMs: [] as number[], bareBootMs: [] as number[] }
for (let i = 0; i < runs; i++) {
  const state = mkdtempSync(join(tmpdir(), 'sc-bench-up-'))
  const env = { ...process.env, SUPERCLOUD_STATE_DIR: state }
  try {
    results.bareBootMs.push(await bareBoot(qemuKernel(img), img.initrd))
    results.upMs.push(cli(['up'], env))
    results.statusMs.push(cli(['status', '--json'], env))
    results.noopUpMs.push(cli(['up'], env))
    results.downMs.push(cli(['down'], env))
  } finally {
    spawnSync(join(root, 'bin', 'supercloud'), ['-f', specFile, 'down'], { env })
    rmSync(state, { recursive: true, force: true })
  }
}
const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)])) as Record<keyof typeof results, number>
process.stdout.write(JSON.stringify({
  bench: 'up',
  spec: specFile,
  hosts: Object.keys(spec.hosts).length,
  vms: Object.keys(spec.vms).length,
  runs,
  median: m,
  ratios: {
    upOverBareBoot: m.upMs / m.bareBootMs,
    noopUpOverStatus: m.noopUpMs / m.statusMs
  },
  raw: results
}, null, 2) + '\n')
