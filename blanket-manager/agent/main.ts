/**
 * Entry point of the host agent (bundled to one file and uploaded by the Blanket bootstrap).
 * Usage: node agent.mjs --dir <blanket dir> --bridge <guest bridge> [--qemu <binary>] [--hypervisor auto|qemu|xen]
 * (auto: Xen when `xl info` works here, i.e. the agent runs in a Xen dom0; else QEMU)
 *   [--imds URL [--imds-interval MS]]: an ec2 host: watch the instance metadata at URL
 *   (http://169.254.169.254) for spot interruptions every MS (default 5000) ms (interruption-watch.ts)
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { chooseBackend, type HypervisorChoice } from './backend-select.ts'
import { Agent } from './server.ts'
import { DEFAULT_IMDS_INTERVAL_MS, InterruptionWatch } from './interruption-watch.ts'
import { ImdsClient } from '../../drivers/ec2/imds.ts'


async function main (): Promise<void> {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, bridge: { type: 'string' }, qemu: { type: 'string' }, build: { type: 'string' }, hypervisor: { type: 'string' }, imds: { type: 'string' }, 'imds-interval': { type: 'string' } } })
  if (values.dir === undefined || values.bridge === undefined) {
    process.stderr.write('usage: agent --dir DIR --bridge BRIDGE [--qemu BINARY]\n')
    process.exit(2)
  }
  const hv = values.hypervisor ?? 'auto'
  if (hv !== 'auto' && hv !== 'qemu' && hv !== 'xen') {
    process.stderr.write(`--hypervisor must be auto, qemu or xen, got ${hv}\n`)
    process.exit(2)
  }
  const backend = await chooseBackend({ dir: values.dir, hypervisor: hv as HypervisorChoice, ...(values.qemu !== undefined ? { qemu: values.qemu } : {}) })
  let watch: InterruptionWatch | undefined
  if (values.imds !== undefined) {
    const intervalMs = Number(values['imds-interval'] ?? DEFAULT_IMDS_INTERVAL_MS)
    if (!Number.isInteger(intervalMs) || intervalMs < 100) {
      process.stderr.write(`--imds-interval must be a number of milliseconds >= 100, got ${values['imds-interval'] ?? ''}\n`)
      process.exit(2)
    }
    watch = new InterruptionWatch(new ImdsClient({ baseUrl: values.imds }), { intervalMs, log: line => { process.stderr.write(`${line}\n`) } })
  }
  const agent = new Agent({ dir: values.dir, bridge: values.bridge, build: values.build ?? 'dev', backend, ...(watch !== undefined ? { watch } : {}) })
  await agent.start()
  await writeFile(join(values.dir, 'agent.pid'), String(process.pid))
  const bye = (): void => { void agent.stop().finally(() => process.exit(0)) }
  process.on('SIGTERM', bye)
  process.on('SIGINT', bye)
  process.stdout.write(`supercloud agent ${process.pid} listening on ${agent.socketPath}\n`)
}

main().catch(err => {
  process.stderr.write(`agent failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
