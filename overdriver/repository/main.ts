/**
 * Runs a page repository as its own process:
 *   node --import tsx overdriver/repository/main.ts --port 7709 [--host 198.18.1.10]
 *        --capacity 256M --admin-token-file <file> [--psk-file <file>]
 * The admin token (32 hex digits) is read from the file, or generated and written there
 * (mode 0600) when the file does not exist. With --psk-file the repository speaks TLS-PSK only
 * (./transport.ts): the file holds `identity:hexkey` (QEMU's keys.psk format), read, or drawn
 * and written (0600) when missing; clients need the same file (swapd.ts --psk-file). Without
 * it, clear TCP (tests of the protocol, the benchmark's "TLS off" leg). Prints one JSON line
 * when listening:
 *   {"listening":{"host":"…","port":7709},"capacityPages":65536,"tls":"tls-psk"|"clear"}
 * SIGTERM/SIGINT close it.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { PAGE_SIZE } from '../constants.ts'
import { parseSize } from '../../core/units.ts'
import { PageRepository } from './server.ts'
import { newRepositoryTls, parsePskFile, pskListener } from './transport.ts'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '7709' },
    host: { type: 'string', default: '127.0.0.1' },
    capacity: { type: 'string', default: '64M' },
    'admin-token-file': { type: 'string' },
    'psk-file': { type: 'string' }
  }
})
const file = values['admin-token-file']
let token: Buffer
if (file !== undefined && existsSync(file)) {
  const hex = readFileSync(file, 'utf8').trim()
  if (!/^[0-9a-f]{32}$/.test(hex)) { process.stderr.write(`${file}: expected 32 hex digits\n`); process.exit(2) }
  token = Buffer.from(hex, 'hex')
} else {
  token = randomBytes(16)
  if (file !== undefined) writeFileSync(file, token.toString('hex') + '\n', { mode: 0o600 })
}
const pskFile = values['psk-file']
let listener
if (pskFile !== undefined) {
  try {
    if (!existsSync(pskFile)) { const t = newRepositoryTls(); writeFileSync(pskFile, `${t.identity}:${t.key}\n`, { mode: 0o600 }) }
    listener = pskListener(parsePskFile(readFileSync(pskFile, 'utf8')))
  } catch (e) { process.stderr.write(`${pskFile}: ${(e as Error).message}\n`); process.exit(2) }
}
const capacityPages = Math.floor(parseSize(values.capacity ?? '64M') / PAGE_SIZE)
const repo = new PageRepository({ capacityPages, adminToken: token, ...(listener !== undefined ? { listener } : {}), onEvent: e => { if (e.type === 'repository.rejected') process.stderr.write(`${JSON.stringify(e)}\n`) } })
const port = await repo.listen(Number(values.port), values.host)
process.stdout.write(JSON.stringify({ listening: { host: values.host, port }, capacityPages, tls: listener?.kind ?? 'clear' }) + '\n')
const stop = (): void => { void repo.close().then(() => process.exit(0)) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
