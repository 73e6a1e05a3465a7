/**
 * The instance metadata service of a fake EC2 instance (IMDSv2 only, the part supercloud
 * uses): `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` gives a token,
 * every `GET /latest/meta-data/...` needs it in `X-aws-ec2-metadata-token` (401 without or
 * with an expired one). `spot/instance-action` is 404 until an interruption is issued, then
 * `{"action":"terminate","time":"..."}`; `events/recommendations/rebalance` is 404 until a
 * rebalance recommendation, then `{"noticeTime":"..."}`.
 *
 * Where it answers: at http://169.254.169.254 inside the instance's host namespace, as on
 * EC2. The server listens on a unix socket (reachable across namespaces), and a socat in the
 * namespace forwards 169.254.169.254:80 (an address on the namespace's loopback) to it; the
 * socat lives in the namespace, so it goes with the instance.
 *
 * `imdsAnswer` is the pure part (request in, status and body out); `serveImds` the I/O.
 */
import { randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { rm } from 'node:fs/promises'
import { run } from '../../local/sh.ts'
import type { FakeInstance } from './state.ts'

export const IMDS_ADDRESS = '169.254.169.254'
export const MAX_TOKEN_TTL_SECONDS = 21600

/** What the metadata service of one instance knows besides the instance itself: its tokens. */
export interface ImdsTokens { tokens: Map<string, number> }

export interface ImdsRequest { method: string, path: string, headers: Record<string, string | string[] | undefined> }
export interface ImdsAnswer { status: number, body: string, headers?: Record<string, string> }

function header (h: ImdsRequest['headers'], name: string): string | undefined {
  const v = h[name.toLowerCase()]
  return Array.isArray(v) ? v[0] : v
}

/** The metadata documents of an instance (path under /latest/meta-data/ → text), as EC2 shows them now. */
export function metadataOf (inst: FakeInstance): Record<string, string> {
  const out: Record<string, string> = {
    'instance-id': inst.id,
    'instance-type': inst.instanceType,
    'ami-id': inst.imageId,
    'instance-life-cycle': inst.spot ? 'spot' : 'on-demand',
    'placement/availability-zone': inst.az,
    'placement/region': inst.region
  }
  if (inst.privateIp !== undefined) out['local-ipv4'] = inst.privateIp
  if (inst.publicIp !== undefined) out['public-ipv4'] = inst.publicIp
  if (inst.interruption !== undefined) out['spot/instance-action'] = JSON.stringify(inst.interruption)
  if (inst.rebalance !== undefined) out['events/recommendations/rebalance'] = JSON.stringify(inst.rebalance)
  return out
}

/** Answers one request to an instance's metadata service (pure apart from the token map it updates). */
export function imdsAnswer (inst: FakeInstance, t: ImdsTokens, req: ImdsRequest, now = Date.now()): ImdsAnswer {
  if (req.path === '/latest/api/token') {
    if (req.method !== 'PUT') return { status: 405, body: '' }
    if (header(req.headers, 'x-forwarded-for') !== undefined) return { status: 403, body: '' }
    const ttl = Number(header(req.headers, 'x-aws-ec2-metadata-token-ttl-seconds'))
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) return { status: 400, body: '' }
    const token = randomBytes(24).toString('base64url')
    t.tokens.set(token, now + ttl * 1000)
    for (const [k, exp] of t.tokens) if (exp <= now) t.tokens.delete(k)
    return { status: 200, body: token, headers: { 'x-aws-ec2-metadata-token-ttl-seconds': String(ttl) } }
  }
  if (!req.path.startsWith('/latest/meta-data')) return { status: 404, body: '' }
  if (req.method !== 'GET' && req.method !== 'HEAD') return { status: 405, body: '' }
  const token = header(req.headers, 'x-aws-ec2-metadata-token')
  const exp = token !== undefined ? t.tokens.get(token) : undefined
  if (exp === undefined || exp <= now) return { status: 401, body: '' }
  const key = req.path.replace(/^\/latest\/meta-data\/?/, '').replace(/\/$/, '')
  const docs = metadataOf(inst)
  const doc = docs[key]
  if (doc !== undefined) return { status: 200, body: doc }
  // A directory: its entries (sub-directories with a trailing slash).
  const prefix = key === '' ? '' : `${key}/`
  const entries = new Set(Object.keys(docs).filter(k => k.startsWith(prefix)).map(k => { const rest = k.slice(prefix.length); const i = rest.indexOf('/'); return i < 0 ? rest : rest.slice(0, i + 1) }))
  if (entries.size === 0) return { status: 404, body: '' }
  return { status: 200, body: [...entries].sort().join('\n') }
}

/** An HTTP handler answering for `inst` (also used on TCP loopback by unit tests). */
export function imdsHandler (inst: FakeInstance, tokens: ImdsTokens = { tokens: new Map() }): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    req.resume()
    req.on('end', () => {
      const a = imdsAnswer(inst, tokens, { method: req.method ?? 'GET', path: new URL(req.url ?? '/', 'http://imds').pathname, headers: req.headers })
      res.writeHead(a.status, { 'content-type': 'text/plain', ...(a.headers ?? {}) })
      res.end(req.method === 'HEAD' ? undefined : a.body)
    })
  }
}

/**
 * Serves `inst`'s metadata at http://169.254.169.254 in namespace `ns`: an HTTP server on the
 * unix socket `socketPath`, the address on the namespace's loopback, and a socat forwarder in
 * the namespace. Returns its close (the socat goes with the namespace).
 */
export async function serveImds (inst: FakeInstance, ns: string, socketPath: string): Promise<{ close: () => Promise<void> }> {
  await rm(socketPath, { force: true })
  const server: Server = createServer(imdsHandler(inst))
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(socketPath, () => resolve()) })
  await run(['ip', '-n', ns, 'addr', 'replace', `${IMDS_ADDRESS}/32`, 'dev', 'lo'])
  const fwd = spawn('ip', ['netns', 'exec', ns, 'socat', `TCP-LISTEN:80,bind=${IMDS_ADDRESS},fork,reuseaddr`, `UNIX-CONNECT:${socketPath}`], { stdio: 'ignore', detached: true })
  fwd.unref()
  fwd.on('error', () => {})
  return {
    close: async () => {
      if (fwd.exitCode === null && fwd.pid !== undefined) { try { process.kill(fwd.pid) } catch { /* gone with its namespace */ } }
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
      await rm(socketPath, { force: true })
    }
  }
}
