/**
 * `supercloud migrate` through the real CLI: every offered mode moves a guest with a local
 * disk between hosts (within a site and across the WAN) and the guest's memory and disk
 * contents are identical afterwards (checksums computed inside the guest); bad requests are
 * refused; a failed or cancelled migration leaves the VM running where it was.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { sandbox } from '../helpers/cli.ts'
import { leftovers } from '../helpers/sweep-lib.ts'
import { tcgSpec, tinyVm } from '../helpers/specs.ts'
import type { StatusReport } from '../../blanket-manager/controller/index.ts'
import { waitInGuest } from '../helpers/guest-shell.ts'

const spec = tcgSpec({
  name: 'mig',
  sites: { a: '198.18.50.0/24', b: '198.18.51.0/24' },
  wan: '{ bandwidth: 200mbit, delay: 5ms }',
  hosts: { h1: { site: 'a', memory: '768M' }, h2: { site: 'a', memory: '768M' }, h3: { site: 'b', memory: '256M' } },
  vms: [
    // No NIC: db1 also crosses to site b (h3); a NIC on site a's network would keep it in site a (SC_MIGRATION_NETWORK).
    tinyVm('db1', { host: 'h1', memory: '160M', disk: '32M' }) + '\n    nics: []',
    tinyVm('big', { host: 'h2', memory: '512M', address: '198.18.50.102/24' })
  ]
})
const sb = sandbox(t, spec, 'mig')

async function inGuest (vm: string, cmd: string): Promise<string> {
  const r = await sb.run(['console', vm, '--run', cmd, '--timeout', '90'])
  if (r.code !== 0) throw new Error(`${vm}: ${cmd} -> ${r.code}: ${r.stdout}${r.stderr}`)
  return r.stdout
}

async function status (): Promise<StatusReport> {
  return JSON.parse((await sb.run(['status', '--json'])).stdout) as StatusReport
}

let memSum = ''
let diskSum = ''

/**
 * In the guest: memload verifies every page and prints its checksum again (SIGUSR1: two lines,
 * waited for rather than a fixed few seconds, which a loaded machine can outlast), then the disk's md5.
 */
const VERIFY = 'n=$(wc -l < /tmp/ml.out); kill -USR1 $(pidof memload); i=0; while [ $(wc -l < /tmp/ml.out) -lt $((n + 2)) ] && [ $i -lt 120 ]; do sleep 0.5; i=$((i+1)); done; tail -n 2 /tmp/ml.out; md5sum /dev/vda'

t.test('up, and fill guest memory and disk with known contents', async t => {
  const r = await sb.run(['up'])
  t.equal(r.code, 0, r.stderr)
  // Waits for memload's checksum line (a fixed 4 s was too short for a loaded machine to fill 48 MiB).
  const out = await inGuest('db1', `memload --mb 48 --hold > /tmp/ml.out 2>&1 & ${waitInGuest('/tmp/ml.out', 'c[h]ecksum', 60)}; cat /tmp/ml.out; dd if=/dev/urandom of=/dev/vda bs=1M count=16 2>/dev/null; sync; md5sum /dev/vda`)
  memSum = /checksum ([0-9a-f]{16})/.exec(out)?.[1] ?? ''
  diskSum = /^([0-9a-f]{32})\s+\/dev\/vda/m.exec(out)?.[1] ?? ''
  t.match(memSum, /^[0-9a-f]{16}$/)
  t.match(diskSum, /^[0-9a-f]{32}$/)
})

const moves: Array<[string, string]> = [['precopy', 'h2'], ['postcopy', 'h1'], ['hybrid', 'h2'], ['auto', 'h3'], ['auto', 'h1']]
for (const [mode, to] of moves) {
  t.test(`${mode} migration to ${to} keeps memory and disk intact`, async t => {
    const r = await sb.run(['migrate', 'db1', '--to', to, '--mode', mode, '--json'])
    t.equal(r.code, 0, r.stderr)
    const summary = JSON.parse(r.stdout) as { to: string, mode: string, downtimeMs: number, totalMs: number, sentBytes: number }
    t.equal(summary.to, to)
    t.equal(summary.mode, mode)
    t.ok(summary.sentBytes > 16 * 1048576, 'memory and disk were sent')
    const s = await status()
    t.equal(s.vms.find(v => v.name === 'db1')?.host, to)
    t.equal(s.vms.find(v => v.name === 'db1')?.state, 'running')
    const out = await inGuest('db1', VERIFY)
    t.match(out, /verify ok/, 'every page verified inside the guest')
    t.equal(/checksum ([0-9a-f]{16})/.exec(out)?.[1], memSum, 'memory checksum unchanged')
    t.equal(/^([0-9a-f]{32})\s+\/dev\/vda/m.exec(out)?.[1], diskSum, 'disk checksum unchanged')
  })
}

