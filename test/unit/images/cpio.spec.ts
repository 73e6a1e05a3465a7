import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type CpioEntry, normalizeCpioPath, writeNewc } from '../../../images/guest/cpio.ts'

interface Parsed { name: string, mode: number, ino: number, mtime: number, uid: number, size: number, rmajor: number, rminor: number, data: Buffer }

/** Independent newc reader for the test. */
function readNewc (buf: Buffer): Parsed[] {
  const out: Parsed[] = []
  let off = 0
  for (;;) {
    t.equal(buf.toString('ascii', off, off + 6), '070701', 'newc magic')
    const f = (i: number): number => parseInt(buf.toString('ascii', off + 6 + i * 8, off + 14 + i * 8), 16)
    const nameSize = f(11)
    const size = f(6)
    const name = buf.toString('utf8', off + 110, off + 110 + nameSize - 1)
    const dataOff = off + 110 + nameSize + ((4 - ((110 + nameSize) % 4)) % 4)
    const entry = { name, mode: f(1), ino: f(0), uid: f(2), mtime: f(5), size, rmajor: f(9), rminor: f(10), data: buf.subarray(dataOff, dataOff + size) }
    off = dataOff + size + ((4 - (size % 4)) % 4)
    if (name === 'TRAILER!!!') break
    out.push(entry)
  }
  t.equal(off, buf.length, 'no bytes after the trailer')
  return out
}

const entries: CpioEntry[] = [
  { type: 'file', path: 'etc/passwd', data: Buffer.from('root:x:0:0::/root:/bin/sh\n') },
  { type: 'file', path: '/init', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
  { type: 'symlink', path: 'bin/sh', target: '/bin/busybox' },
  { type: 'chardev', path: 'dev/console', major: 5, minor: 1 },
  { type: 'dir', path: 'tmp', mode: 0o1777 },
  { type: 'file', path: 'bin/busybox', data: Buffer.alloc(5, 0xab), mode: 0o755 }
]

t.test('entries are sorted, parents added, metadata fixed', async t => {
  const parsed = readNewc(writeNewc(entries))
  t.same(parsed.map(e => e.name), ['bin', 'bin/busybox', 'bin/sh', 'dev', 'dev/console', 'etc', 'etc/passwd', 'init', 'tmp'])
  for (const e of parsed) {
    t.equal(e.mtime, 0, `${e.name} mtime 0`)
    t.equal(e.uid, 0, `${e.name} uid 0`)
  }
  t.same(parsed.map(e => e.ino), [1, 2, 3, 4, 5, 6, 7, 8, 9], 'sequential inodes')
  const by = new Map(parsed.map(e => [e.name, e]))
  t.equal(by.get('bin')?.mode, 0o040755)
  t.equal(by.get('tmp')?.mode, 0o041777)
  t.equal(by.get('init')?.mode, 0o100755)
  t.equal(by.get('etc/passwd')?.mode, 0o100644)
  t.equal(by.get('bin/sh')?.mode, 0o120777)
  t.equal(by.get('bin/sh')?.data.toString(), '/bin/busybox')
  t.equal(by.get('dev/console')?.mode, 0o020600)
  t.equal(by.get('dev/console')?.rmajor, 5)
  t.equal(by.get('dev/console')?.rminor, 1)
  t.same(by.get('bin/busybox')?.data, Buffer.alloc(5, 0xab))
})

t.test('same entries in any order give the same bytes', async t => {
  t.same(writeNewc([...entries].reverse()), writeNewc(entries))
})

t.test('bad input is refused', async t => {
  t.throws(() => writeNewc([{ type: 'dir', path: 'a' }, { type: 'dir', path: './a/' }]), /duplicate/)
  t.throws(() => writeNewc([{ type: 'file', path: 'a', data: Buffer.from('x') }, { type: 'file', path: 'a/b', data: Buffer.from('y') }]), /has children/)
  t.throws(() => normalizeCpioPath('../etc'), /bad cpio path/)
  t.throws(() => normalizeCpioPath('/'), /bad cpio path/)
  t.equal(normalizeCpioPath('./a//b/'), 'a/b')
})

const haveCpio = spawnSync('cpio', ['--version']).status === 0
t.test('GNU cpio extracts what we wrote', { skip: haveCpio ? false : 'cpio not installed' }, async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sct-cpio-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const archive = join(dir, 'a.cpio')
  // No device node: extracting one is a privileged operation we do not need to test.
  writeFileSync(archive, writeNewc(entries.filter(e => e.type !== 'chardev')))
  const out = join(dir, 'root')
  const r = spawnSync('sh', ['-c', `mkdir ${out} && cd ${out} && cpio -idm --quiet < ${archive}`])
  t.equal(r.status, 0, r.stderr.toString())
  t.equal(readFileSync(join(out, 'etc/passwd'), 'utf8'), 'root:x:0:0::/root:/bin/sh\n')
  t.equal(readlinkSync(join(out, 'bin/sh')), '/bin/busybox')
  t.equal(statSync(join(out, 'init')).mode & 0o777, 0o755)
})
