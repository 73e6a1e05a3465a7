/**
 * The local driver's WAN delay: a TUN device in the WAN namespace, policy routing of
 * inter-site traffic through it, and the user-space delay relay (delay-relay.ts) behind socat.
 */
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { projectPath } from '../../core/root.ts'
import type { DriverContext } from '../cloud.ts'
import type { OperationOptions } from '../../core/progress.ts'
import { LocalDriverError, throwIfAborted } from '../../core/errors.ts'
import { DELAY_TUN } from './names.ts'
import { delayRouting, DELAY_RULE_PREF, type NetworkPlan } from './plan.ts'
import { ip, linkExists, nsPids, pidInNs, sysctl } from './netns.ts'
import { isAlive, killPids, nsRun, processCmdline, run, sleep, startDaemon } from './sh.ts'
import { driverDir, progress, readJson } from './files.ts'

/** UDP ports (loopback of the WAN namespace) between the relay and socat. */
const RELAY_PORT = 40001
const SOCAT_PORT = 40002

interface RelayState { relayPid: number, socatPid: number, delayMs: number }

function relayProgram (): { argv: string[] } {
  const relay = projectPath('drivers', 'local', 'delay-relay.ts')
  return { argv: [process.execPath, '--import', import.meta.resolve('tsx'), relay] }
}

async function udpListening (ns: string, port: number): Promise<boolean> {
  const r = await nsRun(ns, ['ss', '-H', '-l', '-u', '-n', `sport = :${port}`], { allowFailure: true })
  return r.stdout.trim() !== ''
}

async function waitFor (what: string, cond: () => Promise<boolean>, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await cond()) {
    throwIfAborted(signal, what)
    if (Date.now() > deadline) throw new LocalDriverError(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(100)
  }
}

export async function stopRelay (ctx: DriverContext): Promise<void> {
  const file = join(driverDir(ctx), 'relay.json')
  const st = await readJson<RelayState | undefined>(file, undefined)
  if (st !== undefined) await killPids([st.socatPid, st.relayPid])
  await rm(file, { force: true })
}

export async function ensureDelay (ctx: DriverContext, plan: NetworkPlan, opts?: OperationOptions): Promise<void> {
  const wan = plan.wanNs
  const rulesOut = (await run(['ip', '-n', wan, 'rule', 'show'])).stdout
  const hasRule = (pref: number): boolean => rulesOut.split('\n').some(l => l.startsWith(`${pref}:`))
  if (plan.delayMs <= 0) {
    await stopRelay(ctx)
    for (let i = 0; i < 64; i++) if (hasRule(DELAY_RULE_PREF + i)) await ip(wan, ['rule', 'del', 'pref', String(DELAY_RULE_PREF + i)])
    if (await linkExists(wan, DELAY_TUN)) await ip(wan, ['link', 'del', DELAY_TUN])
    return
  }
  if (!await linkExists(wan, DELAY_TUN)) await ip(wan, ['tuntap', 'add', 'dev', DELAY_TUN, 'mode', 'tun'])
  await ip(wan, ['link', 'set', DELAY_TUN, 'up'])
  await sysctl(wan, `net.ipv4.conf.${DELAY_TUN}.rp_filter`, '0')
  const routing = delayRouting(plan)
  await ip(wan, routing.route)
  for (const rule of routing.rules) {
    const pref = Number(rule[3])
    if (!hasRule(pref)) await ip(wan, rule)
  }
  const file = join(driverDir(ctx), 'relay.json')
  const st = await readJson<RelayState | undefined>(file, undefined)
  if (st !== undefined && st.delayMs === plan.delayMs && await pidInNs(st.relayPid, wan) && await pidInNs(st.socatPid, wan)) return
  progress(opts, 'network', 'wan', `starting WAN delay relay (${plan.delayMs} ms one way)`)
  await stopRelay(ctx)
  // Anything else left on the relay ports (from a lost state file) goes too.
  for (const pid of await nsPids(wan)) {
    const cmd = await processCmdline(pid)
    if (cmd !== undefined && (cmd.includes('delay-relay') || cmd.includes(`${ctx.prefix}-dly`))) await killPids([pid])
  }
  const log = join(driverDir(ctx), 'relay.log')
  const relayPid = startDaemon(['ip', 'netns', 'exec', wan, ...relayProgram().argv,
    '--listen', String(RELAY_PORT), '--delay', String(plan.delayMs), '--tag', ctx.prefix], log)
  await waitFor('the WAN delay relay', async () => {
    if (!isAlive(relayPid)) throw new LocalDriverError(`the WAN delay relay exited; see ${log}`)
    return await udpListening(wan, RELAY_PORT)
  }, 20000, opts?.signal)
  const socatPid = startDaemon(['ip', 'netns', 'exec', wan, 'socat', '-lp', `${ctx.prefix}-dly`,
    `TUN,tun-name=${DELAY_TUN},tun-type=tun,iff-no-pi,up`,
    `UDP-DATAGRAM:127.0.0.1:${RELAY_PORT},bind=127.0.0.1:${SOCAT_PORT}`], log)
  await writeFile(file, JSON.stringify({ relayPid, socatPid, delayMs: plan.delayMs } satisfies RelayState) + '\n')
  await waitFor('the WAN delay TUN bridge (socat)', async () => {
    if (!isAlive(socatPid)) throw new LocalDriverError(`socat for the WAN delay TUN exited; see ${log}`)
    return await udpListening(wan, SOCAT_PORT)
  }, 10000, opts?.signal)
}
