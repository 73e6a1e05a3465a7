/**
 * bench/scale-pure.ts — the control plane's pure parts in process at growing sizes (issue 20):
 * spec load (YAML text through the real loader), placement, address resolution, the planner
 * from nothing and a no-op plan over a converged state of that size, the VirtualWire topology
 * compiler and its endpoint diff, Overdriver's decision rule (one interval over every VM, 10%
 * of them overloaded) and the Overdriver capacity plan. Specs and states are synthetic
 * (bench/lib/scale-spec.ts): hosts in sites of 100, VMs half placed by `host:`, 2 wires per VM.
 *
 * Same-run baseline at each size: a JSON round trip of the loaded spec (one linear pass over
 * the same data), and the YAML parser alone, as the loader calls it (what spec load costs before our checks).
 *
 * Output: JSON lines on stdout, one per part and size ({ part, hosts, vms, wires, ms, growth,
 * sizeGrowth, overBaseline }: `growth` is ms over the previous size's ms, to compare with
 * `sizeGrowth`, the growth of the VM count: a part whose growth is well above sizeGrowth is
 * super-linear), then one summary line with the machine. Progress on stderr.
 * Usage: node --import tsx bench/scale-pure.ts [--runs 3] [--sizes 10x100,100x1000,1000x10000]
 */
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { parseDocument } from 'yaml'
import { benchLog, machineInfo } from './lib/entry.ts'
import { median, r3 } from './lib/proc.ts'
import { convergedState, healthyObservation, hostAddresses, scaleSpecYaml, type ScaleSize } from './lib/scale-spec.ts'
import { parseSpec } from '../blanket-manager/specfile/load.ts'
import { networkHash, plan, wiringHash } from '../blanket-manager/planner/plan.ts'
import { place, resolveVms } from '../blanket-manager/planner/placement.ts'
import { assignConnectorIds, compileTopology, diffEndpoints } from '../virtualwire/topology/compile.ts'
import { decide, emptyControllerState, type ControllerInput } from '../overdriver/decision/decide.ts'
import { capacityPlanLines } from '../blanket-manager/cli/plan-capacity.ts'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, sizes: { type: 'string', default: '10x100,100x1000,1000x10000' } } })
const runs = Math.max(1, Number(values.runs))
const sizes: ScaleSize[] = (values.sizes ?? '').split(',').map(s => { const [h, v] = s.split('x').map(Number); return { hosts: h ?? 0, vms: v ?? 0 } })
const log = benchLog('scale-pure')
const load0 = loadavg()
const PREFIX = 'scb'
/** A part whose single run takes longer than this is not repeated. */
const REPEAT_BELOW_MS = 20000
const INTERVAL_MS = 10000

function time (fn: () => unknown): number {
  const t0 = process.hrtime.bigint()
  fn()
  return Number(process.hrtime.bigint() - t0) / 1e6
}

/** Median of `runs` timed calls after one untimed warm-up call (a call slower than REPEAT_BELOW_MS is the measurement). */
function measure (fn: () => unknown): number {
  const warm = time(fn)
  if (warm > REPEAT_BELOW_MS) return warm
  const xs: number[] = []
  for (let i = 0; i < runs; i++) xs.push(time(fn))
  return median(xs)
}

