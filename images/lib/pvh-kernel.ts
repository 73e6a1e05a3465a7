/**
 * The uncompressed kernel inside a bzImage, for a direct PVH boot: QEMU loads an ELF kernel
 * that carries Xen's PVH entry note straight into guest memory and jumps to it, skipping the
 * firmware's real-mode setup and the kernel's self-decompression. Under software emulation
 * that decompression is most of a tiny guest's boot (docs/benchmarks.md, "Guest boot").
 * Pure: parses bytes (Linux boot protocol, ELF64 notes); the decompressing is the caller's.
 */

/** Compression formats a bzImage payload can have, by their magic bytes. */
export type PayloadFormat = 'gzip' | 'xz' | 'zstd' | 'lzma' | 'bzip2' | 'lz4' | 'lzo'

const MAGIC: Array<[PayloadFormat, number[]]> = [
  ['gzip', [0x1f, 0x8b]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['bzip2', [0x42, 0x5a, 0x68]],
  ['lz4', [0x02, 0x21, 0x4c, 0x18]],
  ['lzo', [0x89, 0x4c, 0x5a, 0x4f]],
  ['lzma', [0x5d, 0x00, 0x00]]
]

/** Why a file is not a bzImage whose payload we can find. */
export class NotABzImage extends Error {}

/**
 * The compressed kernel a bzImage carries (boot protocol 2.08+: `payload_offset` and
 * `payload_length` in the setup header, relative to the protected-mode code after the
 * setup sectors), with its format.
 */
export function bzImagePayload (image: Buffer): { format: PayloadFormat, data: Buffer } {
  if (image.length < 0x250 || image.toString('latin1', 0x202, 0x206) !== 'HdrS') throw new NotABzImage('no Linux boot header (HdrS)')
  const version = image.readUInt16LE(0x206)
  if (version < 0x0208) throw new NotABzImage(`boot protocol ${(version >> 8)}.${(version & 0xff).toString().padStart(2, '0')} has no payload fields (2.08+)`)
  const setupSects = image.readUInt8(0x1f1) === 0 ? 4 : image.readUInt8(0x1f1)
  const start = (setupSects + 1) * 512 + image.readUInt32LE(0x248)
  const length = image.readUInt32LE(0x24c)
  if (start + length > image.length || length === 0) throw new NotABzImage(`payload at ${start}+${length} lies outside the ${image.length}-byte image`)
  const data = image.subarray(start, start + length)
  const found = MAGIC.find(([, m]) => m.every((b, i) => data[i] === b))
  if (found === undefined) throw new NotABzImage(`payload starts with ${data.subarray(0, 6).toString('hex')}: not a known compression`)
  return { format: found[0], data }
}

/** XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit entry point a PVH loader jumps to. */
const PVH_ENTRY_NOTE = 18
const PT_NOTE = 4

/** True when `elf` is a 64-bit little-endian ELF with a PVH entry note (a kernel QEMU and Xen can boot directly). */
export function hasPvhEntry (elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return false
  const phoff = Number(elf.readBigUInt64LE(0x20))
  const phentsize = elf.readUInt16LE(0x36)
  const phnum = elf.readUInt16LE(0x38)
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize
    if (ph + 56 > elf.length || elf.readUInt32LE(ph) !== PT_NOTE) continue
    const off = Number(elf.readBigUInt64LE(ph + 8))
    const end = Math.min(elf.length, off + Number(elf.readBigUInt64LE(ph + 32)))
    for (let n = off; n + 12 <= end;) {
      const namesz = elf.readUInt32LE(n)
      const descsz = elf.readUInt32LE(n + 4)
      const type = elf.readUInt32LE(n + 8)
      const name = elf.toString('latin1', n + 12, n + 12 + Math.max(0, namesz - 1))
      if (name === 'Xen' && type === PVH_ENTRY_NOTE) return true
      n += 12 + align4(namesz) + align4(descsz)
    }
  }
  return false
}

function align4 (n: number): number { return (n + 3) & ~3 }
