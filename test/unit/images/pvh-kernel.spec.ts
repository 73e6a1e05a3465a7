/** images/lib/pvh-kernel.ts: finding a bzImage's compressed payload, and an ELF kernel's PVH entry note. */
import t from 'tap'
import { bzImagePayload, hasPvhEntry, NotABzImage } from '../../../images/lib/pvh-kernel.ts'

/** A bzImage-shaped buffer: boot header `version`, `setupSects` setup sectors, the payload after `gap` bytes of protected-mode code. */
function bzImage (payload: Buffer, opts: { version?: number, setupSects?: number, gap?: number } = {}): Buffer {
  const sects = opts.setupSects ?? 3
  const gap = opts.gap ?? 100
  const pm = (sects === 0 ? 4 : sects) + 1
  const b = Buffer.alloc(pm * 512 + gap + payload.length + 16)
  b.writeUInt8(sects, 0x1f1)
  b.write('HdrS', 0x202, 'latin1')
  b.writeUInt16LE(opts.version ?? 0x020f, 0x206)
  b.writeUInt32LE(gap, 0x248)
  b.writeUInt32LE(payload.length, 0x24c)
  payload.copy(b, pm * 512 + gap)
  return b
}

t.test('the payload and its format, wherever the setup sectors end', async t => {
  const xz = Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.from('rest of the stream')])
  const p = bzImagePayload(bzImage(xz))
  t.equal(p.format, 'xz')
  t.same(p.data, xz)
  const gz = Buffer.from([0x1f, 0x8b, 0x08, 0, 1, 2, 3])
  t.same(bzImagePayload(bzImage(gz, { setupSects: 0 })), { format: 'gzip', data: gz }, 'setup_sects 0 means 4')
  t.equal(bzImagePayload(bzImage(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 9]), { setupSects: 30, gap: 0 })).format, 'zstd')
})

t.test('what is not a bzImage with a payload is refused with the reason', async t => {
  t.throws(() => bzImagePayload(Buffer.alloc(4096)), /no Linux boot header/, 'no HdrS')
  t.ok((() => { try { bzImagePayload(Buffer.alloc(8)) } catch (e) { return e instanceof NotABzImage } })(), 'a NotABzImage')
  t.throws(() => bzImagePayload(bzImage(Buffer.from([0x1f, 0x8b]), { version: 0x0206 })), /boot protocol 2\.06/)
  t.throws(() => bzImagePayload(bzImage(Buffer.from('plain text'))), /not a known compression/)
  const cut = bzImage(Buffer.from([0x1f, 0x8b, 1, 2, 3, 4]))
  t.throws(() => bzImagePayload(cut.subarray(0, cut.length - 20)), /outside/)
})

/** An ELF64 LE with one PT_NOTE segment holding the given (name, type) notes. */
function elf (notes: Array<[string, number]>): Buffer {
  const body = Buffer.concat(notes.map(([name, type]) => {
    const n = Buffer.from(`${name}\0`)
    const h = Buffer.alloc(12)
    h.writeUInt32LE(n.length, 0); h.writeUInt32LE(4, 4); h.writeUInt32LE(type, 8)
    const padded = Buffer.alloc((n.length + 3) & ~3); n.copy(padded)
    return Buffer.concat([h, padded, Buffer.from([1, 2, 3, 4])])
  }))
  const b = Buffer.alloc(64 + 56 + body.length)
  b.writeUInt32BE(0x7f454c46, 0); b[4] = 2; b[5] = 1
  b.writeBigUInt64LE(64n, 0x20); b.writeUInt16LE(56, 0x36); b.writeUInt16LE(1, 0x38)
  b.writeUInt32LE(4, 64); b.writeBigUInt64LE(120n, 64 + 8); b.writeBigUInt64LE(BigInt(body.length), 64 + 32)
  body.copy(b, 120)
  return b
}

t.test('a PVH entry is Xen note 18; other notes, or no ELF, are not', async t => {
  t.ok(hasPvhEntry(elf([['GNU', 3], ['Xen', 6], ['Xen', 18]])), 'Xen note 18 after others')
  t.notOk(hasPvhEntry(elf([['Xen', 6], ['Linux', 18]])), 'type 18 under another name')
  t.notOk(hasPvhEntry(elf([])), 'no notes')
  t.notOk(hasPvhEntry(Buffer.from('MZ not an elf at all, but long enough to read headers from it..........')), 'not ELF')
})
