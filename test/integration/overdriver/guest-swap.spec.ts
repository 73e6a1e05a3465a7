/**
 * A real guest swapping onto our NBD export: the tiny image booted with 96 MiB and a swap
 * disk attached through QEMU's NBD client (-blockdev nbd over a unix socket), memload
 * touching 128 MiB. The server counts the paging; cooperative swap puts pages in a
 * repository; memload's own verification proves nothing was corrupted. Then the swap
 * server (as the agent would run it) is killed and restarted mid-run, and the repository
 * process is killed mid-run: the guest keeps running and memload still verifies.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { buildTinyImage } from '../../../images/guest/build.ts'
import { guestCmdline, guestReadyLine } from '../../../images/guest/cmdline.ts'
import { PageRepository } from '../../../overdriver/repository/server.ts'
import { RepositoryClient } from '../../../overdriver/repository/client.ts'
import { qemuSwapArgs, SwapService } from '../../../overdriver/swap-service.ts'
import { BOOT_TIMEOUT_MS, haveQemu, qemuArgs, SerialGuest } from '../images/serial-guest.ts'
import { killHard, prefix, startNode, tempDir } from './helpers.ts'

const MiB = 1024 * 1024

/** qemuArgs() from the image tests with the memory lowered to `mb`. */
function smallGuestArgs (img: Awaited<ReturnType<typeof buildTinyImage>>, append: string, extra: string[], mb: number): string[] {
  const args = qemuArgs(img, append, extra)
  const i = args.indexOf('-m')
  args[i + 1] = String(mb)
  return args
}

t.test('guest swaps onto the NBD export with cooperative swap; paging counted, memload verifies', { skip: haveQemu ? false : 'qemu-system-x86_64 missing' }, async t => {
  const dir = tempDir(t, 'guest')
  const img = await buildTinyImage({ cacheDir: join(dir, 'cache') })
  const repo = new PageRepository({ capacityPages: (256 * MiB) / 4096 })
  const rport = await repo.listen(0)
  t.teardown(() => repo.close())
  const sock = join(dir, 'swap.sock')
  const svc = await SwapService.start({ vm: `${prefix}-g1`, diskPath: join(dir, 'swap.img'), sizeBytes: 256 * MiB, listen: { path: sock }, repositories: [{ address: { host: '127.0.0.1', port: rport }, capability: repo.issue('g1') }], cooperative: true })
  t.teardown(() => svc.stop())
  const name = `${prefix}-g1`
  const guest = new SerialGuest(name, 'qemu-system-x86_64', smallGuestArgs(img, guestCmdline({ name, nics: [], swapDevice: '/dev/vda' }), qemuSwapArgs({ socketPath: sock }), 96))
  t.teardown(() => guest.kill())
  await guest.waitFor(new RegExp(`^${guestReadyLine(name)}$`, 'm'), BOOT_TIMEOUT_MS)
  await guest.prompt(30_000)
  const swaps = await guest.run('cat /proc/swaps', /^\/dev\/vda\s+\S+\s+(\d+)\s/m)
  t.ok(Number(swaps[1]) > 200_000, `/dev/vda (our NBD export) is swap: ${swaps[1]} KiB`)
  const before = svc.counters()
  const m = await guest.run('memload --mb 128 --verify; echo rc=$?', /rc=(\d+)\r?\n/, 600_000)
  t.equal(m[1], '0', 'memload exits 0')
  t.match(guest.output, /verify ok pages=32768/, 'memload verified all 128 MiB')
  const after = svc.counters()
  t.ok(after.writePages - before.writePages > 0, `swap-outs counted: ${after.writePages - before.writePages} pages`)
  t.ok(after.readPages - before.readPages > 0, `swap-ins counted: ${after.readPages - before.readPages} pages`)
  await svc.path.settle()
  const s = svc.path.stats()
  t.ok(s.repositoryWrites > 0 && repo.stats().usedPages > 0, `cooperative swap put ${repo.stats().usedPages} pages in the repository`)
  t.ok(s.repositoryReads > 0, `${s.repositoryReads} swap-ins served from the repository`)
})

