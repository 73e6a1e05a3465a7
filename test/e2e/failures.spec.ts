/**
 * Bad input and failures through the real CLI: each gets a clear error and a non-zero
 * exit code, and leaves no orphaned process, namespace or interface.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { sandbox } from '../helpers/cli.ts'
import { leftovers } from '../helpers/sweep-lib.ts'
import { oneHostSpec, tinyVmLine, twoHostSpec } from '../helpers/specs.ts'
import type { StatusReport } from '../../blanket-manager/controller/index.ts'

const oneHost = (name: string, vms: string): string => oneHostSpec({ name, subnet: '198.18.10.0/24', vms })

function nsPids (ns: string): string[] {
  return execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean)
}

function commOf (pid: string): string {
  try { return execFileSync('cat', [`/proc/${pid}/comm`], { encoding: 'utf8' }).trim() } catch { return '' }
}

function cmdlineOf (pid: string): string {
  try { return execFileSync('cat', [`/proc/${pid}/cmdline`], { encoding: 'utf8' }).replace(/\0/g, ' ') } catch { return '' }
}

t.test('a malformed spec is refused with file, line, column and field; nothing is created', async t => {
  const sb = sandbox(t, oneHost('badspec', `  web1:
    image: tiny
    memory: 12 potatoes
`), 'badspec')
  const r = await sb.run(['up'])
  t.equal(r.code, 2)
  t.match(r.stderr, /error\[SC_SPEC_INVALID\]/)
  t.match(r.stderr, /supercloud\.yaml:\d+:\d+: vms\.web1\.memory: .*12 potatoes/)
  t.equal(sb.prefix('badspec'), undefined, 'no supercloud state was even started')
})

t.test('a VM that does not fit its host is refused before anything is made', async t => {
  const sb = sandbox(t, oneHost('nofit', `  big:
    image: tiny
    host: h1
    memory: 1G
`), 'nofit')
  const r = await sb.run(['up'])
  t.equal(r.code, 2, r.stderr)
  t.match(r.stderr, /error\[SC_CAPACITY\]: vms\.big: needs 1G of memory but host h1 has 512M left of 512M/)
  const p = sb.prefix('nofit')
  if (p !== undefined) t.same(leftovers(p).namespaces, [], 'no namespace was created')
})

t.test('a guest that fails to boot: error with its console tail, no orphaned QEMU', async t => {
  // 24M of memory is too little for the kernel to unpack its initramfs: it panics and never gets ready.
  // (QEMU then resets it, silently, over and over at full CPU until the deadline: 20 s is enough to
  // show the failure and costs the other tests' CPU least.)
  const sb = sandbox(t, oneHost('noboot', `  starved:
    image: tiny
    host: h1
    memory: 24M
`), 'noboot', { SUPERCLOUD_BOOT_TIMEOUT_MS: '20000' })
  const r = await sb.run(['up'])
  t.not(r.code, 0)
  t.match(r.stderr, /error\[SC_GUEST_BOOT\]: h1: guest starved failed to boot/, 'names the host and the guest')
  t.match(r.stderr, /last console lines ---\n\S/, 'shows the console tail (or says it was empty)')
  const prefix = sb.prefix('noboot') ?? ''
  const ns = leftovers(prefix).namespaces.find(n => n.includes('h1'))
  t.ok(ns, 'the host is still there')
  const comms = nsPids(ns ?? '').map(commOf)
  t.notOk(comms.some(c => c.startsWith('qemu')), `no QEMU left on the host (processes: ${comms.join(', ')})`)
  const s = JSON.parse((await sb.run(['status', '--json'])).stdout) as StatusReport
  t.equal(s.vms.find(v => v.name === 'starved')?.status, 'failed')
  t.match(s.vms.find(v => v.name === 'starved')?.error, /failed to boot/)
})

t.test('down with the hosts already gone still removes everything', async t => {
  const sb = sandbox(t, oneHost('gonehost', '  {}'), 'gonehost')
  const up = await sb.run(['up'])
  t.equal(up.code, 0, up.stderr)
  const prefix = sb.prefix('gonehost') ?? ''
  const hostNs = leftovers(prefix).namespaces.filter(n => n.includes('h1'))
  t.equal(hostNs.length, 1)
  // The host disappears behind our back (its processes and namespace).
  for (const ns of hostNs) {
    for (const pid of nsPids(ns)) execFileSync('kill', ['-9', pid])
    execFileSync('ip', ['netns', 'del', ns])
  }
  const st = JSON.parse((await sb.run(['status', '--json'])).stdout) as StatusReport
  t.equal(st.hosts[0]?.health, 'gone', 'status notices the host is gone')
  const down = await sb.run(['down'])
  t.equal(down.code, 0, down.stderr)
  t.same(leftovers(prefix), { namespaces: [], links: [], processes: [] })
})

t.test('up killed with -9 half way, then re-run: finishes without duplicates or leaks', async t => {
  const sb = sandbox(t, twoHostSpec({
    name: 'killed',
    subnet: '198.18.11.0/24',
    vms: [tinyVmLine('v1', { host: 'h1', memory: '96M' }), tinyVmLine('v2', { host: 'h2', memory: '96M' })]
  }), 'killed')
  const child = sb.start(['up'])
  let err = ''
  await new Promise<void>(resolve => {
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString()
      // Kill once the hosts are being bootstrapped: sshd runs, agents are being installed.
      if (/host h[12]\s+(agent|image|probe|ready)/.test(err)) { child.kill('SIGKILL'); resolve() }
    })
    child.on('exit', () => resolve())
  })
  await new Promise(resolve => child.on('exit', resolve))
  const again = await sb.run(['up'])
  t.equal(again.code, 0, again.stderr)
  t.match(again.stderr, /finishing interrupted creation|new VM/)
  const prefix = sb.prefix('killed') ?? ''
  for (const h of ['h1', 'h2']) {
    const ns = leftovers(prefix).namespaces.find(n => n.endsWith(h)) ?? ''
    const comms = nsPids(ns).map(commOf)
    t.equal(comms.filter(c => c === 'sshd').length, 1, `one sshd on ${h}: ${comms.join(',')}`)
    t.equal(comms.filter(c => c.startsWith('qemu')).length, 1, `one guest on ${h}`)
    const cmds = nsPids(ns).map(cmdlineOf)
    t.equal(cmds.filter(c => c.includes('agent.mjs')).length, 1, `one agent on ${h}`)
    t.equal(cmds.filter(c => c.includes('vw-endpointd.mjs')).length, 1, `one endpoint manager on ${h}`)
  }
  const s = JSON.parse((await sb.run(['status', '--json'])).stdout) as StatusReport
  t.same(s.vms.map(v => v.state), ['running', 'running'])
  const third = await sb.run(['up'])
  t.match(third.stderr, /plan: nothing to change/)
})

t.test('Ctrl-C during up stops cleanly (exit 130) and up resumes', async t => {
  const sb = sandbox(t, oneHost('ctrlc', tinyVmLine('v1', { host: 'h1', memory: '96M' })), 'ctrlc')
  const child = sb.start(['up'])
  let err = ''
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString()
    if (/host h1\s+provision/.test(err)) child.kill('SIGINT')
  })
  const code = await new Promise<number>(resolve => child.on('exit', c => resolve(c ?? -1)))
  t.equal(code, 130, err)
  t.match(err, /interrupted/)
  const again = await sb.run(['up'])
  t.equal(again.code, 0, again.stderr)
  const s = JSON.parse((await sb.run(['status', '--json'])).stdout) as StatusReport
  t.equal(s.vms[0]?.state, 'running')
})
