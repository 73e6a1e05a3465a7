/**
 * l2fw's command line: compiled from images/guest/tools/l2fw.c, run without
 * touching any interface (it checks every argument before opening sockets), so
 * its own parser and the TypeScript validator in cmdline.ts must agree.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isL2fwMatch } from '../../../images/guest/cmdline.ts'

const src = join(dirname(fileURLToPath(import.meta.url)), '../../../images/guest/tools/l2fw.c')
const dir = mkdtempSync(join(tmpdir(), 'sct-l2fw-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const bin = join(dir, 'l2fw')
const cc = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', bin, src], { encoding: 'utf8' })

// An interface name no machine has: a valid command line gets as far as looking it up (exit 1).
const NOIF = 'sctnoif0'

function l2fw (...args: string[]): { status: number | null, stdout: string, stderr: string } {
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 10_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.test('compiles without warnings', async t => {
  t.equal(cc.status, 0, cc.stderr)
})

t.test('--help explains the rules and counters', async t => {
  const r = l2fw('--help')
  t.equal(r.status, 0)
  t.match(r.stdout, /usage: l2fw <if-a> <if-b>/)
  t.match(r.stdout, /--default allow\|drop/)
  t.match(r.stdout, /SIGUSR1/)
})

t.test('bad command lines exit 2 with a reason', async t => {
  t.equal(l2fw().status, 2, 'no interfaces')
  t.equal(l2fw(NOIF, NOIF).status, 2, 'same interface twice')
  const r = l2fw(NOIF, 'sctnoif1', '--allow', 'udp:9-7')
  t.equal(r.status, 2)
  t.match(r.stderr, /bad match term 'udp:9-7'/)
  t.equal(l2fw(NOIF, 'sctnoif1', '--default', 'maybe').status, 2)
  t.equal(l2fw(NOIF, 'sctnoif1', '--allow').status, 2)
  t.equal(l2fw(NOIF, 'sctnoif1', '--bogus').status, 2)
})

t.test('a valid command line fails only on the missing interface', async t => {
  const r = l2fw(NOIF, 'sctnoif1', '--allow', 'arp', '--allow', 'icmp', '--allow', 'udp:7', '--default', 'drop')
  t.equal(r.status, 1)
  t.match(r.stderr, /no interface sctnoif0/)
})

t.test('the C parser and isL2fwMatch agree', async t => {
  const samples = ['any', 'arp', 'ip', 'ipv4', 'ipv6', 'ip6', 'icmp', 'icmp6', 'tcp', 'udp', 'sctp', 'udp:7', 'tcp:80-90', 'tcp:1-65535',
    'ethertype:0x88cc', 'ethertype:2048', 'proto:47', 'proto:255', 'vlan', 'vlan:10', 'vlan:4094', 'untagged', 'vlan:10+udp:53',
    'tcp:0', 'tcp:65536', 'udp:9-7', 'udp:', 'vlan:4095', 'proto:256', 'ethertype:0x12345', 'foo', 'icmp:1', 'arp,icmp', 'vlan:x', 'arp+', '+arp', 'arp++icmp', '']
  for (const m of samples) {
    const r = l2fw(NOIF, 'sctnoif1', '--allow', m)
    t.equal(r.status === 1, isL2fwMatch(m), `'${m}': l2fw exits ${r.status}, isL2fwMatch says ${isL2fwMatch(m)}`)
  }
})