t.test('swap server restarted and repository killed while the guest swaps: the guest keeps running, memload verifies', { skip: haveQemu ? false : 'qemu-system-x86_64 missing' }, async t => {
  const dir = tempDir(t, 'guest2')
  const img = await buildTinyImage({ cacheDir: join(dir, 'cache') })
  const tokenFile = join(dir, 'admin.token')
  const r = await startNode(t, 'overdriver/repository/main.ts', ['--port', '0', '--capacity', '256M', '--admin-token-file', tokenFile])
  const rport = (r.first.listening as { port: number }).port
  const admin = await RepositoryClient.connect({ host: '127.0.0.1', port: rport })
  const cap = await admin.issue(Buffer.from(readFileSync(tokenFile, 'utf8').trim(), 'hex'), 'g2')
  admin.close()
  const sock = join(dir, 'swap.sock')
  const ctl = join(dir, 'ctl.sock')
  const args = ['--vm', 'g2', '--disk', join(dir, 'swap.img'), '--size', '256M', '--socket', sock, '--control', ctl, '--repository', `127.0.0.1:${rport}=${cap.toString('hex')}`, '--cooperative']
  const stats = (): Promise<{ counters: { writePages: number, readPages: number }, coopswap: { pagesInRepositories: number, repositoryReads: number } }> => new Promise((resolve, reject) => {
    const s = connect(ctl)
    let out = ''
    s.on('data', d => { out += d.toString(); if (out.includes('\n')) { s.destroy(); resolve(JSON.parse(out)) } })
    s.on('error', reject)
    s.write('{"op":"stats"}\n')
  })
  let swapd = await startNode(t, 'overdriver/swapd.ts', args)
  const name = `${prefix}-g2`
  const guest = new SerialGuest(name, 'qemu-system-x86_64', smallGuestArgs(img, guestCmdline({ name, nics: [], swapDevice: '/dev/vda' }), qemuSwapArgs({ socketPath: sock, reconnectDelaySec: 60 }), 96))
  t.teardown(() => guest.kill())
  await guest.waitFor(new RegExp(`^${guestReadyLine(name)}$`, 'm'), BOOT_TIMEOUT_MS)
  await guest.prompt(30_000)
  // Keep rewriting a 128 MiB working set for a while, then verify it.
  const from = guest.mark()
  guest.proc.stdin?.write('memload --mb 128 --seconds 40 --verify; echo rc=$?\n')
  await guest.waitFor(/memload t=\d+/, 300_000, from)
  let s = await stats()
  for (let i = 0; i < 60 && s.coopswap.pagesInRepositories === 0; i++) { await new Promise(resolve => setTimeout(resolve, 500)); s = await stats() }
  t.ok(s.coopswap.pagesInRepositories > 0, `pages in the repository before the restart: ${s.coopswap.pagesInRepositories}`)
  // The agent dies (kill -9) and comes back: QEMU's NBD client reconnects.
  await killHard(swapd.proc)
  await new Promise(resolve => setTimeout(resolve, 1000))
  swapd = await startNode(t, 'overdriver/swapd.ts', args)
  s = await stats()
  t.ok(s.coopswap.pagesInRepositories > 0, `sector table resumed with ${s.coopswap.pagesInRepositories} repository pages`)
  // Now the repository host dies while it holds pages.
  await new Promise(resolve => setTimeout(resolve, 3000))
  await killHard(r.proc)
  const m = await guest.waitFor(/rc=(\d+)\r?\n/, 600_000, from)
  t.equal(m[1], '0', 'memload exits 0')
  t.match(guest.output.slice(from), /verify ok pages=32768/, 'memload verified all 128 MiB after both failures')
  const end = await stats()
  t.ok(end.counters.writePages > 0 && end.counters.readPages > 0, `restarted server counted paging (${end.counters.writePages} out, ${end.counters.readPages} in)`)
  await guest.prompt(30_000, from)
  const alive = await guest.run('echo still-$((40+2))', /still-42/)
  t.ok(alive, 'guest still answers')
})