t.test('up after migrations keeps the VM where it was moved', async t => {
  const r = await sb.run(['up'])
  t.match(r.stderr, /plan: nothing to change/)
})

t.test('bad requests are refused and change nothing', async t => {
  const cases: Array<[string[], RegExp, number]> = [
    [['migrate', 'nope', '--to', 'h2'], /error\[SC_NOT_FOUND\]: no vm named 'nope'/, 2],
    [['migrate', 'db1', '--to', 'h9'], /error\[SC_NOT_FOUND\]: no host named 'h9'/, 2],
    [['migrate', 'db1', '--to', 'h1'], /error\[SC_MIGRATE_SAME_HOST\]/, 2],
    [['migrate', 'big', '--to', 'h3'], /error\[SC_CAPACITY\]: big needs 512M but host h3 has \d+M free of 256M/, 2],
    [['migrate', 'db1', '--to', 'h2', '--mode', 'xbzrle'], /argument 'xbzrle' is invalid/, 1]
  ]
  for (const [args, re, code] of cases) {
    const r = await sb.run(args)
    t.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`)
    t.match(r.stderr, re)
  }
  t.equal((await status()).vms.find(v => v.name === 'db1')?.host, 'h1')
})

t.test('two migrations of one VM at once: the second is refused', async t => {
  // A slow first migration: bandwidth capped so it is still running when the second starts.
  const first = sb.start(['migrate', 'big', '--to', 'h1', '--bandwidth', '40M', '--mode', 'precopy'])
  let err1 = ''
  first.stderr?.on('data', (d: Buffer) => { err1 += d.toString() })
  for (let i = 0; i < 300 && !/preparing|memory/.test(err1); i++) await new Promise(resolve => setTimeout(resolve, 100))
  const second = await sb.run(['migrate', 'big', '--to', 'h1'])
  t.not(second.code, 0)
  // Refused by the VM's move lock before any host is asked, naming the first one's process.
  t.match(second.stderr, new RegExp(`error\\[SC_VM_MOVING\\]: vm big is being moved by running process ${first.pid ?? 'none'}\\b`))
  // Cancel the first one from "another terminal": the VM stays on its source.
  const cancel = await sb.run(['migrate', 'big', '--cancel'])
  t.equal(cancel.code, 0, cancel.stderr)
  const code = await new Promise<number>(resolve => first.on('exit', c => resolve(c ?? -1)))
  t.equal(code, 130, `cancelled migration exits 130: ${err1}`)
  const s = await status()
  t.equal(s.vms.find(v => v.name === 'big')?.host, 'h2')
  t.equal(s.vms.find(v => v.name === 'big')?.state, 'running')
})

t.test('destination killed mid-transfer: the VM keeps running on the source with its data', async t => {
  const prefix = sb.prefix('mig') ?? ''
  const h2 = leftovers(prefix).namespaces.find(n => n.endsWith('-h2')) ?? ''
  const child = sb.start(['migrate', 'db1', '--to', 'h2', '--bandwidth', '40M', '--mode', 'precopy'])
  let err = ''
  child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  for (let i = 0; i < 300 && !/ memory /.test(err); i++) await new Promise(resolve => setTimeout(resolve, 100))
  // Kill the incoming QEMU on the destination host.
  const pids = execFileSync('ip', ['netns', 'pids', h2], { encoding: 'utf8' }).split('\n').filter(Boolean)
  for (const pid of pids) {
    const cmdline = execFileSync('cat', [`/proc/${pid}/cmdline`], { encoding: 'utf8' }).replace(/\0/g, ' ')
    if (cmdline.includes('guest=db1')) execFileSync('kill', ['-9', pid])
  }
  const code = await new Promise<number>(resolve => child.on('exit', c => resolve(c ?? -1)))
  t.not(code, 0)
  t.match(err, /error\[SC_MIGRATION_FAILED\]/)
  const s = await status()
  t.equal(s.vms.find(v => v.name === 'db1')?.host, 'h1')
  t.equal(s.vms.find(v => v.name === 'db1')?.state, 'running')
  const out = await inGuest('db1', VERIFY)
  t.equal(/checksum ([0-9a-f]{16})/.exec(out)?.[1], memSum)
  t.equal(/^([0-9a-f]{32})\s+\/dev\/vda/m.exec(out)?.[1], diskSum)
  // And it can still migrate afterwards.
  const again = await sb.run(['migrate', 'db1', '--to', 'h2', '--json'])
  t.equal(again.code, 0, again.stderr)
})

t.test('migration link cut mid-transfer: it fails by its deadline and the VM keeps running on the source', async t => {
  const prefix = sb.prefix('mig') ?? ''
  const h2 = leftovers(prefix).namespaces.find(n => n.endsWith('-h2')) ?? ''
  const from = (await status()).vms.find(v => v.name === 'db1')?.host
  const to = from === 'h1' ? 'h2' : 'h1'
  const dest = leftovers(prefix).namespaces.find(n => n.endsWith(`-${to}`)) ?? h2
  const child = sb.start(['migrate', 'db1', '--to', to, '--bandwidth', '40M', '--mode', 'precopy', '--deadline', '20s'])
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGINT') })
  let err = ''
  child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  for (let i = 0; i < 300 && !/ memory /.test(err); i++) await new Promise(resolve => setTimeout(resolve, 100))
  // Cut the data path (migration and disk streams) to the destination; SSH stays up.
  execFileSync('ip', ['netns', 'exec', dest, 'nft', '-f', '-'], { input: 'table inet sccut {\n chain input {\n  type filter hook input priority 0;\n  tcp dport 49152-49215 drop\n }\n}\n' })
  t.teardown(() => { try { execFileSync('ip', ['netns', 'exec', dest, 'nft', 'delete', 'table', 'inet', 'sccut']) } catch {} })
  const code = await new Promise<number>(resolve => child.on('exit', c => resolve(c ?? -1)))
  t.not(code, 0)
  t.match(err, /error\[SC_MIGRATION_FAILED\].*(did not converge|deadline)/)
  execFileSync('ip', ['netns', 'exec', dest, 'nft', 'delete', 'table', 'inet', 'sccut'])
  const s = await status()
  t.equal(s.vms.find(v => v.name === 'db1')?.host, from)
  t.equal(s.vms.find(v => v.name === 'db1')?.state, 'running')
  const out = await inGuest('db1', VERIFY)
  t.equal(/checksum ([0-9a-f]{16})/.exec(out)?.[1], memSum)
  t.equal(/^([0-9a-f]{32})\s+\/dev\/vda/m.exec(out)?.[1], diskSum)
})

t.test('controller killed mid-migration: the next command finishes or rolls back the move', async t => {
  const from = (await status()).vms.find(v => v.name === 'db1')?.host ?? ''
  const to = from === 'h1' ? 'h2' : 'h1'
  const child = sb.start(['migrate', 'db1', '--to', to, '--bandwidth', '80M', '--mode', 'precopy'])
  let err = ''
  child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  for (let i = 0; i < 300 && !/ memory /.test(err); i++) await new Promise(resolve => setTimeout(resolve, 100))
  child.kill('SIGKILL')
  await new Promise(resolve => child.on('exit', resolve))
  // The hosts carry on without the controller; give them time to finish or give up.
  let s = await status()
  for (let i = 0; i < 60 && s.vms.find(v => v.name === 'db1')?.status === 'migrating'; i++) {
    const r = await sb.run(['up'])
    if (/rolled back|finished its move/.test(r.stderr)) { t.pass(`recovered: ${/migration\s+recover: (.*)/.exec(r.stderr)?.[1] ?? ''}`); break }
    await new Promise(resolve => setTimeout(resolve, 2000))
    s = await status()
  }
  s = await status()
  const vm = s.vms.find(v => v.name === 'db1')
  t.equal(vm?.status, 'ready')
  t.equal(vm?.state, 'running')
  t.ok(vm?.host === from || vm?.host === to)
  const out = await inGuest('db1', VERIFY)
  t.equal(/checksum ([0-9a-f]{16})/.exec(out)?.[1], memSum, 'memory intact')
  t.equal(/^([0-9a-f]{32})\s+\/dev\/vda/m.exec(out)?.[1], diskSum, 'disk intact')
  // Exactly one copy runs.
  const prefix = sb.prefix('mig') ?? ''
  let copies = 0
  for (const ns of leftovers(prefix).namespaces.filter(n => /-h[123]$/.test(n))) {
    for (const pid of execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
      try { if (execFileSync('cat', [`/proc/${pid}/cmdline`], { encoding: 'utf8' }).includes('guest=db1')) copies++ } catch {}
    }
  }
  t.equal(copies, 1, 'one QEMU for db1')
})