/** The parts at one size: part -> median ms; `emit` gets each part as soon as it is measured. */
function measureSize (size: ScaleSize, emit: (part: string, ms: number, wires: number) => void): Record<string, number> {
  const text = scaleSpecYaml(size)
  const file = '/nonexistent/scale/supercloud.yaml'
  const spec = parseSpec(text, file)
  const wires = spec.network.wires
  const resolved = resolveVms(spec, PREFIX)
  const state = convergedState(spec, resolved)
  state.networks = [{ driver: 'local', specHash: networkHash(spec, 'local'), status: 'ready' }]
  const obs = { ...healthyObservation(state), wiringApplied: wiringHash(spec, wires, resolved) }
  const noop = plan(spec, state, PREFIX, obs)
  if (noop.actions.length > 0) throw new Error(`the converged state's plan is not empty: ${noop.actions.slice(0, 3).map(a => a.kind).join(', ')}`)
  const placement = Object.fromEntries(Object.values(resolved).map(r => [r.spec.name, r.host]))
  const ids = assignConnectorIds(wires, {})
  const topoInput = { spec, placement, hostAddress: hostAddresses(state), ids, prefix: PREFIX }
  const topo = compileTopology(topoInput)
  // Overdriver: every VM oversubscribed (allocated 3/4 of requested), 1 in 10 overloaded, every host with room for 2 VMs.
  const odInput: ControllerInput = {
    atMs: INTERVAL_MS,
    rates: Object.fromEntries(Object.values(resolved).map((r, i) => [r.spec.name, i % 10 === 0 ? 5000 : 10])),
    vms: Object.values(resolved).map(r => ({ name: r.spec.name, host: r.host, requestedBytes: r.spec.memory.requestedBytes, allocatedBytes: r.spec.memory.requestedBytes * 3 / 4 })),
    hosts: Object.values(spec.hosts).map(h => ({ name: h.name, migrationSpaceBytes: 2 * 128 * 2 ** 20 }))
  }
  // A state in which the overloaded VMs were overloaded for many intervals: this interval decides their migrations.
  // (intervals of 10 s: the 8th overloaded interval of the window makes the overload sustained)
  let odState = emptyControllerState()
  for (let k = 1; k < 8; k++) odState = decide(odState, { ...odInput, atMs: k * INTERVAL_MS }).state
  const decidingAt = 8 * INTERVAL_MS
  const sustained = decide(odState, { ...odInput, atMs: decidingAt })
  log(`${size.hosts} hosts, ${size.vms} VMs, ${wires.length} wires: ${topo.connectors.length} connectors, overdriver ${sustained.actions.filter(a => a.kind === 'migrate').length} migrations decided`)

  const parts: Record<string, () => unknown> = {
    baseline: () => JSON.parse(JSON.stringify(spec)),
    yamlOnly: () => parseDocument(text, { uniqueKeys: false }).toJS(),
    specLoad: () => parseSpec(text, file),
    placement: () => place(spec),
    resolve: () => resolveVms(spec, PREFIX),
    planFromNothing: () => plan(spec, { networks: [], hosts: [], vms: [] }, PREFIX),
    planNoop: () => plan(spec, state, PREFIX, obs),
    topology: () => compileTopology({ ...topoInput, ids: assignConnectorIds(wires, {}) }),
    endpointDiff: () => diffEndpoints(topo.endpoints, topo.endpoints),
    overdriverStart: () => decide(emptyControllerState(), odInput),
    overdriverSustained: () => decide(odState, { ...odInput, atMs: decidingAt }),
    capacityPlan: () => capacityPlanLines(spec)
  }
  const ms: Record<string, number> = {}
  for (const [part, fn] of Object.entries(parts)) {
    ms[part] = measure(fn)
    emit(part, ms[part], wires.length)
  }
  return ms
}

let prev: { size: ScaleSize, ms: Record<string, number> } | undefined
for (const size of sizes) {
  log(`measuring ${size.hosts} hosts / ${size.vms} VMs (${runs} run(s) each)`)
  let baselineMs = NaN
  const ms = measureSize(size, (part, partMs, wires) => {
    const before = prev?.ms[part]
    if (part === 'baseline') baselineMs = partMs
    log(`  ${part}: ${r3(partMs)} ms`)
    process.stdout.write(JSON.stringify({
      bench: 'scale-pure',
      part,
      hosts: size.hosts,
      vms: size.vms,
      wires,
      ms: r3(partMs),
      growth: before !== undefined && before > 0 ? r3(partMs / before) : null,
      sizeGrowth: prev !== undefined ? r3(size.vms / prev.size.vms) : null,
      overBaseline: r3(partMs / baselineMs)
    }) + '\n')
  })
  prev = { size, ms }
}
process.stdout.write(JSON.stringify({ bench: 'scale-pure', summary: true, runs, sizes, machine: machineInfo(load0) }) + '\n')
