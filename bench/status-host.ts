/**
 * bench/status-host.ts — what observing one host costs the controller (the per-host figure of
 * docs/scale.md's fan-out model): `up` of a spec with N local hosts and no guests, then, in
 * process with the real controller, `status` with new connections (cold: SSH handshake, agent
 * socket, hello, listVms per host) and over the connections it keeps (warm: the agent calls
 * only); baseline in the same run: one SSH handshake plus `exec true` to the same host, and
 * the whole `supercloud status --json` process. The controller's CPU time (this process's user +
 * system) is measured with each `status`. Prints one JSON object.
 * Usage: node --import tsx bench/status-host.ts [--hosts 1] [--runs 9]
 */
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { CliSandbox } from './lib/cli.ts'
import { benchLog, machineInfo, runBench } from './lib/entry.ts'
import { median, r3 } from './lib/proc.ts'
import { createController } from '../blanket-manager/controller/index.ts'
import { SshConnection } from '../core/ssh.ts'

const { values } = parseArgs({ options: { hosts: { type: 'string', default: '1' }, runs: { type: 'string', default: '9' } } })
const hosts = Math.max(1, Number(values.hosts))
const runs = Math.max(1, Number(values.runs))
const log = benchLog('status-host')
const load0 = loadavg()
const NAME = 'statusbench'

const spec = [
  `name: ${NAME}`,
  'sites:',
  '  s1: { subnet: 198.18.207.0/24 }',
  'hosts:',
  ...Array.from({ length: hosts }, (_, i) => `  h${i}: { site: s1, memory: 512M, hypervisor: { accel: tcg } }`),
  ''
].join('\n')
const sb = new CliSandbox(spec, 'sc-bench-status-')

const ms = async (fn: () => Promise<unknown>, cpu?: number[]): Promise<number> => {
  const t0 = process.hrtime.bigint()
  const c0 = process.cpuUsage()
  await fn()
  const c = process.cpuUsage(c0)
  cpu?.push((c.user + c.system) / 1000)
  return Number(process.hrtime.bigint() - t0) / 1e6
}

await runBench({
  file: 'bench/status-host.ts',
  log,
  cleanupMessage: 'down and clean up',
  cleanup: async () => { await sb.cleanup() },
  main: async () => {
    log(`up: ${hosts} host(s), no guests`)
    const up = await sb.ok(['up'], { timeoutMs: 600000 })
    await sb.status()
    const cold: number[] = []
    const warm: number[] = []
    const ssh: number[] = []
    const cli: number[] = []
    const coldCpu: number[] = []
    const warmCpu: number[] = []
    const warmController = createController(NAME, { env: sb.env })
    try {
      const s = await warmController.status()
      if (s.hosts.some(h => h.health !== 'running')) throw new Error(`a host is not running: ${JSON.stringify(s.hosts)}`)
      const record = warmController.store.host('h0')?.record
      if (record === undefined) throw new Error('h0 has no record')
      for (let i = 0; i < runs; i++) {
        log(`round ${i + 1}/${runs}`)
        const c = createController(NAME, { env: sb.env })
        try { cold.push(await ms(async () => await c.status(), coldCpu)) } finally { c.close() }
        warm.push(await ms(async () => await warmController.status(), warmCpu))
        ssh.push(await ms(async () => {
          const conn = await SshConnection.connect('h0', record.ssh, { pins: warmController.store.hostKeyPins })
          try { await conn.exec('true') } finally { conn.close() }
        }))
        cli.push((await sb.ok(['status', '--json'])).ms)
      }
    } finally {
      warmController.close()
    }
    const m = { statusColdMs: median(cold), statusColdCpuMs: median(coldCpu), statusWarmMs: median(warm), statusWarmCpuMs: median(warmCpu), sshHandshakeExecMs: median(ssh), cliStatusMs: median(cli) }
    return {
      bench: 'status-host',
      hosts,
      runs,
      upMs: r3(up.ms),
      median: Object.fromEntries(Object.entries(m).map(([k, v]) => [k, r3(v)])),
      perHost: { coldMs: r3(m.statusColdMs / hosts), coldCpuMs: r3(m.statusColdCpuMs / hosts), warmMs: r3(m.statusWarmMs / hosts), warmCpuMs: r3(m.statusWarmCpuMs / hosts) },
      ratios: { coldOverSsh: r3(m.statusColdMs / m.sshHandshakeExecMs), warmOverCold: r3(m.statusWarmMs / m.statusColdMs) },
      raw: { cold: cold.map(r3), warm: warm.map(r3), ssh: ssh.map(r3), cli: cli.map(r3) },
      machine: machineInfo(load0)
    }
  }
})
