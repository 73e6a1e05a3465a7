/**
 * The fake EC2 server's internet side (plan and rules in internet.ts): the internet namespace
 * with this machine's edge, the gateway's link into the regions' WAN, and keeping its public
 * addresses, 1:1 NAT and security-group filter in step with the running instances.
 */
import { nsRun, run } from '../../local/sh.ts'
import { addVeth, ensureNs, ip, linkExists, sysctl } from '../../local/netns.ts'
import { wanNs } from '../../local/names.ts'
import { IGW_LINK, IGW_PEER, INET_BRIDGE, LAN_BRIDGE, edgeRules, gatewayRules } from './internet.ts'
import type { FakeEc2State } from './state.ts'

/** The namespace of the internet and this machine's edge (the driver's `sshNetns`). */
export function inetNs (prefix: string): string {
  return `${prefix}-inet`
}

export async function ensureInternet (s: FakeEc2State): Promise<void> {
  const inet = inetNs(s.opts.prefix)
  const wan = wanNs(s.opts.prefix)
  const n = s.net
  await ensureNs(inet)
  await sysctl(inet, 'net.ipv4.ip_forward', '1')
  for (const [br, addr, len] of [[INET_BRIDGE, n.publicAddress, n.prefixLen], [LAN_BRIDGE, n.lanGateway, n.lanPrefixLen]] as const) {
    if (!await linkExists(inet, br)) await ip(inet, ['link', 'add', br, 'type', 'bridge'])
    await ip(inet, ['link', 'set', br, 'up'])
    await ip(inet, ['addr', 'replace', `${addr}/${len}`, 'dev', br])
  }
  if (!await linkExists(wan, IGW_LINK) || !await linkExists(inet, IGW_PEER)) {
    await run(['ip', '-n', wan, 'link', 'del', IGW_LINK], { allowFailure: true })
    await run(['ip', '-n', inet, 'link', 'del', IGW_PEER], { allowFailure: true })
    await addVeth(wan, IGW_LINK, inet, IGW_PEER)
  }
  await ip(inet, ['link', 'set', IGW_PEER, 'master', INET_BRIDGE, 'up'])
  await ip(wan, ['addr', 'replace', `${n.igwAddress}/${n.prefixLen}`, 'dev', IGW_LINK])
  await ip(wan, ['link', 'set', IGW_LINK, 'up'])
  await nsRun(inet, ['nft', '-f', '-'], { input: edgeRules(n) })
  await syncGateway(s)
}

/** Makes the gateway's public addresses, NAT and security-group filter match the running instances. Serialised. */
export async function syncGateway (s: FakeEc2State): Promise<void> {
  const next = s.gatewaySync.then(async () => { await syncGatewayNow(s) })
  s.gatewaySync = next.catch(err => { process.emitWarning(`fake EC2 server: internet gateway: ${String(err)}`) })
  await next
}

async function syncGatewayNow (s: FakeEc2State): Promise<void> {
  const wan = wanNs(s.opts.prefix)
  const behind = [...s.instancesById.values()].filter(i => i.state === 'running' && !i.unreachable && i.privateIp !== undefined && i.publicIp !== undefined)
  const want = new Set(behind.map(i => i.publicIp as string))
  const have = (await run(['ip', '-n', wan, '-4', '-o', 'addr', 'show', 'dev', IGW_LINK])).stdout.split('\n')
    .map(l => /\sinet\s+([\d.]+)\/32\s/.exec(l)?.[1]).filter((a): a is string => a !== undefined)
  for (const a of have) if (!want.has(a)) await ip(wan, ['addr', 'del', `${a}/32`, 'dev', IGW_LINK])
  for (const a of want) if (!have.includes(a)) await ip(wan, ['addr', 'add', `${a}/32`, 'dev', IGW_LINK])
  await nsRun(wan, ['nft', '-f', '-'], {
    input: gatewayRules(behind.map(i => ({
      privateIp: i.privateIp as string,
      publicIp: i.publicIp as string,
      ingress: i.groupIds.flatMap(id => s.groups.get(id)?.ingress ?? [])
    })))
  })
}
