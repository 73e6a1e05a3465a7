/**
 * bench/virtualwire.ts — VirtualWire connectors against baselines measured in the same run,
 * on a test bed of real kernel parts (bench/lib/lab.ts): four host namespaces on an underlay
 * bridge (198.18.210.1-.4), an endpoint manager daemon per host serving the FUSE endpoint
 * interface (endpoints created with `echo … > create`), VM-side namespaces attached to the
 * endpoint bridges (MTU 1450), iperf3 and busybox ping inside them.
 *
 *  (1) throughput, connector vs the direct underlay between the same two host namespaces,
 *      TCP (MSS 1400) and UDP (1400-byte datagrams, unlimited rate; receiver goodput), and
 *      vs data-plane shapes built in the same run: a bare kernel VXLAN pair between the host
 *      namespaces (no supercloud, no guest hop), the bridged connector (hosts h3/h4 whose
 *      endpoint managers run with --no-fast-path: guest veth -> endpoint bridge -> VXLAN, the
 *      shape before the fast path) and, by hand, the fast path's tc redirects without any
 *      bridge (guest veth not enslaved) — the connector's fast path keeps the NIC on the bridge;
 *  (2) the connector vs user-space tunnels between the same host namespaces, VM-side
 *      namespaces bridged to each tunnel's TAP device like to an endpoint bridge:
 *      OpenVPN p2p TAP without crypto, vtun (type ether, UDP, no encryption) when installed,
 *      and supercloud's own extender (OpenVPN TLS + AES-256-GCM, TUN; measured host to host
 *      over the tunnel addresses);
 *  (3) round-trip time through chains of 0-3 Domain-0 switches (bridges joined by
 *      connectors): collapsed (everything on h1, connectors collapsed) vs encapsulated
 *      (nodes alternate between h1 and h2, every connector crosses the underlay);
 *  (4) 1, 16 and 64 connectors between h1 and h2 in parallel, one iperf3 pair per connector:
 *      aggregate throughput (underlay bytes received by h2 in a window of --seconds that opens
 *      once every client is connected, clientsRunning = how many ran through the window) vs one.
 *
 * Throughput configurations are measured round-robin (--rounds), so the machine's noise hits
 * them alike; the medians are compared. Prints one JSON object.
 * Usage: node --import tsx bench/virtualwire.ts [--seconds 5] [--rounds 3] [--pings 500] [--parallel 16,64] [--shapes-only]
 * (--shapes-only: only the throughput of direct, bareVxlan, connector, bridged and tcNoBridge.)
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { connectExtender, netnsShell } from '../virtualwire/extender/manage.ts'
import { extenderDevName, extenderTunnel } from '../virtualwire/extender/openvpn.ts'
import { benchLog, machineInfo, runBench } from './lib/entry.ts'
import { Lab } from './lib/lab.ts'
import { iperfClient, pingRtt, type IperfResult } from './lib/measure.ts'
import { linearFit, median, r3, run, sleep } from './lib/proc.ts'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    pings: { type: 'string', default: '500' },
    parallel: { type: 'string', default: '16,64' },
    'max-switches': { type: 'string', default: '3' },
    'shapes-only': { type: 'boolean', default: false }
  }
})
const SECONDS = Number(values.seconds)
const ROUNDS = Number(values.rounds)
const PINGS = Number(values.pings)
const PARALLEL = [1, ...(values.parallel ?? '').split(',').filter(Boolean).map(Number)]
const MAX_SW = Number(values['max-switches'])
/** Only the data-plane shapes' throughput (direct, bareVxlan, connector, bridged, tcNoBridge): no tunnels, latency or parallel sections. */
const SHAPES_ONLY = values['shapes-only'] === true
const PAYLOAD = 1400

const lab = new Lab()
const P = lab.prefix
const notes: string[] = []
const log = benchLog('virtualwire')
const load0 = loadavg()
const t0 = Date.now()

