/**
 * The endpoint manager end to end: three "hosts" (network namespaces on one underlay bridge),
 * one endpoint daemon per host serving the file interface, guests (namespaces behind veths on
 * the endpoint bridges), all driven through `echo`/`cat` in bash like an operator over SSH.
 *
 * Each host gets a holder process (`ip netns exec <ns> sleep`) that plays the role of the
 * host's sshd: it owns the host's mount namespace. The daemon and every shell enter it with
 * `nsenter -t <holder> -m -n`, so they all see the FUSE mount, as sessions of one sshd would.
 */
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rm } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { registerPrefix, sweepPrefix } from '../../../helpers/sweep-lib.ts'
import { attachToEndpoint, detachFromEndpoint } from '../../../../virtualwire/endpoint/attach.ts'
import { FAST_PATH_PREF } from '../../../../virtualwire/endpoint/fastpath.ts'

const here = dirname(fileURLToPath(import.meta.url))
const repo = resolve(here, '../../../..')
const l2frame = join(here, 'l2frame.py')

const P = `scv${randomBytes(2).toString('hex')}`
const dir = `/tmp/${P}-vw`
registerPrefix(P)

interface Res { code: number | null, stdout: string, stderr: string }

async function run (argv: string[], opts: { allowFailure?: boolean } = {}): Promise<Res> {
  const [cmd, ...args] = argv
  return await new Promise<Res>((resolve, reject) => {
    const c = spawn(cmd ?? '', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    c.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    c.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    c.on('error', reject)
    c.on('close', code => {
      if (code !== 0 && opts.allowFailure !== true) reject(new Error(`${argv.join(' ')} exited ${code}: ${stderr || stdout}`))
      else resolve({ code, stdout, stderr })
    })
  })
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

// Underlay 198.18.37.0/24 (host N = .N); guest side 198.19.37.0/24 (guest vN = .N).
const UNDERLAY = (n: number): string => `198.18.37.${n}`
const GUEST = (n: number): string => `198.19.37.${n}`

interface Host {
  n: number
  ns: string
  holder: ChildProcess
  root: string
  state: string
  log: string
  daemon?: ChildProcess
}

const hosts = new Map<number, Host>()
const host = (n: number): Host => {
  const h = hosts.get(n)
  if (h === undefined) throw new Error(`no host ${n}`)
  return h
}

/** bash in the host's mount + network namespace, cwd = its interface root. */
async function sh (n: number, script: string): Promise<Res> {
  const h = host(n)
  return await run(['nsenter', '-t', String(h.holder.pid), '-m', '-n', 'bash', '-c', `cd ${h.root} || exit 99\n${script}`], { allowFailure: true })
}

async function shOk (n: number, script: string): Promise<string> {
  const r = await sh(n, script)
  if (r.code !== 0) throw new Error(`host ${n}: \`${script}\` exited ${r.code}: ${r.stderr}${r.stdout}`)
  return r.stdout
}

async function startDaemon (n: number): Promise<void> {
  const h = host(n)
  const c = spawn('nsenter', ['-t', String(h.holder.pid), '-m', '-n', 'sh', '-c',
    `cd ${repo} && exec node --import tsx virtualwire/endpoint/daemon.ts --root ${h.root} --state ${h.state} --prefix ${P} >>${h.log} 2>&1`],
  { stdio: 'ignore' })
  h.daemon = c
  for (let i = 0; i < 200; i++) {
    const r = await run(['nsenter', '-t', String(h.holder.pid), '-m', 'test', '-e', join(h.root, 'last_error')], { allowFailure: true })
    if (r.code === 0) return
    if (c.exitCode !== null) break
    await sleep(100)
  }
  throw new Error(`endpoint daemon of host ${n} did not mount: ${await readFile(h.log, 'utf8').catch(() => '')}`)
}

async function stopDaemon (n: number, signal: NodeJS.Signals): Promise<void> {
  const c = host(n).daemon
  if (c === undefined || c.exitCode !== null || c.signalCode !== null) return
  const exited = new Promise<void>(resolve => c.once('exit', () => { resolve() }))
  c.kill(signal)
  await exited
}

/** A guest: namespace `<P>-<name>` whose eth0 is a veth to host `n`, host side `<P><name>`. */
async function addGuest (n: number, name: string, cidr: string): Promise<string> {
  const ns = `${P}-${name}`
  const hostSide = `${P}${name}`
  await run(['ip', 'netns', 'add', ns])
  await run(['ip', '-n', host(n).ns, 'link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
  await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
  await run(['ip', '-n', ns, 'addr', 'add', cidr, 'dev', 'eth0'])
  await run(['ip', '-n', ns, 'link', 'set', 'eth0', 'mtu', '1450', 'up'])
  await run(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.icmp_echo_ignore_broadcasts=0'])
  return hostSide
}

async function ping (guest: string, target: string, extra: string[] = []): Promise<Res> {
  return await run(['ip', 'netns', 'exec', `${P}-${guest}`, 'busybox', 'ping', '-c', '3', '-W', '3', ...extra, target], { allowFailure: true })
}

async function linkKind (n: number, name: string): Promise<string | undefined> {
  const r = await run(['ip', '-n', host(n).ns, '-d', '-j', 'link', 'show', 'dev', name], { allowFailure: true })
  if (r.code !== 0) return undefined
  const l = (JSON.parse(r.stdout) as Array<{ linkinfo?: { info_kind?: string }, master?: string }>)[0]
  return `${l?.linkinfo?.info_kind ?? ''}${l?.master !== undefined ? ` master=${l.master}` : ''}`
}

/** Target of the fast-path filter on `dev`'s ingress on host `n` ('*': its target is gone), with its packet count. */
async function redirectOf (n: number, dev: string): Promise<{ to: string, packets: number } | undefined> {
  const r = await run(['tc', '-n', host(n).ns, '-s', '-j', 'filter', 'show', 'dev', dev, 'ingress'], { allowFailure: true })
  if (r.code !== 0 || r.stdout.trim() === '') return undefined
  type F = { pref?: number, options?: { actions?: Array<{ kind?: string, to_dev?: string, stats?: { packets?: number } }> } }
  for (const f of JSON.parse(r.stdout) as F[]) {
    const a = f.pref === FAST_PATH_PREF ? f.options?.actions?.find(x => x.kind === 'mirred') : undefined
    if (a?.to_dev !== undefined) return { to: a.to_dev, packets: a.stats?.packets ?? 0 }
  }
  return undefined
}

/** Polls until `redirectOf(n, dev)` has target `to` (undefined: no filter); returns whether it did within 5 s. */
async function waitRedirect (n: number, dev: string, to: string | undefined): Promise<boolean> {
  for (let i = 0; i < 50; i++) {
    if ((await redirectOf(n, dev))?.to === to) return true
    await sleep(100)
  }
  return false
}

/** MAC addresses the bridge learned (dynamic FDB entries) on its ports. */
async function learned (n: number, bridge: string): Promise<string[]> {
  const r = await run(['bridge', '-n', host(n).ns, '-j', 'fdb', 'show', 'br', bridge])
  return (JSON.parse(r.stdout) as Array<{ mac: string, ifname?: string, state?: string, flags?: string[] }>)
    .filter(e => e.state !== 'permanent' && e.mac !== '00:00:00:00:00:00' && e.ifname !== bridge).map(e => `${e.mac} ${e.ifname ?? ''}`)
}

t.teardown(async () => {
  for (const n of hosts.keys()) await stopDaemon(n, 'SIGKILL').catch(() => {})
  for (const h of hosts.values()) h.holder.kill('SIGKILL') // its mount namespace, and the FUSE mount in it, go with it
  sweepPrefix(P)
  await rm(dir, { recursive: true, force: true })
})

t.before(async () => {
  await mkdir(dir, { recursive: true })
  const u = `${P}-u`
  await run(['ip', 'netns', 'add', u])
  await run(['ip', '-n', u, 'link', 'add', 'u0', 'type', 'bridge'])
  await run(['ip', '-n', u, 'link', 'set', 'u0', 'up'])
  for (const n of [1, 2, 3]) {
    const ns = `${P}-h${n}`
    await run(['ip', 'netns', 'add', ns])
    await run(['ip', '-n', u, 'link', 'add', `u${n}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
    await run(['ip', '-n', u, 'link', 'set', `u${n}`, 'master', 'u0', 'up'])
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
    await run(['ip', '-n', ns, 'addr', 'add', `${UNDERLAY(n)}/24`, 'dev', 'eth0'])
    await run(['ip', '-n', ns, 'link', 'set', 'eth0', 'up'])
    const holder = spawn('ip', ['netns', 'exec', ns, 'sleep', '100000'], { stdio: 'ignore' })
    const hdir = join(dir, `h${n}`)
    await mkdir(join(hdir, 'vw'), { recursive: true })
    hosts.set(n, { n, ns, holder, root: join(hdir, 'vw'), state: join(hdir, 'endpoints.json'), log: join(hdir, 'daemon.log') })
  }
  await sleep(300)
  for (const n of [1, 2, 3]) await startDaemon(n)
})

t.test('an empty interface lists its control files', async t => {
  t.same((await shOk(1, 'ls')).split('\n').filter(Boolean), ['create', 'destroy', 'last_error'])
  t.equal(await shOk(1, 'cat last_error'), '')
})

t.test('connector 5 between h1 and h2 carries unicast, broadcast, multicast and VLAN-tagged frames', async t => {
  await shOk(1, `echo "5 ${UNDERLAY(1)}:4789 ${UNDERLAY(2)}:4789" > create`)
  await shOk(2, `echo "5 ${UNDERLAY(2)} ${UNDERLAY(1)}" > create`)
  t.equal(await shOk(1, 'cat 5'), `5 ${UNDERLAY(1)}:4789 ${UNDERLAY(2)}:4789 encap bridge=${P}b5 dev=${P}x5\n`)
  t.equal(await shOk(2, 'cat 5'), `5 ${UNDERLAY(2)}:4789 ${UNDERLAY(1)}:4789 encap bridge=${P}b5 dev=${P}x5\n`)
  t.same((await shOk(1, 'ls')).split('\n').filter(Boolean), ['5', 'create', 'destroy', 'last_error'])
  t.equal(await linkKind(1, `${P}x5`), `vxlan master=${P}b5`)

  const saved = JSON.parse(await readFile(host(1).state, 'utf8')) as { endpoints: unknown[] }
  t.same(saved.endpoints, [{ id: 5, local: { ip: UNDERLAY(1), port: 4789 }, remote: { ip: UNDERLAY(2), port: 4789 } }], 'state file written')

  await attachToEndpoint(P, 5, await addGuest(1, 'v1', `${GUEST(1)}/24`), { netns: host(1).ns })
  await attachToEndpoint(P, 5, await addGuest(2, 'v2', `${GUEST(2)}/24`), { netns: host(2).ns })

  const uni = await ping('v1', GUEST(2))
  t.equal(uni.code, 0, `v1 pings v2 through the connector: ${uni.stdout}${uni.stderr}`)
  const neigh = await run(['ip', '-n', `${P}-v1`, 'neigh', 'show', GUEST(2)])
  t.match(neigh.stdout, /lladdr/, 'ARP (broadcast) resolved v2')
  const bcast = await ping('v1', '198.19.37.255')
  t.match(bcast.stdout, new RegExp(`from ${GUEST(2).replace(/\./g, '\\.')}`), `broadcast ping answered by v2: ${bcast.stdout}${bcast.stderr}`)
  const mcast = await ping('v1', '224.0.0.1', ['-I', 'eth0'])
  t.match(mcast.stdout, new RegExp(`from ${GUEST(2).replace(/\./g, '\\.')}`), `all-hosts multicast ping answered by v2: ${mcast.stdout}${mcast.stderr}`)

  // This kernel has no 802.1Q devices (no 8021q), so tagged frames are sent and captured raw.
  for (const [dst, what] of [['ff:ff:ff:ff:ff:ff', 'broadcast'], ['01:00:5e:00:00:fb', 'multicast']] as const) {
    const marker = `${P}-${what}`
    const rx = spawn('ip', ['netns', 'exec', `${P}-v2`, 'python3', l2frame, 'recv', 'eth0', marker, '3', '10'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    rx.stdout.on('data', (d: Buffer) => { out += d.toString() })
    const done = new Promise<void>(resolve => rx.once('close', () => { resolve() }))
    while (!out.includes('ready') && rx.exitCode === null) await sleep(50)
    await run(['ip', 'netns', 'exec', `${P}-v1`, 'python3', l2frame, 'send', 'eth0', dst, '10', marker, '3'])
    await done
    const frames = out.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as { dst: string, vlan: { tpid: number, vid: number, pcp: number } | null, ethertype: number })
    t.ok(frames.length >= 1, `${what} VLAN-tagged frames arrived at v2 (${frames.length})`)
    for (const f of frames) {
      t.same(f, { ...f, dst, vlan: { tpid: 0x8100, vid: 10, pcp: 5 }, ethertype: 0x88b5 }, `${what} frame arrived with its 802.1Q tag (VID 10, PCP 5) unchanged`)
    }
  }
})

t.test('a point-to-point connector carries frames NIC <-> VXLAN with no bridge in the path', async t => {
  // The guests were attached after the endpoints existed: the managers saw it (link events).
  for (const n of [1, 2]) {
    t.ok(await waitRedirect(n, `${P}v${n}`, `${P}x5`), `h${n}: ${P}v${n} ingress redirects to ${P}x5`)
    t.ok(await waitRedirect(n, `${P}x5`, `${P}v${n}`), `h${n}: ${P}x5 ingress redirects to ${P}v${n}`)
  }
  t.equal(await linkKind(1, `${P}v1`), `veth master=${P}b5`, 'the NIC stays attached to the endpoint bridge (attach point and fallback)')
  // Forget what the bridge learned before the fast path was installed.
  await run(['ip', '-n', host(1).ns, 'link', 'set', 'dev', `${P}b5`, 'type', 'bridge', 'fdb_flush'])
  t.same(await learned(1, `${P}b5`), [], 'flushed')
  const before = (await redirectOf(1, `${P}v1`))?.packets ?? 0
  const r = await ping('v1', GUEST(2))
  t.equal(r.code, 0, `v1 pings v2: ${r.stdout}${r.stderr}`)
  t.ok(((await redirectOf(1, `${P}v1`))?.packets ?? 0) >= before + 3, 'the pings went through the redirect')
  t.same(await learned(1, `${P}b5`), [], 'the bridge saw no frame: it learned no MAC address')
  const server = spawn('ip', ['netns', 'exec', `${P}-v2`, 'iperf3', '-s', '-1', '-p', '5201'], { stdio: 'ignore' })
  await sleep(500)
  const ip3 = await run(['ip', 'netns', 'exec', `${P}-v1`, 'iperf3', '-c', GUEST(2), '-p', '5201', '-t', '2', '-J'], { allowFailure: true })
  server.kill()
  const bps = (JSON.parse(ip3.stdout || '{}') as { end?: { sum_received?: { bits_per_second?: number } } }).end?.sum_received?.bits_per_second ?? 0
  t.ok(bps > 10e6, `iperf3 TCP across the fast path: ${Math.round(bps / 1e6)} Mbit/s`)
  t.equal(await shOk(1, 'cat 5'), `5 ${UNDERLAY(1)}:4789 ${UNDERLAY(2)}:4789 encap bridge=${P}b5 dev=${P}x5\n`, 'cat shows the same line')
  t.match(await readFile(host(1).log, 'utf8'), new RegExp(`endpoint 5: fast path ${P}v1 <-> ${P}x5`))

  // A second NIC on the bridge needs L2 learning: bridged; taking it off restores the fast path.
  const extra = await addGuest(1, 'w1', '198.19.37.11/24')
  await attachToEndpoint(P, 5, extra, { netns: host(1).ns })
  t.ok(await waitRedirect(1, `${P}v1`, undefined), 'second NIC attached: redirect removed from v1')
  t.ok(await waitRedirect(1, `${P}x5`, undefined), '... and from the VXLAN device')
  t.equal((await ping('w1', GUEST(2))).code, 0, 'w1 reaches v2 through the bridge')
  t.equal((await ping('v1', GUEST(2))).code, 0, 'v1 too')
  t.not((await learned(1, `${P}b5`)).length, 0, 'the bridge learns again')
  await detachFromEndpoint(extra, { netns: host(1).ns })
  t.ok(await waitRedirect(1, `${P}x5`, `${P}v1`), 'second NIC detached: fast path back')
  t.equal((await ping('v1', GUEST(2))).code, 0)
})

t.test('a Domain-0 switch port keeps the bridge', async t => {
  await shOk(1, `echo "17 ${UNDERLAY(1)} ${UNDERLAY(2)}" > create`)
  await shOk(2, `echo "17 ${UNDERLAY(2)} ${UNDERLAY(1)}" > create`)
  // As the host agent builds a switch: bridge <P>s…, veth <P>p<hex id>a in the endpoint bridge, its peer in the switch.
  const hns = host(1).ns
  await run(['ip', '-n', hns, 'link', 'add', `${P}s1`, 'mtu', '1450', 'type', 'bridge'])
  await run(['ip', '-n', hns, 'link', 'set', `${P}s1`, 'up'])
  await run(['ip', '-n', hns, 'link', 'add', `${P}p11a`, 'mtu', '1450', 'type', 'veth', 'peer', 'name', `${P}q11a`, 'mtu', '1450'])
  await attachToEndpoint(P, 17, `${P}p11a`, { netns: hns })
  await run(['ip', '-n', hns, 'link', 'set', `${P}q11a`, 'master', `${P}s1`, 'up'])
  const sg = await addGuest(1, 'g1', '198.19.41.1/24')
  await run(['ip', '-n', hns, 'link', 'set', sg, 'master', `${P}s1`, 'mtu', '1450', 'up'])
  await attachToEndpoint(P, 17, await addGuest(2, 'g2', '198.19.41.2/24'), { netns: host(2).ns })
  t.ok(await waitRedirect(2, `${P}x11`, `${P}g2`), 'h2 (a VM NIC): fast path')
  await sleep(500)
  t.equal(await redirectOf(1, `${P}p11a`), undefined, 'h1 (switch port): no redirect on the port')
  t.equal(await redirectOf(1, `${P}x11`), undefined, 'h1: none on the VXLAN device')
  t.equal(await linkKind(1, `${P}p11a`), `veth master=${P}b11`)
  const r = await ping('g1', '198.19.41.2')
  t.equal(r.code, 0, `switch guest reaches the VM across the connector: ${r.stdout}${r.stderr}`)
  t.not((await learned(1, `${P}b11`)).length, 0, 'frames crossed the endpoint bridge (it learned)')
  t.match(await readFile(host(1).log, 'utf8'), /endpoint 17: bridged \(Domain-0 switch port/)
  await shOk(1, 'echo 17 > destroy')
  await shOk(2, 'echo 17 > destroy')
  t.ok(await waitRedirect(2, `${P}g2`, undefined), 'destroy removed the NIC\'s redirect')
})

t.test('re-pointing h1 to a sister on h3 moves the traffic there', async t => {
  await shOk(3, `echo "5 ${UNDERLAY(3)} ${UNDERLAY(1)}" > create`)
  await attachToEndpoint(P, 5, await addGuest(3, 'v3', `${GUEST(3)}/24`), { netns: host(3).ns })
  await shOk(1, `echo "${UNDERLAY(3)}:4789" > 5`)
  t.equal(await shOk(1, 'cat 5'), `5 ${UNDERLAY(1)}:4789 ${UNDERLAY(3)}:4789 encap bridge=${P}b5 dev=${P}x5\n`)
  const r = await ping('v1', GUEST(3))
  t.equal(r.code, 0, `v1 reaches v3 behind h3: ${r.stdout}${r.stderr}`)
  t.equal((await redirectOf(1, `${P}v1`))?.to, `${P}x5`, 're-pointing keeps the fast path')
  t.ok(await waitRedirect(3, `${P}x5`, `${P}v3`), 'h3: fast path for the new sister')
  const old = await run(['ip', 'netns', 'exec', `${P}-v1`, 'busybox', 'ping', '-c', '1', '-W', '1', GUEST(2)], { allowFailure: true })
  t.not(old.code, 0, 'v2 (behind the old sister) is no longer reachable')
})

t.test('a collapsed connector joins two local guests on the bridge only, and expands when re-pointed away', async t => {
  await shOk(1, `echo "9 ${UNDERLAY(1)} ${UNDERLAY(1)}" > create`)
  t.equal(await shOk(1, 'cat 9'), `9 ${UNDERLAY(1)}:4789 ${UNDERLAY(1)}:4789 collapsed bridge=${P}b9\n`)
  await attachToEndpoint(P, 9, await addGuest(1, 'c1', '198.19.39.1/24'), { netns: host(1).ns })
  await attachToEndpoint(P, 9, await addGuest(1, 'c2', '198.19.39.2/24'), { netns: host(1).ns })
  const r = await ping('c1', '198.19.39.2')
  t.equal(r.code, 0, `c1 pings c2 over the collapsed connector: ${r.stdout}${r.stderr}`)
  t.equal(await linkKind(1, `${P}x9`), undefined, 'no VXLAN device for a collapsed connector')
  t.equal(await linkKind(1, `${P}b9`), 'bridge')

  await shOk(1, `echo "${UNDERLAY(2)}" > 9`)
  t.equal(await shOk(1, 'cat 9'), `9 ${UNDERLAY(1)}:4789 ${UNDERLAY(2)}:4789 encap bridge=${P}b9 dev=${P}x9\n`)
  t.equal(await linkKind(1, `${P}x9`), `vxlan master=${P}b9`, 'VXLAN device created on expand')
  const fdb = await run(['bridge', '-n', host(1).ns, 'fdb', 'show', 'dev', `${P}x9`])
  t.match(fdb.stdout, new RegExp(`00:00:00:00:00:00 dst ${UNDERLAY(2).replace(/\./g, '\\.')}`))

  await shOk(1, `echo "${UNDERLAY(1)}" > 9`)
  t.equal(await linkKind(1, `${P}x9`), undefined, 'collapsed again: VXLAN device removed')
  t.equal((await ping('c1', '198.19.39.2')).code, 0, 'still joined')
})

t.test('bad writes fail in the shell with their errno; last_error says why', async t => {
  const cases: Array<[string, RegExp, RegExp]> = [
    [`echo "5 ${UNDERLAY(1)} ${UNDERLAY(2)}" > create`, /File exists/, /^EEXIST create .*endpoint 5 already exists/],
    [`echo "0 ${UNDERLAY(1)} ${UNDERLAY(2)}" > create`, /Numerical result out of range/, /^ERANGE .*outside 1\.\.16777215/],
    [`echo "16777216 ${UNDERLAY(1)} ${UNDERLAY(2)}" > create`, /Numerical result out of range/, /^ERANGE/],
    [`echo "7 ${UNDERLAY(1)}:4789 ${UNDERLAY(2)}:4790" > create`, /Invalid argument/, /port 4789 and AdrB port 4790 differ/],
    ['echo "7 198.18.37.1 198.18.37.300" > create', /Invalid argument/, /not a dotted-quad IPv4 address/],
    ['echo "banana" > create', /Invalid argument/, /create expects/],
    ['echo "77" > destroy', /No such file or directory/, /^ENOENT destroy "77": endpoint 77 does not exist/],
    [`echo "${UNDERLAY(2)}" > 77`, /No such file or directory/, /endpoint 77 does not exist/],
    [`echo "${UNDERLAY(2)}:4790" > 5`, /Invalid argument/, /differ/],
    ['echo "x" > last_error', /Permission denied/, /read-only/]
  ]
  for (const [cmd, errno, reason] of cases) {
    const r = await sh(1, cmd)
    t.equal(r.code, 1, `\`${cmd}\` exits 1`)
    t.match(r.stderr, errno, `\`${cmd}\`: ${r.stderr.trim()}`)
    t.match(await shOk(1, 'cat last_error'), reason, `last_error after \`${cmd}\``)
  }
  t.equal(await shOk(1, 'cat 5'), `5 ${UNDERLAY(1)}:4789 ${UNDERLAY(3)}:4789 encap bridge=${P}b5 dev=${P}x5\n`, 'refused writes changed nothing')
  t.match(await readFile(host(1).log, 'utf8'), /refused: ENOENT destroy "77"/, 'refusals are logged')
})

t.test('after SIGKILL the manager restarts from its state file and repairs the kernel', async t => {
  await stopDaemon(1, 'SIGKILL')
  const dead = await sh(1, 'cat 5')
  t.not(dead.code, 0, `the dead daemon's mount is stale: ${dead.stderr.trim()}`)
  // While it is down: its VXLAN device disappears and a stale endpoint device appears.
  await run(['ip', '-n', host(1).ns, 'link', 'del', `${P}x5`])
  await run(['ip', '-n', host(1).ns, 'link', 'add', `${P}b1f`, 'type', 'bridge'])
  await startDaemon(1)
  t.equal(await shOk(1, 'cat 5'), `5 ${UNDERLAY(1)}:4789 ${UNDERLAY(3)}:4789 encap bridge=${P}b5 dev=${P}x5\n`)
  t.equal(await shOk(1, 'cat 9'), `9 ${UNDERLAY(1)}:4789 ${UNDERLAY(1)}:4789 collapsed bridge=${P}b9\n`)
  t.equal(await linkKind(1, `${P}x5`), `vxlan master=${P}b5`, 'deleted VXLAN device recreated')
  t.equal(await linkKind(1, `${P}b1f`), undefined, 'stale endpoint bridge removed')
  t.equal((await redirectOf(1, `${P}v1`))?.to, `${P}x5`, 'fast path reinstalled towards the new VXLAN device at start')
  t.equal((await redirectOf(1, `${P}x5`))?.to, `${P}v1`)
  const r = await ping('v1', GUEST(3))
  t.equal(r.code, 0, `traffic flows again: ${r.stdout}${r.stderr}`)
  t.match(await readFile(host(1).log, 'utf8'), /reconcile: add vxlan/)
})

t.test('SIGTERM unmounts but leaves the connector forwarding', async t => {
  await stopDaemon(2, 'SIGTERM')
  t.equal((await sh(2, 'test -e last_error')).code, 1, 'interface gone')
  t.equal(await linkKind(2, `${P}x5`), `vxlan master=${P}b5`, 'devices stay')
  await shOk(1, `echo "${UNDERLAY(2)}" > 5`)
  const r = await ping('v1', GUEST(2))
  t.equal(r.code, 0, `h1 → h2 still forwards with h2's manager stopped: ${r.stdout}${r.stderr}`)
  await startDaemon(2)
  t.equal(await shOk(2, 'cat 5'), `5 ${UNDERLAY(2)}:4789 ${UNDERLAY(1)}:4789 encap bridge=${P}b5 dev=${P}x5\n`)
})

t.test('destroy removes the endpoint and its devices', async t => {
  t.equal((await redirectOf(3, `${P}v3`))?.to, `${P}x5`)
  await shOk(3, 'echo 5 > destroy')
  t.equal(await redirectOf(3, `${P}v3`), undefined, 'the NIC\'s redirect went with the endpoint')
  t.same((await shOk(3, 'ls')).split('\n').filter(Boolean), ['create', 'destroy', 'last_error'])
  t.equal(await linkKind(3, `${P}x5`), undefined)
  t.equal(await linkKind(3, `${P}b5`), undefined)
  t.equal((await sh(3, 'cat 5')).code, 1)
  const saved = JSON.parse(await readFile(host(3).state, 'utf8')) as { endpoints: unknown[] }
  t.same(saved.endpoints, [], 'state file updated')
})
