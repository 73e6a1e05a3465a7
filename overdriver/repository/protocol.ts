/**
 * The page repository wire protocol (pure). Binary, big-endian, one TCP connection carries
 * many pipelined requests; replies carry the request id and may come in any order.
 *
 * Request (40-byte header + payload):
 *   u32 magic 0x53435052 ("SCPR") | u8 version (1) | u8 op | u16 reserved (0) | u32 id
 *   | 16 bytes token (a VM's capability, or the admin token for ISSUE/REVOKE)
 *   | u64 page id | u32 payload length | payload
 * Reply (16-byte header + payload):
 *   u32 magic 0x53435072 ("SCPr") | u8 status | 3 bytes reserved | u32 id | u32 length | payload
 *
 * PUT carries exactly one 4 KiB page; GET answers with one; DEL frees one. ISSUE's payload is
 * JSON {"vm": "<name>", "maxPages"?: n} and its answer the new 16-byte capability; REVOKE's
 * payload is a capability (its pages are dropped). STATS (admin token only) answers JSON. A request that breaks
 * the framing gets a BAD_REQUEST reply whose payload is the reason, and the connection is closed.
 */
import { PAGE_SIZE } from '../constants.ts'

export const REQUEST_MAGIC = 0x53435052
export const REPLY_MAGIC = 0x53435072
export const VERSION = 1
export const REQUEST_HEADER_SIZE = 40
export const REPLY_HEADER_SIZE = 16
export const TOKEN_SIZE = 16
/** Largest non-PUT payload (ISSUE's JSON). */
export const MAX_SMALL_PAYLOAD = 1024

export const OP = { PING: 0, PUT: 1, GET: 2, DEL: 3, ISSUE: 16, REVOKE: 17, STATS: 18 } as const
export type Op = typeof OP[keyof typeof OP]

export const STATUS = { OK: 0, NOT_FOUND: 1, NO_ROOM: 2, BAD_CAPABILITY: 3, BAD_REQUEST: 4, DENIED: 5 } as const
export type Status = typeof STATUS[keyof typeof STATUS]

export const STATUS_NAME: Record<number, string> = { 0: 'ok', 1: 'not-found', 2: 'no-room', 3: 'bad-capability', 4: 'bad-request', 5: 'denied' }

export interface RequestHeader {
  op: number
  id: number
  token: Buffer
  pageId: number
  length: number
}

/** Checks and decodes a request header; a string says why it is malformed. */
export function parseRequestHeader (b: Buffer): RequestHeader | string {
  if (b.length !== REQUEST_HEADER_SIZE) return `header is ${b.length} bytes, expected ${REQUEST_HEADER_SIZE}`
  const magic = b.readUInt32BE(0)
  if (magic !== REQUEST_MAGIC) return `bad magic 0x${magic.toString(16)}`
  const version = b.readUInt8(4)
  if (version !== VERSION) return `unsupported protocol version ${version} (this repository speaks ${VERSION})`
  const op = b.readUInt8(5)
  if (!(Object.values(OP) as number[]).includes(op)) return `unknown operation ${op}`
  if (b.readUInt16BE(6) !== 0) return 'reserved bits set'
  const page = b.readBigUInt64BE(28)
  if (page > BigInt(Number.MAX_SAFE_INTEGER)) return `page id ${page} is above 2^53`
  const length = b.readUInt32BE(36)
  const expected = op === OP.PUT ? 'page' : op === OP.ISSUE || op === OP.REVOKE ? 'small' : 'none'
  if (expected === 'page' && length !== PAGE_SIZE) return `PUT carries ${length} bytes; a page is ${PAGE_SIZE}`
  if (expected === 'none' && length !== 0) return `operation ${op} carries no payload, got ${length} bytes`
  if (expected === 'small' && length > MAX_SMALL_PAYLOAD) return `payload of ${length} bytes is above ${MAX_SMALL_PAYLOAD}`
  return { op, id: b.readUInt32BE(8), token: Buffer.from(b.subarray(12, 28)), pageId: Number(page), length }
}

export function encodeRequest (op: number, id: number, token: Buffer, pageId: number, payload?: Buffer): Buffer {
  const len = payload?.length ?? 0
  const b = Buffer.allocUnsafe(REQUEST_HEADER_SIZE + len)
  b.writeUInt32BE(REQUEST_MAGIC, 0)
  b.writeUInt8(VERSION, 4)
  b.writeUInt8(op, 5)
  b.writeUInt16BE(0, 6)
  b.writeUInt32BE(id >>> 0, 8)
  if (token.length !== TOKEN_SIZE) throw new RangeError(`token must be ${TOKEN_SIZE} bytes`)
  token.copy(b, 12)
  b.writeBigUInt64BE(BigInt(pageId), 28)
  b.writeUInt32BE(len, 36)
  payload?.copy(b, REQUEST_HEADER_SIZE)
  return b
}

export function encodeReply (status: number, id: number, payload?: Buffer): Buffer {
  const len = payload?.length ?? 0
  const b = Buffer.allocUnsafe(REPLY_HEADER_SIZE + len)
  b.writeUInt32BE(REPLY_MAGIC, 0)
  b.writeUInt8(status, 4)
  b.writeUIntBE(0, 5, 3)
  b.writeUInt32BE(id >>> 0, 8)
  b.writeUInt32BE(len, 12)
  payload?.copy(b, REPLY_HEADER_SIZE)
  return b
}

export interface ReplyHeader { status: number, id: number, length: number }

export function parseReplyHeader (b: Buffer): ReplyHeader | string {
  const magic = b.readUInt32BE(0)
  if (magic !== REPLY_MAGIC) return `bad reply magic 0x${magic.toString(16)}`
  const length = b.readUInt32BE(12)
  if (length > Math.max(PAGE_SIZE, 1024 * 1024)) return `reply payload of ${length} bytes is too large`
  return { status: b.readUInt8(4), id: b.readUInt32BE(8), length }
}
