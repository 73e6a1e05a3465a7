/**
 * bench/swap.ts — 4 KiB swap page reads and writes through five NBD servers on loopback,
 * measured in the same run with the same client (seed 002 Table 6.1 compares network memory
 * with disk; here the baseline is qemu-nbd serving the same kind of file):
 *   (a) qemu-nbd serving a raw file (baseline),
 *   (b) our NBD server (overdriver/swapd.ts) to the local disk file,
 *   (c) our NBD server with cooperative swap to an in-memory page repository on loopback
 *       (every page pre-written, so reads come from the repository; writes go to disk and,
 *       asynchronously, to the repository),
 *   (e) = (c) with the repository connection over TLS-PSK (TLS 1.3, as hosts run it), against (c)
 *       in clear text: `tlsVsClear` gives the ratios (per-page read latency at depth 1,
 *       throughput at depth 16);
 *   (d) disk swap under a cloud-disk profile: qemu-storage-daemon serving the same kind of file
 *       through QEMU's block throttling at an EBS gp3 baseline (--iops 3000, --mbps 125), the
 *       disk Overdriver's cooperative swap was made to beat (the seed's Table 6.1 disk).
 * Servers run in their own processes. Clients: our TS NBD client (random offsets; latency at
 * queue depth 1, throughput at depth 16) and QEMU's own NBD client (`qemu-img bench`,
 * sequential, depth 1), each used for all five servers. Prints one JSON object with ratios
 * to the qemu-nbd baseline (goal: within 1.5x per 4 KiB page).
 * The servers are measured round-robin (--rounds) so the machine's noise hits them alike;
 * latency is reported as p50 (the robust number on a shared machine), mean and p99.
 * Usage: node --import tsx bench/swap.ts [--mb 64] [--ops 5000] [--rounds 5] [--seconds 1] [--iops 3000] [--mbps 125]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { NbdClient } from '../overdriver/nbd/client.ts'
import { RepositoryClient } from '../overdriver/repository/client.ts'
import { parsePskFile, pskConnector } from '../overdriver/repository/transport.ts'

const root = resolve(import.meta.dirname, '..')
const { values } = parseArgs({ options: { mb: { type: 'string', default: '64' }, ops: { type: 'string', default: '5000' }, seconds: { type: 'string', default: '1' }, rounds: { type: 'string', default: '5' }, iops: { type: 'string', default: '3000' }, mbps: { type: 'string', default: '125' } } })
const IOPS = Number(values.iops)
const MBPS = Number(values.mbps)
const MB = Number(values.mb)
const OPS = Number(values.ops)
const SECONDS = Number(values.seconds)
const ROUNDS = Number(values.rounds)
const PAGES = MB * 256
const prefix = `scb${randomBytes(2).toString('hex')}`
const dir = mkdtempSync(join(tmpdir(), `${prefix}-swapbench-`))
const procs: ChildProcess[] = []

function cleanup (): void {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
}
process.on('exit', cleanup)

/** Starts a process; resolves when `ready(stdout+stderr)` is true. */
async function start (cmd: string, args: string[], ready: (out: string) => boolean): Promise<{ proc: ChildProcess, out: () => string }> {
  const proc = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  procs.push(proc)
  let out = ''
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${cmd} not ready: ${out}`)), 30_000)
    const on = (d: Buffer): void => { out += d.toString(); if (ready(out)) { clearTimeout(timer); res() } }
    proc.stdout?.on('data', on)
    proc.stderr?.on('data', on)
    proc.on('exit', c => { clearTimeout(timer); rej(new Error(`${cmd} exited ${c}: ${out}`)) })
    if (ready('')) { clearTimeout(timer); res() }
  })
  return { proc, out: () => out }
}

async function waitForSocket (path: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>(res => { const s = connect(path); s.on('connect', () => { s.destroy(); res(true) }); s.on('error', () => res(false)) })
    if (ok) return
    await new Promise(r => setTimeout(r, 50))
  }
  throw new Error(`${path} never accepted a connection`)
}

function stats (xs: number[]): { meanUs: number, p50Us: number, p99Us: number } {
  const s = [...xs].sort((a, b) => a - b)
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN
  const r = (x: number): number => Math.round(x * 10) / 10
  return { meanUs: r(s.reduce((a, b) => a + b, 0) / s.length), p50Us: r(at(0.5)), p99Us: r(at(0.99)) }
}

const rnd = (): number => Math.floor(Math.random() * PAGES) * 4096
const page = randomBytes(4096)

interface Samples { read: number[], write: number[], readMBps: number[], writeMBps: number[], seqRead: number[], seqWrite: number[] }

/** One round against one server: latency samples at depth 1, throughput at depth 16, qemu-img bench. */
async function round (c: NbdClient, uri: string, acc: Samples, ops: number): Promise<void> {
  for (const op of ['read', 'write'] as const) {
    for (let i = 0; i < ops; i++) {
      const t0 = process.hrtime.bigint()
      if (op === 'read') await c.read(rnd(), 4096)
      else await c.write(rnd(), page)
      acc[op].push(Number(process.hrtime.bigint() - t0) / 1000)
    }
    const end = Date.now() + SECONDS * 1000
    let n = 0
    const t0 = process.hrtime.bigint()
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (Date.now() < end) { if (op === 'read') await c.read(rnd(), 4096); else await c.write(rnd(), page); n++ }
    }))
    const secs = Number(process.hrtime.bigint() - t0) / 1e9
    acc[op === 'read' ? 'readMBps' : 'writeMBps'].push(n * 4096 / secs / 1e6)
  }
  acc.seqRead.push(qemuImgBench(uri, false, ops))
  acc.seqWrite.push(qemuImgBench(uri, true, ops))
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return Math.round((s[Math.floor(s.length / 2)] ?? NaN) * 10) / 10 }

/** qemu-img bench: QEMU's NBD client, sequential 4 KiB, depth 1; µs per request. */
function qemuImgBench (uri: string, write: boolean, n: number): number {
  const args = ['bench', '-f', 'raw', '-c', String(n), '-d', '1', '-s', '4k', '-S', '4k', ...(write ? ['-w', '--pattern=0x5a'] : []), uri]
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' })
  const m = /Run completed in ([\d.]+) seconds/.exec(r.stdout)
  if (m === null) throw new Error(`qemu-img bench failed: ${r.stderr}`)
  return Number(m[1]) * 1e6 / n
}

const file = (n: string): string => join(dir, n)

interface CoopCounters { coopswap: { pagesInRepositories: number, repositoryReads: number, diskReads: number } }

function repositoryCounts (before: CoopCounters, after: CoopCounters): Record<string, number> {
  return { repositoryPagesAtStart: before.coopswap.pagesInRepositories, readsFromRepository: after.coopswap.repositoryReads - before.coopswap.repositoryReads, readsFromDisk: after.coopswap.diskReads - before.coopswap.diskReads }
}

/**
 * Our server with cooperative swap on, to its own repository process on loopback (clear TCP, or
 * TLS-PSK with a key file both processes read), every page swapped out once so reads come from
 * the repository.
 */
async function coopSwapTarget (n: string, tls: boolean): Promise<{ sock: string, ctl: () => Promise<CoopCounters>, before: CoopCounters }> {
  const psk = tls ? ['--psk-file', file(`${n}.psk`)] : []
  const repo = await start(process.execPath, ['--import', 'tsx', 'overdriver/repository/main.ts', '--port', '0', '--capacity', `${MB * 2}M`, '--admin-token-file', file(`${n}.token`), ...psk], o => o.includes('"listening"'))
  const port = (JSON.parse(repo.out().split('\n')[0] ?? '{}') as { listening: { port: number } }).listening.port
  const admin = await RepositoryClient.connect({ host: '127.0.0.1', port }, tls ? { connector: pskConnector(() => parsePskFile(readFileSync(file(`${n}.psk`), 'utf8'))) } : {})
  const cap = await admin.issue(Buffer.from(readFileSync(file(`${n}.token`), 'utf8').trim(), 'hex'), 'bench')
  admin.close()
  const sock = file(`${n}.sock`)
  await start(process.execPath, ['--import', 'tsx', 'overdriver/swapd.ts', '--vm', `${prefix}${n}`, '--disk', file(`${n}.img`), '--socket', sock, '--control', file(`${n}.ctl`), '--repository', `127.0.0.1:${port}=${cap.toString('hex')}`, ...psk, '--cooperative'], o => o.includes('"ready"'))
  // Swap every page out once so the repository holds the whole device.
  const pre = await NbdClient.connect({ path: sock }, 'swap')
  const fill = Buffer.alloc(4096, 0x33)
  for (let p = 0; p < PAGES; p += 64) await Promise.all(Array.from({ length: 64 }, (_, i) => pre.write((p + i) * 4096, fill)))
  await pre.close()
  const ctl = async (): Promise<CoopCounters> => await new Promise((res, rej) => {
    const s = connect(file(`${n}.ctl`)); let out = ''
    s.on('data', d => { out += d.toString(); if (out.includes('\n')) { s.destroy(); res(JSON.parse(out) as CoopCounters) } })
    s.on('error', rej); s.write('{"op":"stats"}\n')
  })
  for (let i = 0; i < 200 && (await ctl()).coopswap.pagesInRepositories < PAGES; i++) await new Promise(r => setTimeout(r, 50))
  return { sock, ctl, before: await ctl() }
}

async function main (): Promise<void> {
  // Same content in each backing file, so reads return real data.
  for (const f of ['a.img', 'b.img', 'c.img', 'd.img', 'e.img']) {
    const r = spawnSync('qemu-io', ['-f', 'raw', '-c', `write -P 0x33 0 ${MB}M`, file(f)], { encoding: 'utf8' })
    if (r.status !== 0) {
      spawnSync('qemu-img', ['create', '-q', '-f', 'raw', file(f), `${MB}M`])
      spawnSync('qemu-io', ['-f', 'raw', '-c', `write -P 0x33 0 ${MB}M`, file(f)])
    }
  }
  // (a) qemu-nbd baseline.
  const aSock = file('a.sock')
  await start('qemu-nbd', ['-f', 'raw', '-x', 'swap', '-k', aSock, '-t', '-e', '4', '--cache=writeback', file('a.img')], () => true)
  await waitForSocket(aSock)
  // (d) the same kind of file behind a throttle filter at a cloud disk's baseline rate.
  const dSock = file('d.sock')
  await start('qemu-storage-daemon', [
    '--blockdev', `driver=file,node-name=file0,filename=${file('d.img')}`,
    '--blockdev', 'driver=raw,node-name=raw0,file=file0',
    '--object', `throttle-group,id=tg0,x-iops-total=${IOPS},x-bps-total=${MBPS * 1000 * 1000}`,
    '--blockdev', 'driver=throttle,node-name=thr0,throttle-group=tg0,file=raw0',
    '--nbd-server', `addr.type=unix,addr.path=${dSock}`,
    '--export', 'type=nbd,id=exp0,node-name=thr0,name=swap,writable=on'
  ], () => true)
  await waitForSocket(dSock)
  // (b) our server, disk only.
  const bSock = file('b.sock')
  await start(process.execPath, ['--import', 'tsx', 'overdriver/swapd.ts', '--vm', `${prefix}b`, '--disk', file('b.img'), '--socket', bSock, '--control', file('b.ctl')], o => o.includes('"ready"'))
  // (c) our server with cooperative swap to a repository process on loopback; (e) the same over TLS-PSK.
  const c = await coopSwapTarget('c', false)
  const e = await coopSwapTarget('e', true)

  // Interleave the servers round by round, so machine noise hits them alike.
  const targets = [
    { target: 'qemu-nbd', sock: aSock },
    { target: 'supercloud-nbd-disk', sock: bSock },
    { target: 'supercloud-nbd-coopswap', sock: c.sock },
    { target: 'supercloud-nbd-coopswap-tls', sock: e.sock },
    { target: `disk-cloud-profile-${IOPS}iops-${MBPS}MBps`, sock: dSock }
  ].map(x => ({ ...x, uri: `nbd+unix:///swap?socket=${x.sock}`, acc: { read: [], write: [], readMBps: [], writeMBps: [], seqRead: [], seqWrite: [] } as Samples }))
  const clients = await Promise.all(targets.map(x => NbdClient.connect({ path: x.sock }, 'swap')))
  for (const c of clients) for (let i = 0; i < 200; i++) await c.read(rnd(), 4096) // warm up
  const perRound = Math.max(100, Math.floor(OPS / ROUNDS))
  for (let r = 0; r < ROUNDS; r++) {
    for (const [i, x] of targets.entries()) await round(clients[i] as NbdClient, x.uri, x.acc, perRound)
  }
  for (const c of clients) await c.close()
  const after = { c: await c.ctl(), e: await e.ctl() }

  const results = targets.map(x => ({
    target: x.target,
    tsClient: { readLatency: stats(x.acc.read), writeLatency: stats(x.acc.write), readMBps: median(x.acc.readMBps), writeMBps: median(x.acc.writeMBps) },
    qemuImgBench: { seqReadUs: median(x.acc.seqRead), seqWriteUs: median(x.acc.seqWrite) }
  }))
  const base = results[0]
  if (base === undefined) throw new Error('no baseline')
  const ratio = (x: number, b: number): number => Math.round(x / b * 100) / 100
  const out = results.map(r => ({
    ...r,
    ratioToQemuNbd: {
      readLatencyP50: ratio(r.tsClient.readLatency.p50Us, base.tsClient.readLatency.p50Us),
      writeLatencyP50: ratio(r.tsClient.writeLatency.p50Us, base.tsClient.writeLatency.p50Us),
      readLatencyMean: ratio(r.tsClient.readLatency.meanUs, base.tsClient.readLatency.meanUs),
      writeLatencyMean: ratio(r.tsClient.writeLatency.meanUs, base.tsClient.writeLatency.meanUs),
      readThroughput: ratio(r.tsClient.readMBps, base.tsClient.readMBps),
      writeThroughput: ratio(r.tsClient.writeMBps, base.tsClient.writeMBps),
      qemuImgSeqRead: ratio(r.qemuImgBench.seqReadUs, base.qemuImgBench.seqReadUs),
      qemuImgSeqWrite: ratio(r.qemuImgBench.seqWriteUs, base.qemuImgBench.seqWriteUs)
    },
    ...(r.target === 'supercloud-nbd-coopswap' ? repositoryCounts(c.before, after.c) : {}),
    ...(r.target === 'supercloud-nbd-coopswap-tls' ? repositoryCounts(e.before, after.e) : {})
  }))
  // The seed's comparison: cooperative swap against a cloud disk (Table 6.1: 119 vs 451 µs per 4 KiB read).
  const coop = results.find(r => r.target === 'supercloud-nbd-coopswap')
  const cloud = results.find(r => r.target.startsWith('disk-cloud-profile'))
  // Repository TLS on against off, same run, same client, interleaved rounds.
  const tlsOn = results.find(r => r.target === 'supercloud-nbd-coopswap-tls')
  const tlsVsClear = coop !== undefined && tlsOn !== undefined
    ? { readLatencyP50: ratio(tlsOn.tsClient.readLatency.p50Us, coop.tsClient.readLatency.p50Us), readLatencyMean: ratio(tlsOn.tsClient.readLatency.meanUs, coop.tsClient.readLatency.meanUs), readThroughput: ratio(tlsOn.tsClient.readMBps, coop.tsClient.readMBps), writeLatencyP50: ratio(tlsOn.tsClient.writeLatency.p50Us, coop.tsClient.writeLatency.p50Us), writeThroughput: ratio(tlsOn.tsClient.writeMBps, coop.tsClient.writeMBps) }
    : undefined
  const coopVsCloudDisk = coop !== undefined && cloud !== undefined
    ? { readLatencyP50: ratio(coop.tsClient.readLatency.p50Us, cloud.tsClient.readLatency.p50Us), writeLatencyP50: ratio(coop.tsClient.writeLatency.p50Us, cloud.tsClient.writeLatency.p50Us), readThroughput: ratio(coop.tsClient.readMBps, cloud.tsClient.readMBps), writeThroughput: ratio(coop.tsClient.writeMBps, cloud.tsClient.writeMBps) }
    : undefined
  process.stdout.write(JSON.stringify({ bench: 'swap', date: new Date().toISOString(), deviceMB: MB, ops: OPS, rounds: ROUNDS, throughputSeconds: SECONDS, cloudDisk: { iops: IOPS, mbps: MBPS }, loadAverage: loadavg(), results: out, coopSwapVsCloudDisk: coopVsCloudDisk, repositoryTlsVsClear: tlsVsClear }, null, 2) + '\n')
}

main().then(() => { cleanup(); process.exit(0) }, e => { process.stderr.write(`${(e as Error).stack ?? String(e)}\n`); cleanup(); process.exit(1) })
