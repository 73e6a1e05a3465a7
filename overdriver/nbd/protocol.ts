/**
 * NBD wire constants and the fixed-size message layouts we use (pure). Fixed newstyle
 * handshake, simple replies only (no structured replies), per the NBD protocol document
 * (github.com/NetworkBlockDevice/nbd, doc/proto.md).
 */

export const NBDMAGIC = 0x4e42444d41474943n // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n // "IHAVEOPT"
export const OPT_REPLY_MAGIC = 0x0003e889045565a9n
export const REQUEST_MAGIC = 0x25609513
export const SIMPLE_REPLY_MAGIC = 0x67446698

// Handshake flags (server) and client flags.
export const FLAG_FIXED_NEWSTYLE = 1 << 0
export const FLAG_NO_ZEROES = 1 << 1
export const CLIENT_FLAG_FIXED_NEWSTYLE = 1 << 0
export const CLIENT_FLAG_NO_ZEROES = 1 << 1

// Options.
export const OPT_EXPORT_NAME = 1
export const OPT_ABORT = 2
export const OPT_LIST = 3
export const OPT_STARTTLS = 5
export const OPT_INFO = 6
export const OPT_GO = 7
export const OPT_STRUCTURED_REPLY = 8

// Option replies.
export const REP_ACK = 1
export const REP_SERVER = 2
export const REP_INFO = 3
const ERR = 0x80000000
export const REP_ERR_UNSUP = ERR + 1
export const REP_ERR_POLICY = ERR + 2
export const REP_ERR_INVALID = ERR + 3
export const REP_ERR_UNKNOWN = ERR + 6
export const REP_ERR_TOO_BIG = ERR + 9

// Information types for OPT_INFO / OPT_GO.
export const INFO_EXPORT = 0
export const INFO_BLOCK_SIZE = 3

// Transmission flags.
export const TFLAG_HAS_FLAGS = 1 << 0
export const TFLAG_READ_ONLY = 1 << 1
export const TFLAG_SEND_FLUSH = 1 << 2
export const TFLAG_SEND_FUA = 1 << 3
export const TFLAG_SEND_TRIM = 1 << 5
export const TFLAG_SEND_WRITE_ZEROES = 1 << 6
export const TFLAG_CAN_MULTI_CONN = 1 << 8

// Commands and command flags.
export const CMD_READ = 0
export const CMD_WRITE = 1
export const CMD_DISC = 2
export const CMD_FLUSH = 3
export const CMD_TRIM = 4
export const CMD_WRITE_ZEROES = 6
export const CMD_FLAG_FUA = 1 << 0
export const CMD_FLAG_NO_HOLE = 1 << 1

// Errors in replies.
export const EPERM = 1
export const EIO = 5
export const ENOMEM = 12
export const EINVAL = 22
export const ENOSPC = 28
export const EOVERFLOW = 75
export const ENOTSUP = 95
export const ESHUTDOWN = 108

/** Largest READ/WRITE payload we accept (QEMU asks for at most 32 MiB; we advertise this). */
export const MAX_PAYLOAD = 32 * 1024 * 1024
/** Largest option payload in the handshake (names are at most 4096 bytes). */
export const MAX_OPTION_LENGTH = 16 * 1024
export const MAX_EXPORT_NAME = 4096

export const REQUEST_HEADER_SIZE = 28
export const OPTION_HEADER_SIZE = 16

export function optionName (opt: number): string {
  return ({ [OPT_EXPORT_NAME]: 'EXPORT_NAME', [OPT_ABORT]: 'ABORT', [OPT_LIST]: 'LIST', [OPT_STARTTLS]: 'STARTTLS', [OPT_INFO]: 'INFO', [OPT_GO]: 'GO', [OPT_STRUCTURED_REPLY]: 'STRUCTURED_REPLY' } as Record<number, string>)[opt] ?? `option ${opt}`
}

export function commandName (cmd: number): string {
  return ({ [CMD_READ]: 'READ', [CMD_WRITE]: 'WRITE', [CMD_DISC]: 'DISC', [CMD_FLUSH]: 'FLUSH', [CMD_TRIM]: 'TRIM', [CMD_WRITE_ZEROES]: 'WRITE_ZEROES' } as Record<number, string>)[cmd] ?? `command ${cmd}`
}

