/**
 * The EC2 Query protocol, server side (pure): form-encoded request bodies into nested
 * values, XML responses in the EC2 namespace, error documents, and SigV4 checks.
 * Used by the test server (server.ts); no I/O here.
 */
import { createHash, createHmac } from 'node:crypto'

export const EC2_API_VERSION = '2016-11-15'
export const EC2_XMLNS = `http://ec2.amazonaws.com/doc/${EC2_API_VERSION}/`

/** A request parameter tree: `A.1.B=x` becomes { A: [ { B: 'x' } ] }. */
export type QueryValue = string | QueryValue[] | { [key: string]: QueryValue }
export type QueryObject = { [key: string]: QueryValue }

/** Parses an `application/x-www-form-urlencoded` body into a tree (numeric segments are 1-based list indexes). */
export function parseQuery (body: string): QueryObject {
  const root: QueryObject = {}
  for (const [key, value] of new URLSearchParams(body)) {
    const parts = key.split('.')
    let node: QueryObject | QueryValue[] = root
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as string
      const last = i === parts.length - 1
      const nextIsIndex = !last && /^\d+$/.test(parts[i + 1] as string)
      const slot: string | number = Array.isArray(node) ? Number(part) - 1 : part
      const container = node as Record<string | number, QueryValue>
      if (last) {
        container[slot] = value
      } else {
        let child = container[slot]
        if (child === undefined || typeof child === 'string') {
          child = nextIsIndex ? [] : {}
          container[slot] = child
        }
        node = child as QueryObject | QueryValue[]
      }
    }
  }
  return root
}

export function str (v: QueryValue | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined
}

/** A list parameter (`X.1`, `X.2`...), holes removed. */
export function list (v: QueryValue | undefined): QueryValue[] {
  return Array.isArray(v) ? v.filter(x => x !== undefined) : []
}

export function strList (v: QueryValue | undefined): string[] {
  return list(v).filter((x): x is string => typeof x === 'string')
}

export function obj (v: QueryValue | undefined): QueryObject {
  return v !== undefined && typeof v === 'object' && !Array.isArray(v) ? v : {}
}

/** Filters (`Filter.N.Name`, `Filter.N.Value.M`). */
export function filters (q: QueryObject): Array<{ name: string, values: string[] }> {
  return list(q.Filter).map(f => ({ name: str(obj(f).Name) ?? '', values: strList(obj(f).Value) }))
}

/** Tags of `TagSpecification.N` for one resource type. */
export function tagSpecs (q: QueryObject, resourceType: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const s of list(q.TagSpecification)) {
    if (str(obj(s).ResourceType) !== resourceType) continue
    for (const t of list(obj(s).Tag)) out[str(obj(t).Key) ?? ''] = str(obj(t).Value) ?? ''
  }
  return out
}

// ---- XML ----

/** An XML element: name, then text or children. `undefined` children are skipped. */
export type XmlNode = [name: string, content: string | number | boolean | Array<XmlNode | undefined>]

export function escapeXml (s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;')
}

export function renderXml (node: XmlNode): string {
  const [name, content] = node
  if (Array.isArray(content)) {
    const inner = content.filter((c): c is XmlNode => c !== undefined).map(renderXml).join('')
    return inner === '' ? `<${name}/>` : `<${name}>${inner}</${name}>`
  }
  return `<${name}>${escapeXml(String(content))}</${name}>`
}

/** `<name><item>...</item>...</name>` */
export function itemSet (name: string, items: Array<Array<XmlNode | undefined>>): XmlNode {
  return [name, items.map(i => ['item', i] as XmlNode)]
}

export function tagSet (tags: Record<string, string>): XmlNode {
  return itemSet('tagSet', Object.entries(tags).map(([k, v]) => [['key', k], ['value', v]]))
}

