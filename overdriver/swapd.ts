/**
 * Runs one VM's swap export (SwapService) as its own process, with a control socket:
 *   node --import tsx overdriver/swapd.ts --vm web1 --disk <file> [--size 256M]
 *        --socket <nbd.sock> --control <ctl.sock> [--repository host:port=<capability hex>]...
 *        [--psk-file <file>] [--cooperative]
 * --psk-file: reach the repositories over TLS-PSK with the credential in the file
 * (`identity:hexkey`, as repository/main.ts --psk-file writes it); without it, clear TCP.
 * Prints one JSON line {"ready": {...}} when QEMU may connect. The control socket takes one
 * JSON object per line and answers one line each:
 *   {"op":"stats"}  {"op":"cooperative","on":true|false}  {"op":"reclaim"}  {"op":"table"}
 *   {"op":"stop"}
 * Malformed control lines get {"error": "..."}; SIGTERM stops it (the sector table is saved).
 */
import { createServer } from 'node:net'
import { rm } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { parseSize } from '../core/units.ts'
import { readFileSync } from 'node:fs'
import { parseAddress } from './repository/client.ts'
import { parsePskFile, pskConnector } from './repository/transport.ts'
import { SwapService } from './swap-service.ts'

const { values } = parseArgs({
  options: {
    vm: { type: 'string' },
    disk: { type: 'string' },
    size: { type: 'string' },
    socket: { type: 'string' },
    control: { type: 'string' },
    repository: { type: 'string', multiple: true, default: [] },
    'psk-file': { type: 'string' },
    cooperative: { type: 'boolean', default: false }
  }
})
const need = (k: 'vm' | 'disk' | 'socket' | 'control'): string => {
  const v = values[k]
  if (v === undefined) { process.stderr.write(`swapd: --${k} is required\n`); process.exit(2) }
  return v
}
const repositories = (values.repository ?? []).map(r => {
  const m = /^(.+)=([0-9a-f]{32})$/.exec(r)
  if (m === null) { process.stderr.write(`swapd: --repository expects host:port=<32 hex digits>, got '${r}'\n`); process.exit(2) }
  return { address: parseAddress(m[1] ?? ''), capability: Buffer.from(m[2] ?? '', 'hex') }
})
let connector
if (values['psk-file'] !== undefined) {
  try {
    const tls = parsePskFile(readFileSync(values['psk-file'], 'utf8'))
    connector = pskConnector(() => tls)
  } catch (e) { process.stderr.write(`swapd: ${values['psk-file']}: ${(e as Error).message}\n`); process.exit(2) }
}
const svc = await SwapService.start({
  vm: need('vm'),
  diskPath: need('disk'),
  ...(values.size !== undefined ? { sizeBytes: parseSize(values.size) } : {}),
  listen: { path: need('socket') },
  repositories,
  cooperative: values.cooperative ?? false,
  ...(connector !== undefined ? { connector } : {}),
  onEvent: e => { if (e.type !== 'nbd.connected' && e.type !== 'nbd.export-opened') process.stderr.write(JSON.stringify(e) + '\n') }
})
const controlPath = need('control')
await rm(controlPath, { force: true })
let stopping = false
const stop = async (): Promise<void> => {
  if (stopping) return
  stopping = true
  control.close()
  await svc.stop()
  await rm(controlPath, { force: true })
  process.exit(0)
}
const control = createServer(sock => {
  let buf = ''
  sock.on('error', () => {})
  sock.on('data', d => {
    buf += d.toString('utf8')
    if (buf.length > 65536) { sock.end(JSON.stringify({ error: 'line too long' }) + '\n'); return }
    let nl: number
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      void handle(line).then(r => sock.write(JSON.stringify(r) + '\n'), (e: Error) => sock.write(JSON.stringify({ error: e.message }) + '\n'))
    }
  })
})
async function handle (line: string): Promise<unknown> {
  let req: { op?: unknown, on?: unknown }
  try { req = JSON.parse(line) as typeof req } catch { return { error: 'not JSON' } }
  switch (req.op) {
    case 'stats': return svc.stats()
    case 'cooperative':
      if (typeof req.on !== 'boolean') return { error: 'cooperative needs "on": true|false' }
      svc.setCooperative(req.on)
      return { ok: true, cooperative: req.on }
    case 'reclaim': return { ok: true, pages: await svc.path.reclaim() }
    case 'table': return await svc.path.exportTable()
    case 'stop': setImmediate(() => { void stop() }); return { ok: true }
    default: return { error: `unknown op ${JSON.stringify(req.op)}` }
  }
}
await new Promise<void>(resolve => control.listen(controlPath, resolve))
process.on('SIGTERM', () => { void stop() })
process.on('SIGINT', () => { void stop() })
process.stdout.write(JSON.stringify({ ready: { vm: svc.vm, socket: values.socket, control: controlPath, pid: process.pid } }) + '\n')
