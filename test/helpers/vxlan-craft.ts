/**
 * An attacker's VXLAN frame: a VXLAN header with a chosen VNI around an Ethernet frame carrying
 * one netprobe datagram (UDP, "NPRB" + sequence number) to a guest's MAC and address, so a
 * `netprobe recv` in the guest counts what got through. Run as a script it sends `count` of them
 * to `<host>:4789` from wherever it runs (an outsider namespace, a host's namespace):
 *   node --import tsx test/helpers/vxlan-craft.ts <host> <vni> <dstMac> <srcIp> <dstIp> <port> [count]
 */
import { createSocket } from 'node:dgram'

function ipBytes (ip: string): number[] {
  return ip.split('.').map(Number)
}

function checksum (b: Buffer): number {
  let sum = 0
  for (let i = 0; i < b.length; i += 2) sum += (b[i] ?? 0) << 8 | (b[i + 1] ?? 0)
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}

export interface CraftedProbe { vni: number, dstMac: string, srcIp: string, dstIp: string, port: number, seq: number }

/** The UDP payload to send to a VXLAN port: VXLAN header + inner Ethernet/IPv4/UDP/netprobe. */
export function craftVxlanProbe (p: CraftedProbe): Buffer {
  const payload = Buffer.alloc(16)
  payload.write('NPRB', 0, 'latin1')
  payload.writeUInt32BE(p.seq, 4)
  const udp = Buffer.alloc(8)
  udp.writeUInt16BE(40000, 0)
  udp.writeUInt16BE(p.port, 2)
  udp.writeUInt16BE(8 + payload.length, 4) // checksum 0: none (IPv4)
  const ip = Buffer.from([0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, ...ipBytes(p.srcIp), ...ipBytes(p.dstIp)])
  ip.writeUInt16BE(20 + udp.length + payload.length, 2)
  ip.writeUInt16BE(checksum(ip), 10)
  const eth = Buffer.from([...p.dstMac.split(':').map(h => parseInt(h, 16)), 0x02, 0, 0, 0, 0, 0x99, 0x08, 0x00])
  const vxlan = Buffer.from([0x08, 0, 0, 0, (p.vni >>> 16) & 0xff, (p.vni >>> 8) & 0xff, p.vni & 0xff, 0])
  return Buffer.concat([vxlan, eth, ip, udp, payload])
}

async function main (argv: string[]): Promise<void> {
  const [host, vni, dstMac, srcIp, dstIp, port, count] = argv
  const sock = createSocket('udp4')
  const n = Number(count ?? '10')
  for (let seq = 0; seq < n; seq++) {
    const frame = craftVxlanProbe({ vni: Number(vni), dstMac: dstMac ?? '', srcIp: srcIp ?? '', dstIp: dstIp ?? '', port: Number(port), seq })
    await new Promise<void>((resolve, reject) => { sock.send(frame, 4789, host, err => { if (err !== null) reject(err); else resolve() }) })
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  sock.close()
}

if (process.argv[1] !== undefined && import.meta.filename === process.argv[1]) await main(process.argv.slice(2))