/** A successful response document: `<ActionResponse xmlns=...><requestId/>...</ActionResponse>`. */
export function responseXml (action: string, requestId: string, body: Array<XmlNode | undefined>): string {
  const inner = [['requestId', requestId] as XmlNode, ...body].filter((c): c is XmlNode => c !== undefined).map(renderXml).join('')
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${EC2_XMLNS}">${inner}</${action}Response>`
}

/** EC2's error document (note: `RequestID`, capitalised differently from success responses). */
export function errorXml (code: string, message: string, requestId: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${escapeXml(code)}</Code><Message>${escapeXml(message)}</Message></Error></Errors><RequestID>${escapeXml(requestId)}</RequestID></Response>`
}

/** An API error the server answers with. */
export class Ec2ApiError extends Error {
  readonly status: number
  constructor (readonly code: string, message: string, status?: number) {
    super(message)
    this.status = status ?? statusFor(code)
  }
}

/** HTTP status EC2 uses for an error code (client errors are 400). */
export function statusFor (code: string): number {
  switch (code) {
    case 'AuthFailure': return 401
    case 'MissingAuthenticationToken':
    case 'SignatureDoesNotMatch':
    case 'UnauthorizedOperation':
    case 'OptInRequired': return 403
    case 'RequestLimitExceeded': return 503
    case 'InternalError': return 500
    case 'Unavailable': return 503
    default: return 400
  }
}

// ---- SigV4 ----

export interface SigV4Authorization {
  accessKeyId: string
  date: string
  region: string
  service: string
  signedHeaders: string[]
  signature: string
}

/** Parses `AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/ec2/aws4_request, SignedHeaders=a;b, Signature=hex`. */
export function parseAuthorization (header: string | undefined): SigV4Authorization | undefined {
  if (header === undefined) return undefined
  const m = /^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)\/(\d{8})\/([a-z0-9-]+)\/([a-z0-9]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/.exec(header.trim())
  if (m === null) return undefined
  return {
    accessKeyId: m[1] as string,
    date: m[2] as string,
    region: m[3] as string,
    service: m[4] as string,
    signedHeaders: (m[5] as string).split(';'),
    signature: m[6] as string
  }
}

function sha256hex (data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

function hmac (key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest()
}

function uriEncode (s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, c => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

/** The signature SigV4 expects for a request (path '/' and query string as sent). */
export function expectedSignature (req: {
  method: string
  path: string
  query: string
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  auth: SigV4Authorization
  secretAccessKey: string
}): string {
  const h = (name: string): string => {
    const v = req.headers[name]
    return (Array.isArray(v) ? v.join(',') : v ?? '').trim().replace(/\s+/g, ' ')
  }
  const canonicalQuery = [...new URLSearchParams(req.query)]
    .map(([k, v]) => [uriEncode(k), uriEncode(v)])
    .sort((a, b) => (a[0] as string) < (b[0] as string) ? -1 : (a[0] as string) > (b[0] as string) ? 1 : (a[1] as string) < (b[1] as string) ? -1 : 1)
    .map(([k, v]) => `${k as string}=${v as string}`).join('&')
  const payloadHash = h('x-amz-content-sha256') !== '' ? h('x-amz-content-sha256') : sha256hex(req.body)
  const canonical = [
    req.method,
    req.path,
    canonicalQuery,
    req.auth.signedHeaders.map(n => `${n}:${h(n)}\n`).join(''),
    req.auth.signedHeaders.join(';'),
    payloadHash
  ].join('\n')
  const amzDate = h('x-amz-date')
  const scope = `${req.auth.date}/${req.auth.region}/${req.auth.service}/aws4_request`
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256hex(canonical)].join('\n')
  let key = hmac(`AWS4${req.secretAccessKey}`, req.auth.date)
  key = hmac(key, req.auth.region)
  key = hmac(key, req.auth.service)
  key = hmac(key, 'aws4_request')
  return createHmac('sha256', key).update(toSign).digest('hex')
}