const U = (i: number): string => `198.18.210.${i + 1}`
let vtunLockDirMade = false
let vtunSession = ''

async function main (): Promise<Record<string, unknown>> {
  log(`prefix ${P}: hosts h1 ${U(0)}, h2 ${U(1)} (fast path), h3 ${U(2)}, h4 ${U(3)} (--no-fast-path); endpoint daemons`)
  await lab.addHosts(['h1', 'h2', 'h3', 'h4'], U)
  await lab.startEndpointDaemon('h1')
  await lab.startEndpointDaemon('h2')
  await lab.startEndpointDaemon('h3', { fastPath: false })
  await lab.startEndpointDaemon('h4', { fastPath: false })
  const h1 = lab.host('h1')
  const h2 = lab.host('h2')

  // ---- (1) + (2): paths for throughput --------------------------------------------------
  await lab.connector(1, 'h1', 'h2')
  const a1 = await lab.guestOnEndpoint('a1', 'h1', 1, '198.19.1.1/24')
  const a2 = await lab.guestOnEndpoint('a2', 'h2', 1, '198.19.1.2/24')
  for (const [h, g] of [['h1', 'a1'], ['h2', 'a2']] as const) {
    let to: string | undefined
    for (let i = 0; i < 50 && to !== `${P}x1`; i++) { to = await lab.redirectOf(h, `${P}${g}`); if (to !== `${P}x1`) await sleep(100) }
    if (to !== `${P}x1`) throw new Error(`${h}: no fast path on connector 1 (redirect of ${P}${g}: ${to ?? 'none'})`)
  }
  notes.push('connector: endpoint managers h1/h2 with the fast path (tc clsact + u32 match-all + mirred redirect guest veth <-> VXLAN; the veth stays enslaved to the endpoint bridge, which frames bypass)')
  // The bridged shape (before the fast path): same connector between h3 and h4, managers with --no-fast-path.
  await lab.connector(2, 'h3', 'h4')
  const b1 = await lab.guestOnEndpoint('k1', 'h3', 2, '198.19.4.1/24')
  await lab.guestOnEndpoint('k2', 'h4', 2, '198.19.4.2/24')
  notes.push('bridged: endpoint managers h3/h4 with --no-fast-path: guest veth -> endpoint bridge -> VXLAN (the shape before the fast path)')
  // A bare kernel VXLAN pair between the host namespaces h1 and h2 (no supercloud, no guest hop).
  for (const [h, peer, addr] of [[h1, h2, '198.19.5.1/24'], [h2, h1, '198.19.5.2/24']] as const) {
    await run(['ip', '-n', h.ns, 'link', 'add', `${P}bare`, 'mtu', '1450', 'type', 'vxlan', 'id', '4000', 'local', h.ip, 'dstport', '4789', 'nolearning'])
    await run(['bridge', '-n', h.ns, 'fdb', 'append', '00:00:00:00:00:00', 'dev', `${P}bare`, 'dst', peer.ip])
    await run(['ip', '-n', h.ns, 'addr', 'add', addr, 'dev', `${P}bare`])
    await run(['ip', '-n', h.ns, 'link', 'set', `${P}bare`, 'up'])
  }
  notes.push('bareVxlan: ip link add type vxlan id 4000 dstport 4789 nolearning + default FDB entry in each host namespace, addresses on the VXLAN devices, MTU 1450')
  // By hand: guest veth <-> VXLAN with tc redirects and no bridge at all.
  for (const [h, peer, g, addr] of [[h1, h2, 'n1', '198.19.6.1/24'], [h2, h1, 'n2', '198.19.6.2/24']] as const) {
    const vx = `${P}nbx`
    const guest = await lab.addGuest(g, h.name, addr)
    await run(['ip', '-n', h.ns, 'link', 'add', vx, 'mtu', '1450', 'type', 'vxlan', 'id', '4001', 'local', h.ip, 'dstport', '4789', 'nolearning'])
    await run(['bridge', '-n', h.ns, 'fdb', 'append', '00:00:00:00:00:00', 'dev', vx, 'dst', peer.ip])
    await run(['ip', '-n', h.ns, 'link', 'set', guest.link, 'mtu', '1450', 'up'])
    await run(['ip', '-n', h.ns, 'link', 'set', vx, 'up'])
    for (const [from, to] of [[guest.link, vx], [vx, guest.link]] as Array<[string, string]>) {
      await run(['tc', '-n', h.ns, 'qdisc', 'add', 'dev', from, 'clsact'])
      await run(['tc', '-n', h.ns, 'filter', 'add', 'dev', from, 'ingress', 'protocol', 'all', 'u32', 'match', 'u32', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', to])
    }
  }
  notes.push('tcNoBridge: by hand, guest veth (no master) <-> VXLAN id 4001 with tc clsact + u32 match-all + mirred redirect both ways')

  const EXT = 3
  const tun = extenderTunnel(EXT)
  const haveVtun = !SHAPES_ONLY && spawnSync('sh', ['-c', 'command -v vtund'], { encoding: 'utf8' }).status === 0
  if (!SHAPES_ONLY) {
    // OpenVPN p2p, TAP, no crypto: persistent TAP devices enslaved to a bridge with a VM-side namespace.
    for (const [h, g, addr] of [[h1, 'o1', '198.19.2.1/24'], [h2, 'o2', '198.19.2.2/24']] as const) {
      await run(['ip', '-n', h.ns, 'tuntap', 'add', 'dev', `${P}ot`, 'mode', 'tap'])
      await lab.guestOnBridge(g, h.name, `${P}ob`, addr)
      await run(['ip', '-n', h.ns, 'link', 'set', `${P}ot`, 'master', `${P}ob`, 'up'])
    }
    for (const [h, peer] of [[h1, h2], [h2, h1]] as const) {
      lab.spawnIn(h.ns, ['openvpn', '--dev', `${P}ot`, '--dev-type', 'tap', '--proto', 'udp', '--local', h.ip, '--lport', '1194',
        '--remote', peer.ip, '--rport', '1194', '--tun-mtu', '1450', '--mssfix', '0', '--verb', '1'])
    }
    notes.push('openvpn: OpenVPN 2.6 point-to-point, TAP, UDP, no --secret/--tls (no encryption or authentication), --tun-mtu 1450 --mssfix 0')

    // vtun (Debian package vtun) if installed: type ether, proto udp, encrypt/compress no.
    if (haveVtun) {
      if (!existsSync('/var/lock/vtund')) { mkdirSync('/var/lock/vtund', { recursive: true }); vtunLockDirMade = true }
      vtunSession = `${P}vt`
      const conf = (): string => `options {\n  port 5000;\n  timeout 10;\n  ip /usr/sbin/ip;\n}\n${vtunSession} {\n  passwd ${P}pw;\n  type ether;\n  device ${P}vt;\n  proto udp;\n  compress no;\n  encrypt no;\n  keepalive no;\n  stat no;\n  multi killold;\n  up {\n    ip "link set %% mtu 1450 master ${P}vb up";\n  };\n}\n`
      const confPath = join(lab.dir, 'vtund.conf')
      writeFileSync(confPath, conf())
      for (const [h, g, addr] of [[h1, 'v1', '198.19.3.1/24'], [h2, 'v2', '198.19.3.2/24']] as const) await lab.guestOnBridge(g, h.name, `${P}vb`, addr)
      lab.spawnIn(h2.ns, ['vtund', '-s', '-n', '-f', confPath, '-P', '5000', '-L', h2.ip])
      await sleep(500)
      const client = lab.spawnIn(h1.ns, ['vtund', '-n', '-f', confPath, vtunSession, h2.ip])
      let up = false
      for (let i = 0; i < 50 && !up; i++) {
        await sleep(200)
        up = (await run(['ip', '-n', h1.ns, 'link', 'show', 'dev', `${P}vt`], { allowFailure: true })).code === 0 &&
             (await run(['ip', '-n', h2.ns, 'link', 'show', 'dev', `${P}vt`], { allowFailure: true })).code === 0
      }
      if (!up) throw new Error(`vtun did not come up: ${client.tail()}`)
      notes.push('vtun: vtund 3.0.4 (Debian package vtun), type ether, proto udp, encrypt no, compress no, TAP MTU 1450')
    } else {
      notes.push('vtun: skipped — vtund is not installed (apt-get install -y vtun)')
    }

    // supercloud's extender: OpenVPN TLS + AES-256-GCM, TUN, between the host namespaces (index 3: port 1197).
    await connectExtender({
      name: 'bench',
      index: EXT,
      a: { shell: netnsShell('h1', h1.ns), ip: h1.ip, port: 1194 + EXT, dev: extenderDevName(P, EXT), runDir: join(lab.dir, 'ext-h1') },
      b: { shell: netnsShell('h2', h2.ns), ip: h2.ip, port: 1194 + EXT, dev: extenderDevName(P, EXT), runDir: join(lab.dir, 'ext-h2') },
      timeoutMs: 30000
    })
    notes.push(`extender: virtualwire/extender connectExtender (OpenVPN, TLS 1.2+ P-256, AES-256-GCM, TUN), iperf3 between the tunnel addresses ${tun.a} -> ${tun.b} of the host namespaces (L3, MTU 1500 TUN)`)
  }

  // iperf3 servers.
  const servers: Array<[string, string]> = [[h2.ns, h2.ip], [h2.ns, '198.19.5.2'], [a2, '198.19.1.2'], [`${P}-k2`, '198.19.4.2'], [`${P}-n2`, '198.19.6.2'], ...(SHAPES_ONLY ? [] : [[`${P}-o2`, '198.19.2.2'], [h2.ns, tun.b]] as Array<[string, string]>)]
  if (haveVtun) servers.push([`${P}-v2`, '198.19.3.2'])
  const serverProcs = new Map<string, ReturnType<typeof lab.spawnIn>>()
  const ensureServer = async (ns: string): Promise<void> => {
    const s = serverProcs.get(ns)
    if (s !== undefined && s.child.exitCode === null && s.child.signalCode === null) return
    if (s !== undefined) notes.push(`iperf3 server in ${ns} exited (${s.tail().trim().slice(-200)}); restarted`)
    serverProcs.set(ns, lab.spawnIn(ns, ['iperf3', '-s', '-p', '5201']))
    await sleep(500)
  }
  for (const ns of new Set(servers.map(s => s[0]))) await ensureServer(ns)
  const serverNs = (target: string): string => servers.find(s => s[1] === target)?.[0] ?? ''

  const paths: Record<string, { ns: string, target: string }> = {
    direct: { ns: h1.ns, target: h2.ip },
    bareVxlan: { ns: h1.ns, target: '198.19.5.2' },
    connector: { ns: a1, target: '198.19.1.2' },
    bridged: { ns: b1, target: '198.19.4.2' },
    tcNoBridge: { ns: `${P}-n1`, target: '198.19.6.2' },
    ...(SHAPES_ONLY ? {} : { openvpn: { ns: `${P}-o1`, target: '198.19.2.2' } }),
    ...(haveVtun ? { vtun: { ns: `${P}-v1`, target: '198.19.3.2' } } : {}),
    ...(SHAPES_ONLY ? {} : { extender: { ns: h1.ns, target: tun.b } })
  }
  // Warm-up (ARP, tunnel handshakes) and reachability.
  for (const [name, p] of Object.entries(paths)) {
    const r = await run(['ip', 'netns', 'exec', p.ns, 'busybox', 'ping', '-c', '2', '-W', '5', p.target], { allowFailure: true })
    if (r.code !== 0) throw new Error(`${name}: ${p.target} unreachable: ${r.stdout}${r.stderr}`)
  }

  const tput: Record<string, { tcp: number[], udp: number[], udpLossPct: number[], tcpRetransmits: number[] }> = {}
  for (const name of Object.keys(paths)) tput[name] = { tcp: [], udp: [], udpLossPct: [], tcpRetransmits: [] }
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, p] of Object.entries(paths)) {
      for (const udp of [false, true]) {
        log(`throughput round ${round + 1}/${ROUNDS}: ${name} ${udp ? 'udp' : 'tcp'}`)
        const res: IperfResult = await iperfClient({ ns: p.ns, server: p.target, seconds: SECONDS, udp, payload: PAYLOAD, beforeTry: async () => { await ensureServer(serverNs(p.target)) } })
        const row = tput[name]
        if (row === undefined) continue
        if (udp) { row.udp.push(res.bps / 1e6); row.udpLossPct.push(res.lostPercent ?? NaN) } else { row.tcp.push(res.bps / 1e6); row.tcpRetransmits.push(res.retransmits ?? NaN) }
      }
    }
  }
  const mt = (name: string, proto: 'tcp' | 'udp'): number => median(tput[name]?.[proto] ?? [])
  const throughput = Object.fromEntries(Object.entries(tput).map(([k, v]) => [k, {
    tcpMbps: r3(median(v.tcp)), udpMbps: r3(median(v.udp)), rawTcpMbps: v.tcp.map(r3), rawUdpMbps: v.udp.map(r3), udpLossPct: v.udpLossPct.map(r3), tcpRetransmits: v.tcpRetransmits
  }]))
  const ratio = (a: string, b: string, proto: 'tcp' | 'udp'): number | null => tput[b] === undefined || tput[a] === undefined ? null : r3(mt(a, proto) / mt(b, proto))
  const both = (a: string, b: string): { tcp: number | null, udp: number | null } => ({ tcp: ratio(a, b, 'tcp'), udp: ratio(a, b, 'udp') })
  const shapeRatios = {
    connectorOverDirect: { ...both('connector', 'direct'), goal: 0.9 },
    connectorOverBareVxlan: { ...both('connector', 'bareVxlan'), goal: 0.95 },
    bareVxlanOverDirect: both('bareVxlan', 'direct'),
    bridgedOverDirect: both('bridged', 'direct'),
    bridgedOverBareVxlan: both('bridged', 'bareVxlan'),
    tcNoBridgeOverDirect: both('tcNoBridge', 'direct'),
    connectorOverBridged: both('connector', 'bridged'),
    connectorOverTcNoBridge: both('connector', 'tcNoBridge')
  }
  const settings = { seconds: SECONDS, rounds: ROUNDS, payloadBytes: PAYLOAD, pings: PINGS, maxSwitches: MAX_SW, parallel: PARALLEL, guestMtu: 1450, underlayMtu: 1500, shapesOnly: SHAPES_ONLY }
  if (SHAPES_ONLY) {
    return { bench: 'virtualwire', prefix: P, machine: machineInfo(load0), settings, throughput, ratios: shapeRatios, notes, wallSeconds: r3((Date.now() - t0) / 1000) }
  }

  // ---- (3) latency through chains of switches -------------------------------------------
  log('latency: chains of 0..' + MAX_SW + ' switches, collapsed and encapsulated')
  const chains: Array<{ mode: 'collapsed' | 'encapsulated', k: number, src: string, dst: string }> = []
  for (const [mi, mode] of (['collapsed', 'encapsulated'] as const).entries()) {
    for (let k = 0; k <= MAX_SW; k++) {
      const hostOf = (node: number): string => mode === 'collapsed' ? 'h1' : (node % 2 === 0 ? 'h1' : 'h2')
      const id = (j: number): number => 100 + mi * 50 + k * 10 + j
      for (let j = 0; j <= k; j++) await lab.connector(id(j), hostOf(j), hostOf(j + 1))
      const net = `198.19.${20 + mi * 8 + k}`
      const tag = `${mode[0]}${k}`
      const src = await lab.guestOnEndpoint(`${tag}s`, hostOf(0), id(0), `${net}.1/24`)
      for (let i = 1; i <= k; i++) await lab.addSwitch(hostOf(i), `${tag}${i}`, [id(i - 1), id(i)])
      const dst = await lab.guestOnEndpoint(`${tag}d`, hostOf(k + 1), id(k), `${net}.2/24`)
      chains.push({ mode, k, src, dst: `${net}.2` })
    }
  }
  const pingTargets: Array<{ key: string, ns: string, target: string }> = [
    { key: 'underlay', ns: h1.ns, target: h2.ip },
    ...chains.map(c => ({ key: `${c.mode}-${c.k}`, ns: c.src, target: c.dst }))
  ]
  for (const p of pingTargets) await pingRtt(p.ns, p.target, 5) // ARP, FDB learning
  const rtt: Record<string, { avgUs: number[], minUs: number[] }> = {}
  for (let round = 0; round < Math.max(5, ROUNDS); round++) {
    for (const p of pingTargets) {
      const r = await pingRtt(p.ns, p.target, PINGS)
      const e = rtt[p.key] ?? (rtt[p.key] = { avgUs: [], minUs: [] })
      e.avgUs.push(r.avgMs * 1000)
      e.minUs.push(r.minMs * 1000)
    }
  }
  const rAvg = (key: string): number => median(rtt[key]?.avgUs ?? [])
  const rMin = (key: string): number => median(rtt[key]?.minUs ?? [])
  const ks = Array.from({ length: MAX_SW + 1 }, (_, k) => k)
  const fitAvg = (mode: string): ReturnType<typeof linearFit> => linearFit(ks, ks.map(k => rAvg(`${mode}-${k}`)))
  const fitMin = (mode: string): ReturnType<typeof linearFit> => linearFit(ks, ks.map(k => rMin(`${mode}-${k}`)))
  const latency = {
    pingsPerSample: PINGS,
    rttUs: Object.fromEntries(Object.entries(rtt).map(([k, v]) => [k, { avg: r3(median(v.avgUs)), min: r3(median(v.minUs)), rawAvg: v.avgUs.map(r3) }])),
    perSwitchUs: {
      collapsedAvg: r3(fitAvg('collapsed').slope),
      encapsulatedAvg: r3(fitAvg('encapsulated').slope),
      collapsedMin: r3(fitMin('collapsed').slope),
      encapsulatedMin: r3(fitMin('encapsulated').slope)
    },
    addedByOneConnectorUs: {
      encapsulatedAvg: r3(rAvg('encapsulated-0') - rAvg('underlay')),
      collapsedAvg: r3(rAvg('collapsed-0') - rAvg('underlay'))
    },
    collapseSavesPerSwitchUs: { avg: r3(fitAvg('encapsulated').slope - fitAvg('collapsed').slope), min: r3(fitMin('encapsulated').slope - fitMin('collapsed').slope) },
    seedCollapseSavesPerSwitchUs: 135
  }

  // ---- (4) parallel connectors -----------------------------------------------------------
  const maxN = Math.max(...PARALLEL)
  log(`parallel: ${maxN} connectors (${maxN * 2} VM-side namespaces)`)
  const pid = (i: number): number => 1000 + i
  await lab.createEndpoints('h1', Array.from({ length: maxN }, (_, i) => [pid(i), h1.ip, h2.ip] as [number, string, string]))
  await lab.createEndpoints('h2', Array.from({ length: maxN }, (_, i) => [pid(i), h2.ip, h1.ip] as [number, string, string]))
  const pairs: Array<{ client: string, server: string, target: string }> = []
  for (let i = 0; i < maxN; i++) {
    const net = `198.19.${64 + i}`
    const client = await lab.guestOnEndpoint(`c${i}a`, 'h1', pid(i), `${net}.1/24`)
    const server = await lab.guestOnEndpoint(`c${i}b`, 'h2', pid(i), `${net}.2/24`)
    lab.spawnIn(server, ['iperf3', '-s', '-p', '5201'])
    pairs.push({ client, server, target: `${net}.2` })
  }
  await sleep(1000)
  for (const p of pairs) await run(['ip', 'netns', 'exec', p.client, 'busybox', 'ping', '-c', '1', '-W', '5', p.target], { allowFailure: true })
  const parallel: Record<string, { aggregateMbps: number, perConnectorMbps: number, clientsRunning: number, startupS: number }> = {}
  for (const n of PARALLEL) {
    log(`parallel: ${n} connector(s)`)
    // Long-running clients (text output, flushed: "connected" once the test runs); the window
    // opens when every client is connected (plus 1 s), the clients are killed after it.
    const spawned = Date.now()
    const clients = pairs.slice(0, n).map(p => lab.spawnIn(p.client, ['iperf3', '-c', p.target, '-p', '5201', '-t', '120', '-M', String(PAYLOAD), '--forceflush', '-f', 'm']))
    const running = (): number => clients.filter(c => c.child.exitCode === null && c.tail().includes('connected')).length
    for (let i = 0; i < 600 && running() < n; i++) await sleep(100)
    const startupS = (Date.now() - spawned) / 1000
    await sleep(1000)
    const r0 = running()
    const b0 = await lab.rxBytes(h2.ns, 'eth0')
    const w0 = Date.now()
    await sleep(SECONDS * 1000)
    const b1 = await lab.rxBytes(h2.ns, 'eth0')
    const w1 = Date.now()
    const r1 = running()
    for (const c of clients) c.child.kill('SIGKILL')
    const agg = (b1 - b0) * 8 / ((w1 - w0) / 1000) / 1e6
    parallel[String(n)] = { aggregateMbps: r3(agg), perConnectorMbps: r3(agg / n), clientsRunning: Math.min(r0, r1), startupS: r3(startupS) }
    await sleep(2000)
  }
  const agg1 = parallel['1']?.aggregateMbps ?? NaN

  return {
    bench: 'virtualwire',
    prefix: P,
    machine: machineInfo(load0),
    settings,
    throughput,
    ratios: {
      ...shapeRatios,
      connectorOverOpenvpn: { tcp: ratio('connector', 'openvpn', 'tcp'), udp: ratio('connector', 'openvpn', 'udp') },
      connectorOverVtun: haveVtun ? { tcp: ratio('connector', 'vtun', 'tcp'), udp: ratio('connector', 'vtun', 'udp'), seed: 1.55 } : null,
      connectorOverExtender: { tcp: ratio('connector', 'extender', 'tcp'), udp: ratio('connector', 'extender', 'udp') },
      parallelOverOne: Object.fromEntries(Object.entries(parallel).filter(([k]) => k !== '1').map(([k, v]) => [k, r3(v.aggregateMbps / agg1)]))
    },
    latency,
    parallel,
    notes,
    wallSeconds: r3((Date.now() - t0) / 1000)
  }
}

/** The lab, and what vtun left outside it: its session lock, its lock directory, a stale server pid file. */
async function cleanup (): Promise<void> {
  await lab.cleanup()
  if (vtunSession !== '') rmSync(`/var/lock/vtund/${vtunSession}`, { force: true })
  // vtund's server pid file (compile-time path) when it names no live process.
  try {
    const pidFile = '/var/run/vtund.server.pid'
    const pid = Number(readFileSync(pidFile, 'utf8').trim())
    if (vtunSession !== '' && !existsSync(`/proc/${pid}`)) rmSync(pidFile, { force: true })
  } catch {}
  if (vtunLockDirMade) rmSync('/var/lock/vtund', { recursive: true, force: true })
}

await runBench({ file: 'bench/virtualwire.ts', main, log, cleanupMessage: 'cleaning up', cleanup })
