/**
 * Client of the EC2 instance metadata service (IMDSv2), as an instance reads its own: a
 * session token (`PUT /latest/api/token`, TTL header), kept and renewed before it expires or
 * when the service answers 401, then `GET /latest/meta-data/...` with the token. What the
 * host agent polls for spot reclaims: `spot/instance-action` (404 until EC2 interrupts the
 * instance) and `events/recommendations/rebalance` (404 until a rebalance recommendation).
 *
 * The base URL is http://169.254.169.254 on EC2 (and on the fake server's instances, which
 * serve it at the same address in their namespace: fake-server/imds.ts).
 */
import { Ec2Error } from './errors.ts'
import { spotInterruptionEvent } from './plan.ts'

export const IMDS_URL = 'http://169.254.169.254'

/** The metadata service answered something unexpected or not at all. */
export class ImdsError extends Ec2Error {
  constructor (message: string) { super('SC_EC2_IMDS', `instance metadata: ${message}`) }
}

export interface ImdsClientOptions {
  baseUrl?: string
  /** Token lifetime asked for (s); default 300. */
  tokenTtlSeconds?: number
  /** Per-request timeout; default 2000 ms. */
  timeoutMs?: number
  now?: () => number
}

/** A spot interruption notice: EC2 will act at `time`. */
export interface InstanceAction { action: 'terminate' | 'stop' | 'hibernate', time: string }
/** A rebalance recommendation: the instance is at elevated risk of interruption. */
export interface RebalanceRecommendation { noticeTime: string }

export class ImdsClient {
  private token?: { value: string, renewAt: number }
  private readonly base: string
  private readonly ttl: number
  private readonly timeoutMs: number
  private readonly now: () => number

  constructor (opts: ImdsClientOptions = {}) {
    this.base = (opts.baseUrl ?? IMDS_URL).replace(/\/$/, '')
    this.ttl = opts.tokenTtlSeconds ?? 300
    this.timeoutMs = opts.timeoutMs ?? 2000
    this.now = opts.now ?? Date.now
  }

  private async fetch (path: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(`${this.base}${path}`, { ...init, signal: AbortSignal.timeout(this.timeoutMs) })
    } catch (err) {
      throw new ImdsError(`${init.method ?? 'GET'} ${this.base}${path}: ${(err as Error).message}`)
    }
  }

  private async session (): Promise<string> {
    if (this.token !== undefined && this.now() < this.token.renewAt) return this.token.value
    const r = await this.fetch('/latest/api/token', { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': String(this.ttl) } })
    if (r.status !== 200) throw new ImdsError(`token request answered ${r.status}`)
    const value = (await r.text()).trim()
    // Renewed when 80% of its life is gone (clock skew and slow answers stay inside it).
    this.token = { value, renewAt: this.now() + this.ttl * 800 }
    return value
  }

  /** A metadata document (path under /latest/meta-data/), or undefined when it does not exist (404). */
  async get (path: string): Promise<string | undefined> {
    for (let attempt = 0; ; attempt++) {
      const token = await this.session()
      const r = await this.fetch(`/latest/meta-data/${path}`, { headers: { 'x-aws-ec2-metadata-token': token } })
      if (r.status === 200) return await r.text()
      await r.body?.cancel()
      if (r.status === 404) return undefined
      if (r.status === 401 && attempt === 0) { this.token = undefined; continue }
      throw new ImdsError(`GET ${path} answered ${r.status}`)
    }
  }

  /** The spot interruption notice, when EC2 gave one. */
  async instanceAction (): Promise<InstanceAction | undefined> {
    const text = await this.get('spot/instance-action')
    if (text === undefined) return undefined
    const ev = spotInterruptionEvent('-', text)
    if (ev === undefined) throw new ImdsError(`spot/instance-action is not a notice: ${text.slice(0, 200)}`)
    return { action: ev.action, time: ev.at }
  }

  /** The rebalance recommendation, when EC2 gave one. */
  async rebalance (): Promise<RebalanceRecommendation | undefined> {
    const text = await this.get('events/recommendations/rebalance')
    if (text === undefined) return undefined
    return { noticeTime: parseRebalance(text) ?? new Date(this.now()).toISOString() }
  }
}

/** `{"noticeTime": "2020-11-05T08:22:00Z"}` → the ISO time; undefined when not such a document. */
export function parseRebalance (text: string): string | undefined {
  try {
    const j = JSON.parse(text) as { noticeTime?: unknown }
    if (typeof j.noticeTime !== 'string' || Number.isNaN(Date.parse(j.noticeTime))) return undefined
    return new Date(j.noticeTime).toISOString()
  } catch { return undefined }
}
