/**
 * Measuring tools run inside network namespaces: iperf3 (throughput) and busybox ping
 * (round-trip time), with pure parsers for their output.
 */
import { run } from './proc.ts'

export interface IperfResult {
  /** Goodput seen by the receiver, bits/s. */
  bps: number
  /** UDP: datagrams lost (percent); TCP: undefined. */
  lostPercent?: number
  /** TCP: sender retransmits. */
  retransmits?: number
}

interface IperfJson {
  error?: string
  end?: {
    sum_received?: { bits_per_second?: number }
    sum_sent?: { bits_per_second?: number, retransmits?: number }
    sum?: { bits_per_second?: number, lost_percent?: number }
  }
}

/** Parses `iperf3 -J` client output (TCP or UDP); throws on an iperf3 error. */
export function parseIperfJson (text: string): IperfResult {
  const j = JSON.parse(text) as IperfJson
  if (j.error !== undefined) throw new Error(`iperf3: ${j.error}`)
  const e = j.end ?? {}
  if (e.sum !== undefined && e.sum.lost_percent !== undefined) {
    // UDP: the client's summary carries the receiver's loss; goodput = received rate.
    const recv = e.sum_received?.bits_per_second
    const lost = e.sum.lost_percent
    const bps = recv ?? (e.sum.bits_per_second ?? 0) * (1 - lost / 100)
    return { bps, lostPercent: lost }
  }
  const out: IperfResult = { bps: e.sum_received?.bits_per_second ?? 0 }
  if (e.sum_sent?.retransmits !== undefined) out.retransmits = e.sum_sent.retransmits
  return out
}

export interface IperfClientOptions {
  ns: string
  server: string
  port?: number
  seconds?: number
  udp?: boolean
  /** Payload bytes: UDP datagram size (-l) or TCP MSS (-M). */
  payload?: number
  bind?: string
}

export function iperfClientArgv (o: IperfClientOptions): string[] {
  const argv = ['ip', 'netns', 'exec', o.ns, 'iperf3', '-c', o.server, '-p', String(o.port ?? 5201), '-t', String(o.seconds ?? 5), '-J']
  if (o.udp === true) argv.push('-u', '-b', '0', ...(o.payload !== undefined ? ['-l', String(o.payload)] : []))
  else if (o.payload !== undefined) argv.push('-M', String(o.payload))
  if (o.bind !== undefined) argv.push('-B', o.bind)
  return argv
}

/** Runs one iperf3 client to completion. */
export async function iperfClient (o: IperfClientOptions & { beforeTry?: () => Promise<void> }): Promise<IperfResult> {
  for (let attempt = 1; ; attempt++) {
    await o.beforeTry?.()
    const r = await run(iperfClientArgv(o), { allowFailure: true, timeoutMs: ((o.seconds ?? 5) + 20) * 1000 })
    try {
      return parseIperfJson(r.stdout)
    } catch (err) {
      // A server still closing the previous test, or restarted: try again shortly.
      if (attempt < 4 && /unable to connect|server is busy|Connection refused/i.test(String(err) + r.stderr)) {
        await new Promise(resolve => setTimeout(resolve, 1000))
        continue
      }
      throw new Error(`iperf3 ${o.ns} -> ${o.server}: ${String(err)} ${r.stderr.slice(-500)}`)
    }
  }
}

export interface PingResult { minMs: number, avgMs: number, maxMs: number, received: number, sent: number }

/** Parses busybox ping's summary ("N packets transmitted, M packets received", "round-trip min/avg/max = a/b/c ms"). */
export function parsePing (text: string): PingResult {
  const counts = /(\d+) packets transmitted, (\d+) packets received/.exec(text)
  const rtt = /min\/avg\/max = ([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(text)
  if (counts === null || rtt === null) throw new Error(`unexpected ping output: ${text.slice(-300)}`)
  return { sent: Number(counts[1]), received: Number(counts[2]), minMs: Number(rtt[1]), avgMs: Number(rtt[2]), maxMs: Number(rtt[3]) }
}

/** `count` back-to-back pings (-A: next one as soon as the reply arrives) from namespace `ns`. */
export async function pingRtt (ns: string, target: string, count = 500): Promise<PingResult> {
  const r = await run(['ip', 'netns', 'exec', ns, 'busybox', 'ping', '-A', '-q', '-c', String(count), '-W', '2', target], { allowFailure: true, timeoutMs: 60000 })
  const p = parsePing(r.stdout)
  if (p.received < p.sent * 0.9) throw new Error(`ping ${ns} -> ${target}: ${p.received}/${p.sent} answered`)
  return p
}
