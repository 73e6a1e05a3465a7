/**
 * bench/xen-migrate.ts — live migration between Xen hosts (issue 6) against QEMU's, measured in
 * the same run. One site with two Xen hosts (xen-a, xen-b: QEMU TCG machines running Xen 4.17
 * with the images/xen-host dom0) and two QEMU TCG hosts (q-a, q-b). On each pair a 128 MiB
 * tiny guest (db1 on Xen, db2 on QEMU) is wired by VirtualWire to a peer on the other host of
 * its pair (app1, app2), which sends a UDP probe to it every 10 ms (netprobe) while db moves to
 * the peer's host and back, `--rounds` times. Per migration: `supercloud migrate --json`'s
 * total time, downtime (Xen: the source's view from the suspend to the end of the stream) and
 * bytes sent, and the longest gap between two probe echoes as the peer saw it.
 * Prints one JSON object with medians per backend, the Xen/QEMU ratios, and the ratios to the
 * seed's VirtualWire migration on Xen-Blanket (local, with endpoints: 1.3 s downtime, 20.1 s
 * total; DESIGN.md, Tables 5.1/5.2).
 * Usage: node --import tsx bench/xen-migrate.ts [--rounds 3]
 */
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import type { MigrateResult } from '../blanket-manager/controller/index.ts'
import { CliSandbox } from './lib/cli.ts'
import { benchLog, machineInfo, runBench } from './lib/entry.ts'
import { bringUp, guestProbe, migrateVm, startEcho, type ProbeSummary } from './lib/migrate-lab.ts'
import { median, r3 } from './lib/proc.ts'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' } } })
const ROUNDS = Number(values.rounds)
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`--rounds must be a positive integer, got ${values.rounds ?? ''}`)
const MiB = 1048576
/** The seed's VirtualWire migration, local, with endpoints (DESIGN.md §4). */
const SEED = { downtimeMs: 1300, totalMs: 20100 } as const

const spec = `
name: xenmig
sites:
  x: { subnet: 198.18.62.0/24 }
hosts:
  xen-a: { site: x, cpus: 2, memory: 384M, hypervisor: { backend: xen } }
  xen-b: { site: x, cpus: 2, memory: 384M, hypervisor: { backend: xen } }
  q-a: { site: x, memory: 512M, hypervisor: { accel: tcg } }
  q-b: { site: x, memory: 512M, hypervisor: { accel: tcg } }
images:
  tiny: { builtin: tiny }
vms:
  app1: { image: tiny, host: xen-a, memory: 128M, nics: [ { name: eth0, address: 198.19.62.2/24 } ] }
  db1: { image: tiny, host: xen-b, memory: 128M, nics: [ { name: eth0, address: 198.19.62.3/24 } ] }
  app2: { image: tiny, host: q-a, memory: 128M, nics: [ { name: eth0, address: 198.19.63.2/24 } ] }
  db2: { image: tiny, host: q-b, memory: 128M, nics: [ { name: eth0, address: 198.19.63.3/24 } ] }
network:
  wires:
    - app1.eth0 -- db1.eth0
    - app2.eth0 -- db2.eth0
`

const PAIRS = [
  { backend: 'xen', peer: 'app1', mover: 'db1', address: '198.19.62.3', hosts: ['xen-a', 'xen-b'] },
  { backend: 'qemu', peer: 'app2', mover: 'db2', address: '198.19.63.3', hosts: ['q-a', 'q-b'] }
] as const

interface Move { from: string, to: string, totalMs: number, downtimeMs: number, sentMiB: number, probeGapMs: number | null, probeLost: number | null }

const log = benchLog('xen-migrate')
const t0 = Date.now()
const load0 = loadavg()
const sb = new CliSandbox(spec, 'sc-bench-xenmig-')

async function move (pair: typeof PAIRS[number], to: string): Promise<Move> {
  const probe = guestProbe({ sb, vm: pair.peer, target: pair.address, settleS: 2 })
  await probe.start()
  const m = await migrateVm(sb, { vm: pair.mover, to })
  const p: ProbeSummary | undefined = await probe.stop()
  if (!m.ok) throw new Error(`migrate ${pair.mover} to ${to}: ${m.error}`)
  const r: MigrateResult = m.result
  const out = { from: r.from, to: r.to, totalMs: r.totalMs, downtimeMs: r.downtimeMs, sentMiB: r3(r.sentBytes / MiB), probeGapMs: p?.maxGapMs ?? null, probeLost: p?.lost ?? null }
  log(`${pair.backend}: ${pair.mover} ${r.from} -> ${r.to}: total ${r.totalMs} ms, downtime ${r.downtimeMs} ms, sent ${out.sentMiB} MiB, peer's longest probe gap ${out.probeGapMs ?? '?'} ms`)
  return out
}

function summary (moves: Move[]): Record<string, number | null> {
  const gaps = moves.map(m => m.probeGapMs).filter((g): g is number => g !== null)
  return {
    totalMs: median(moves.map(m => m.totalMs)),
    downtimeMs: median(moves.map(m => m.downtimeMs)),
    sentMiB: r3(median(moves.map(m => m.sentMiB))),
    probeGapMs: gaps.length > 0 ? median(gaps) : null
  }
}

async function main (): Promise<Record<string, unknown>> {
  await bringUp(sb, log, '2 Xen hosts, 2 QEMU hosts, 4 guests, 2 wires')
  const moves: Record<string, Move[]> = { xen: [], qemu: [] }
  for (const pair of PAIRS) await startEcho(sb, pair.mover)
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate which backend goes first, so neither always runs on a machine warmed up by the other.
    for (const pair of round % 2 === 0 ? PAIRS : [...PAIRS].reverse()) {
      moves[pair.backend]?.push(await move(pair, pair.hosts[0]))
      moves[pair.backend]?.push(await move(pair, pair.hosts[1]))
    }
  }
  const xen = summary(moves.xen ?? [])
  const qemu = summary(moves.qemu ?? [])
  const ratio = (a: number | null | undefined, b: number | null | undefined): number | null => a == null || b == null || b === 0 ? null : r3(a / b)
  return {
    bench: 'xen-migrate',
    machine: machineInfo(load0),
    settings: { guestMemory: '128M', rounds: ROUNDS, migrationsPerBackend: 2 * ROUNDS, probeIntervalMs: 10, xenHost: 'QEMU 7.2 TCG, Xen 4.17, 2 CPUs (dom0 pinned to CPU 0)', qemuHost: 'QEMU TCG' },
    medians: { xen, qemu },
    xenOverQemu: { totalMs: ratio(xen.totalMs, qemu.totalMs), downtimeMs: ratio(xen.downtimeMs, qemu.downtimeMs), probeGapMs: ratio(xen.probeGapMs, qemu.probeGapMs) },
    xenOverSeed: { downtimeMs: ratio(xen.downtimeMs, SEED.downtimeMs), probeGapMs: ratio(xen.probeGapMs, SEED.downtimeMs), totalMs: ratio(xen.totalMs, SEED.totalMs) },
    moves,
    wallSeconds: r3((Date.now() - t0) / 1000)
  }
}

await runBench({ file: 'bench/xen-migrate.ts', main, log, cleanupMessage: 'down and clean up', cleanup: async () => { await sb.cleanup() } })
