/**
 * images/lib/init-common.sh, the fragment both images' /init source, run in the busybox sh the
 * images boot with (only the functions that touch nothing of the host's: sc_param, fail,
 * sc_announce with dmesg stubbed), and how the recipes ship it.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BUSYBOX } from '../../../images/lib/build-kit.ts'
import { INIT_COMMON_PATH, INIT_COMMON_SOURCE, initCommonEntry } from '../../../images/lib/init-common.ts'
import { dom0Entries } from '../../../images/xen-host/build.ts'

const GUEST_INIT = new URL('../../../images/guest/init.sh', import.meta.url).pathname
const XEN_INIT = new URL('../../../images/xen-host/init.sh', import.meta.url).pathname

/** Runs `script` in busybox sh after sourcing the fragment, with sc_param reading `cmdline`. */
function run (t: { teardown: (fn: () => void) => void }, cmdline: string, script: string): { stdout: string, status: number | null } {
  const dir = mkdtempSync(join(tmpdir(), 'sct-initcommon-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'cmdline'), cmdline + '\n')
  // dmesg -n would set the host's console log level: a function wins over the command.
  const full = `. "${INIT_COMMON_SOURCE}"\nsc_cmdline="${join(dir, 'cmdline')}"\ndmesg () { :; }\n${script}\n`
  const r = spawnSync(BUSYBOX, ['sh', '-c', full], { encoding: 'utf8' })
  return { stdout: r.stdout, status: r.status }
}

t.test('the fragment and both inits parse in busybox sh', async t => {
  for (const f of [INIT_COMMON_SOURCE, GUEST_INIT, XEN_INIT]) {
    const r = spawnSync(BUSYBOX, ['sh', '-n', f], { encoding: 'utf8' })
    t.equal(r.status, 0, `${f}: ${r.stderr}`)
  }
})

t.test('sc_param: the last sc.<key>= word, its default when absent, "" when empty', async t => {
  const r = run(t, 'console=ttyS0 sc.name=a sc.named=x sc.net=eth0:198.18.0.2/24,eth1:198.18.1.2/24 sc.name=vm-1 sc.gw= sc.fw=eth0,eth1,--drop,*',
    'for k in name net gw mtu fw; do echo "$k=[$(sc_param $k dflt)]"; done')
  t.equal(r.status, 0)
  t.same(r.stdout.split('\n'), ['name=[vm-1]', 'net=[eth0:198.18.0.2/24,eth1:198.18.1.2/24]', 'gw=[]', 'mtu=[dflt]', 'fw=[eth0,eth1,--drop,*]', ''])
})

t.test('sc_param leaves no variables behind', async t => {
  const r = run(t, 'sc.name=vm-1', 'value=keep; arg=keep; sc_param name guest >/dev/null; echo "$value $arg"')
  t.equal(r.stdout, 'keep keep\n')
})

t.test('sc_announce: the ready line, or the failed line with every failure', async t => {
  t.equal(run(t, '', 'sc_announce "SUPERCLOUD-GUEST-READY vm-1" "SUPERCLOUD-GUEST-FAILED vm-1"').stdout, 'SUPERCLOUD-GUEST-READY vm-1\n')
  t.equal(run(t, '', 'fail "insmod 8021q"; fail "no interface eth1"; sc_announce "SUPERCLOUD-XEN-HOST-READY h" "SUPERCLOUD-XEN-HOST-FAILED h"').stdout,
    'sc-init: insmod 8021q\nsc-init: no interface eth1\nSUPERCLOUD-XEN-HOST-FAILED h insmod 8021q; no interface eth1\n')
})

t.test('both inits source the fragment from where the recipes put it, and define none of its functions again', async t => {
  t.equal(INIT_COMMON_PATH, '/lib/supercloud/init-common.sh')
  const shared = [...readFileSync(INIT_COMMON_SOURCE, 'utf8').matchAll(/^(\w+) \(\) \{/gm)].map(m => m[1])
  t.ok(shared.length >= 7, `functions: ${shared.join(' ')}`)
  for (const f of [GUEST_INIT, XEN_INIT]) {
    const text = readFileSync(f, 'utf8')
    t.match(text, new RegExp(`^\\. ${INIT_COMMON_PATH}$`, 'm'), `${f} sources it`)
    for (const fn of shared) t.notMatch(text, new RegExp(`^${fn} \\(\\)`, 'm'), `${f} leaves ${fn} to the fragment`)
  }
})

t.test('shipped as a plain file in the Xen host initramfs (and the entry both recipes use)', async t => {
  const data = Buffer.from('# fragment\n')
  t.same(initCommonEntry(data), { type: 'file', path: 'lib/supercloud/init-common.sh', data, mode: 0o644 })
  const entries = dom0Entries({ modules: [], busybox: Buffer.from('BB'), init: Buffer.from('#!/bin/sh\n'), initCommon: data, vifScript: Buffer.from(''), blockScript: Buffer.from(''), files: [], kernelVersion: '6.1.0-1-amd64', xenVersion: '4.17' }, [])
  t.match(entries.find(e => e.path === 'lib/supercloud/init-common.sh'), { type: 'file', data, mode: 0o644 })
})