/** The server's first 18 bytes. */
export function serverGreeting (): Buffer {
  const b = Buffer.alloc(18)
  b.writeBigUInt64BE(NBDMAGIC, 0)
  b.writeBigUInt64BE(IHAVEOPT, 8)
  b.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16)
  return b
}

export function optionReply (opt: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20 + data.length)
  b.writeBigUInt64BE(OPT_REPLY_MAGIC, 0)
  b.writeUInt32BE(opt, 8)
  b.writeUInt32BE(type >>> 0, 12)
  b.writeUInt32BE(data.length, 16)
  data.copy(b, 20)
  return b
}

export interface OptionHeader { magic: bigint, option: number, length: number }

export function parseOptionHeader (b: Buffer): OptionHeader {
  return { magic: b.readBigUInt64BE(0), option: b.readUInt32BE(8), length: b.readUInt32BE(12) }
}

export function encodeOption (option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_HEADER_SIZE + data.length)
  b.writeBigUInt64BE(IHAVEOPT, 0)
  b.writeUInt32BE(option, 8)
  b.writeUInt32BE(data.length, 12)
  data.copy(b, 16)
  return b
}

/** The data of NBD_OPT_GO / NBD_OPT_INFO: export name and requested information types. */
export function encodeGo (name: string, infos: number[] = []): Buffer {
  const n = Buffer.from(name, 'utf8')
  const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length)
  b.writeUInt32BE(n.length, 0)
  n.copy(b, 4)
  b.writeUInt16BE(infos.length, 4 + n.length)
  infos.forEach((t, i) => b.writeUInt16BE(t, 6 + n.length + 2 * i))
  return b
}

/** Parses GO/INFO data; a string says what is malformed. */
export function parseGo (data: Buffer): { name: string, infos: number[] } | string {
  if (data.length < 6) return `${data.length} bytes is too short for an export name and information count`
  const nameLen = data.readUInt32BE(0)
  if (nameLen > MAX_EXPORT_NAME) return `export name length ${nameLen} is above ${MAX_EXPORT_NAME}`
  if (4 + nameLen + 2 > data.length) return `export name length ${nameLen} runs past the option data (${data.length} bytes)`
  const name = data.subarray(4, 4 + nameLen).toString('utf8')
  const count = data.readUInt16BE(4 + nameLen)
  if (6 + nameLen + 2 * count !== data.length) return `information request count ${count} does not match the option length ${data.length}`
  const infos: number[] = []
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(6 + nameLen + 2 * i))
  return { name, infos }
}

export interface RequestHeader {
  magic: number
  flags: number
  type: number
  /** Opaque 8 bytes, echoed in the reply. */
  handle: Buffer
  /** Byte offset; above 2^53 it is reported as Infinity (always out of range). */
  offset: number
  length: number
}

export function parseRequestHeader (b: Buffer): RequestHeader {
  const off = b.readBigUInt64BE(16)
  return {
    magic: b.readUInt32BE(0),
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    handle: Buffer.from(b.subarray(8, 16)),
    offset: off > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(off),
    length: b.readUInt32BE(24)
  }
}

export function encodeRequest (type: number, handle: bigint, offset: number, length: number, flags = 0): Buffer {
  const b = Buffer.alloc(REQUEST_HEADER_SIZE)
  b.writeUInt32BE(REQUEST_MAGIC, 0)
  b.writeUInt16BE(flags, 4)
  b.writeUInt16BE(type, 6)
  b.writeBigUInt64BE(handle, 8)
  b.writeBigUInt64BE(BigInt(offset), 16)
  b.writeUInt32BE(length, 24)
  return b
}

export function simpleReply (handle: Buffer, error: number, dataLength = 0): Buffer {
  const b = Buffer.allocUnsafe(16 + dataLength)
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0)
  b.writeUInt32BE(error, 4)
  handle.copy(b, 8)
  return b
}
