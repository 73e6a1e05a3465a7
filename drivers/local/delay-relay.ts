/**
 * WAN delay relay: runs in the WAN namespace. socat moves packets between the delay TUN
 * and UDP on loopback; this program receives each packet, holds it `--delay` ms and
 * sends it back to where it came from (socat), which writes it into the TUN again so
 * the kernel routes it on to the destination site.
 *
 *   node --import tsx delay-relay.ts --listen <port> --delay <ms> [--tag <prefix>]
 */
import { createSocket, type RemoteInfo } from 'node:dgram'
import { performance } from 'node:perf_hooks'
import { DelayQueue } from './delay-queue.ts'

interface Packet { length: number, data: Buffer, to: RemoteInfo }

function arg (name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

const port = Number(arg('listen'))
const delayMs = Number(arg('delay'))
if (!Number.isInteger(port) || !(delayMs >= 0)) {
  process.stderr.write('usage: delay-relay --listen <port> --delay <ms> [--tag <prefix>]\n')
  process.exit(2)
}

const queue = new DelayQueue<Packet>(delayMs)
const sock = createSocket('udp4')
let timer: NodeJS.Timeout | undefined

function flush (): void {
  timer = undefined
  for (const p of queue.takeDue(performance.now())) sock.send(p.data, p.to.port, p.to.address)
  schedule()
}

function schedule (): void {
  if (timer !== undefined) return
  const due = queue.nextDue()
  if (due === undefined) return
  timer = setTimeout(flush, Math.max(0, due - performance.now()))
}

sock.on('message', (data, rinfo) => {
  queue.push({ length: data.length, data, to: rinfo }, performance.now())
  schedule()
})
sock.on('error', err => {
  process.stderr.write(`delay-relay: ${err.message}\n`)
  process.exit(1)
})
sock.bind(port, '127.0.0.1', () => {
  process.stdout.write(`delay-relay listening on 127.0.0.1:${port}, delay ${delayMs} ms\n`)
})
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => { sock.close(); process.exit(0) })
