/**
 * The state stores side by side: SQLite (a file) against PostgreSQL (a local server on a unix
 * socket, started as the tests do: test/helpers/postgres.ts). Per store, the median of 5 runs of:
 * 100 event appends (one per call, as the hub publishes), 100 `status`-like reads (the snapshot
 * plus each VM's host) of 20 hosts / 60 VMs, and 100 VM writes while holding the supercloud
 * lock (fenced on PostgreSQL), plus the time for a standby to take the `serve` leadership after
 * the leader's session ends. `node --import tsx bench/state-store.ts` (root: starts PostgreSQL).
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStateStore, type StateStore } from '../blanket-manager/state/store.ts'
import { seekLeadership } from '../blanket-manager/server/leader.ts'
import { startPostgres } from '../test/helpers/postgres.ts'

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0
const ms = (fn: () => void): number => { const t0 = performance.now(); fn(); return performance.now() - t0 }

function seed (s: StateStore): void {
  s.transaction(() => {
    for (let h = 0; h < 20; h++) s.putHost({ name: `h${h}`, site: 'a', driver: 'local', specHash: 'x', status: 'ready', bootstrapped: true, accel: 'tcg' })
    for (let v = 0; v < 60; v++) s.putVm({ name: `v${v}`, host: `h${v % 20}`, specHash: 'y', status: 'ready', record: { host: `h${v % 20}`, nics: [], memory: { requestedBytes: 1, allocatedBytes: 1 }, cpus: 1, image: 'tiny' } })
  })
}

function run (open: (name: string) => StateStore): Record<string, number> {
  const out: Record<string, number[]> = { append: [], status: [], lockedWrites: [] }
  for (let r = 0; r < 5; r++) {
    const s = open(`bench${r}${Math.random().toString(36).slice(2, 6)}`)
    seed(s)
    out.append?.push(ms(() => { for (let i = 0; i < 100; i++) s.appendEvents([{ ts: new Date().toISOString(), type: 'vm.running', vm: 'v1', data: '{}' }]) }))
    out.status?.push(ms(() => { for (let i = 0; i < 100; i++) { const snap = s.snapshot(); for (const v of snap.vms) s.host(v.host) } }))
    s.lock('bench')
    out.lockedWrites?.push(ms(() => { for (let i = 0; i < 100; i++) s.putVm({ name: 'v1', host: 'h1', specHash: String(i), status: 'ready' }) }))
    s.unlock()
    s.close()
  }
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, median(v)]))
}

const pg = startPostgres()
try {
  const lite = run(name => openStateStore(name, mkdtempSync(join(tmpdir(), 'sc-bench-')), undefined))
  const post = run(name => openStateStore(name, mkdtempSync(join(tmpdir(), 'sc-bench-')), pg.url()))
  for (const k of Object.keys(lite)) {
    console.log(`${k.padEnd(13)} sqlite ${lite[k]?.toFixed(1)} ms  postgres ${post[k]?.toFixed(1)} ms  ratio ${((post[k] ?? 0) / (lite[k] || 1)).toFixed(1)}x`)
  }
  // Takeover: the leader's session is ended by the server (as when its process dies); a standby retrying every 200 ms takes over.
  const dir = mkdtempSync(join(tmpdir(), 'sc-bench-'))
  const leader = openStateStore('lead', dir, pg.url())
  leader.locks.takeLeader()
  const standbyUrl = pg.url() + '&application_name=standby'
  const standby = openStateStore('lead', dir, standbyUrl)
  let took = 0
  const l = seekLeadership(standby.locks, { retryMs: 200, onLead: () => { took = performance.now() } })
  const t0 = performance.now()
  pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'supercloud lock' AND pid = (SELECT backend FROM supercloud_lead.lock_holders WHERE name = 'leader')")
  while (took === 0) await new Promise(resolve => setTimeout(resolve, 20))
  console.log(`takeover      ${(took - t0).toFixed(0)} ms after the leader's session ended (standby retry 200 ms)`)
  l.stop()
  standby.close()
  try { leader.close() } catch { /* its lock session is gone */ }
} finally {
  pg.stop()
}
