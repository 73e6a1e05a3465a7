/**
 * Pure parts of Xen live migration (drivers/xen/migration-plan.ts): the commands of both ends,
 * the detached runner and its poll (run for real with the local sh: they are shell), and the
 * parsers, against logs xl 4.17 wrote in a real migration between two Xen hosts.
 */
import t from 'tap'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  checkEndpoint, detachedArgv, incomingName, isListening, killGroupArgv, migratedAwayName, operatorLog, parsePoll, pastPointOfNoReturn,
  pollArgv, receiverArgv, sendOutcome, sendProgressOf, senderArgv, senderRune, xenMigrationPaths, receiverStartedDomain
} from '../../../drivers/xen/migration-plan.ts'

const fixture = (f: string): string => readFileSync(join(import.meta.dirname, 'fixtures', f), 'utf8')
/** Runs an argv the way XenExecutor.run would (here, locally). */
const run = (argv: string[]): string => execFileSync(argv[0] ?? '', argv.slice(1), { encoding: 'utf8' })
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const dir = mkdtempSync(join(tmpdir(), 'sc-xenmig-'))
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })

t.test('receiver: one connection on the address, handed to xl migrate-receive -p (paused on arrival)', async t => {
  t.same(receiverArgv({ xl: 'xl', listenIp: '198.18.240.3', port: 8002 }),
    ['socat', 'TCP4-LISTEN:8002,bind=198.18.240.3,reuseaddr', 'EXEC:xl migrate-receive -p,nofork'])
  t.same(receiverArgv({ xl: '/usr/sbin/xl', listenIp: 'fd00::3', port: 9000 })[1], 'TCP6-LISTEN:9000,bind=[fd00::3],reuseaddr,ipv6only=1')
  t.throws(() => receiverArgv({ xl: 'xl', listenIp: 'host.example', port: 8002 }), /not an IP address/)
  t.throws(() => receiverArgv({ xl: 'xl', listenIp: '198.18.0.1', port: 70000 }), /out of range/)
  t.throws(() => receiverArgv({ xl: 'x l', listenIp: '198.18.0.1', port: 1 }), /socat EXEC/)
  t.equal(checkEndpoint('198.18.0.1', 1), 4)
})

t.test('sender: xl -vvv migrate with an empty -s runs the rune as the transport', async t => {
  const paths = xenMigrationPaths('/run/sc/g 1')
  const rune = senderRune({ destIp: '198.18.240.3', port: 8002, streamPidFile: paths.sendStreamPid })
  t.equal(rune, "echo $$ > '/run/sc/g 1/migrate-send-stream.pid'; exec socat -b 262144 - TCP4:198.18.240.3:8002")
  t.same(senderArgv({ xl: 'xl', name: 'g1', configFile: paths.sendConfig, rune }), ['xl', '-vvv', 'migrate', '-s', '', '-C', '/run/sc/g 1/migrate-send.cfg', 'g1', rune])
  t.match(senderRune({ destIp: 'fd00::3', port: 8002, streamPidFile: '/p' }), /TCP6:\[fd00::3\]:8002$/)
  t.equal(incomingName('g1'), 'g1--incoming')
  t.equal(migratedAwayName('g1'), 'g1--migratedaway')
})

t.test('the rune carries a stream both ways and records the socat pid', async t => {
  const received: Buffer[] = []
  const server = createServer(sock => {
    sock.write('banner\n')
    sock.on('data', d => received.push(d))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const port = (server.address() as { port: number }).port
  const pidf = join(dir, 'stream.pid')
  const rune = senderRune({ destIp: '127.0.0.1', port, streamPidFile: pidf })
  const payload = Buffer.alloc(3 * 1024 * 1024 + 5, 7)
  // Async: the listener lives in this process.
  const r = await new Promise<{ code: number | null, stdout: string, stderr: string }>(resolve => {
    const child = spawn('sh', ['-c', `head -c ${payload.length} /dev/zero | { ${rune}; }`])
    let stdout = ''; let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.on('close', code => { resolve({ code, stdout, stderr }) })
  })
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, 'banner\n', 'the receiver\'s replies come back on stdout')
  for (let i = 0; i < 50 && Buffer.concat(received).length < payload.length; i++) await sleep(100)
  t.equal(Buffer.concat(received).length, payload.length, 'every byte arrived')
  t.match(readFileSync(pidf, 'utf8'), /^\d+\n$/, 'pid of the socat')
})

t.test('detached run: exit status, log and liveness through the poll; the group can be killed', async t => {
  const f = { log: join(dir, 'a.log'), pid: join(dir, 'a.pid'), rc: join(dir, 'a.rc') }
  run(detachedArgv({ argv: ['sh', '-c', 'echo first >&2; sleep 0.3; echo "second line" >&2; exit 3'], ...f }))
  let st = parsePoll(run(pollArgv({ ...f, offset: 0 })))
  for (let i = 0; i < 50 && st.rc === undefined; i++) {
    await sleep(100)
    st = parsePoll(run(pollArgv({ ...f, offset: 0 })))
  }
  t.equal(st.rc, 3)
  t.equal(st.alive, false)
  t.equal(st.log, 'first\nsecond line\n')
  const later = parsePoll(run(pollArgv({ ...f, offset: 'first\n'.length })))
  t.equal(later.log, 'second line\n', 'the log from an offset')

  const g = { log: join(dir, 'b.log'), pid: join(dir, 'b.pid'), rc: join(dir, 'b.rc') }
  run(detachedArgv({ argv: ['sh', '-c', 'sleep 30 & sleep 30; echo never >&2'], ...g }))
  await sleep(200)
  const running = parsePoll(run(pollArgv({ ...g, offset: 0 })))
  t.equal(running.alive, true)
  t.equal(running.rc, undefined)
  const pid = Number(readFileSync(g.pid, 'utf8'))
  run(killGroupArgv(g.pid))
  await sleep(200)
  const members = spawnSync('sh', ['-c', `ps -eo pgid= | grep -c "^ *${pid}$"`], { encoding: 'utf8' }).stdout.trim()
  t.equal(members, '0', 'the whole process group is gone')
  const gone = parsePoll(run(pollArgv({ ...g, offset: 0 })))
  t.equal(gone.alive, false)
  t.equal(gone.rc, undefined, 'killed: no exit status')
})

t.test('poll output with stream io', async t => {
  const st = parsePoll('rc=\nalive=1\nio=rchar: 1048576 wchar: 1040000 \n--log--\nxc: info: Saving domain 2\n')
  t.same(st, { alive: true, io: { rchar: 1048576, wchar: 1040000 }, log: 'xc: info: Saving domain 2\n' })
  const end = parsePoll('rc=0\nalive=0\nio=\n--log--\n')
  t.same(end, { rc: 0, alive: false, log: '' })
  const self = parsePoll(run(pollArgv({ pid: join(dir, 'none.pid'), rc: join(dir, 'none.rc'), log: join(dir, 'none.log'), offset: 0, streamPid: '/proc/self/stat-not-a-pid' })))
  t.same(self, { alive: false, log: '' }, 'nothing there yet')
})

t.test('listening socket from /proc/net/tcp (as the dom0 showed it)', async t => {
  const tcp = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 03F012C6:1F42 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 10069 1 00000000258d5559 100 0 0 10 0',
    '   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9958 1 00000000bcb98c22 100 0 0 10 0',
    '   2: 03F012C6:0016 01F012C6:DD2E 01 00000000:00000000 02:000AFBE9 00000000     0        0 10042 2 000000006d483b75 21 4 13 10 -1'
  ].join('\n')
  t.ok(isListening(tcp, '198.18.240.3', 8002))
  t.notOk(isListening(tcp, '198.18.240.2', 8002), 'another address')
  t.notOk(isListening(tcp, '198.18.240.3', 8003), 'another port')
  t.ok(isListening(tcp, '198.18.240.3', 22), 'a wildcard listener counts')
  t.notOk(isListening(tcp.replace(' 0A ', ' 01 '), '198.18.240.3', 8002), 'an established socket is not listening')
  const tcp6 = '   0: 000000FD000000000000000003000000:1F42 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1'
  t.ok(isListening(tcp6, 'fd00::3', 8002))
  t.notOk(isListening(tcp6, 'fd00::4', 8002))
})

t.test('progress and outcome of a successful xl migrate (Xen 4.17, -vvv)', async t => {
  const log = fixture('xl-migrate-success.txt')
  const events = log.split('\n').map(sendProgressOf).filter(e => e !== undefined)
  t.same(events.map(e => e.phase), ['memory', 'switchover', 'switchover', 'switchover', 'handover', 'arrived'])
  t.equal(events[0]?.iteration, 0)
  t.same(sendOutcome(log, 0).kind, 'success')
  t.equal(sendOutcome(log, 1).kind, 'unknown', 'success needs exit status 0 too')
  t.ok(pastPointOfNoReturn(log))
  const op = operatorLog(log)
  t.notMatch(op, /libxl: debug/, 'no debug chatter for the operator')
  t.match(op, /Migration successful\./)
})

t.test('outcome when the receiver died mid-stream: xl resumed the guest here', async t => {
  const log = fixture('xl-migrate-receiver-killed.txt')
  const o = sendOutcome(log, 1)
  t.equal(o.kind, 'resumed')
  t.match(o.tail, /Connection reset by peer/)
  t.notOk(pastPointOfNoReturn(log))
  t.equal(sendOutcome('migration sender: Target reports startup failure (status code 3).\nmigration sender: Trying to resume at our end.\nMigration failed due to problems at target.\n', 1).kind, 'target-failed')
  t.equal(sendOutcome('** Migration failed during final handshake **\nDomain state is now undefined !\n', 1).kind, 'handshake-failed')
  t.equal(sendOutcome('Migration failed, failed to suspend at sender.\n', 1).kind, 'suspend-timeout')
  t.equal(sendOutcome('', undefined).kind, 'unknown')
})

t.test('the receiver\'s log for an operator', async t => {
  const op = operatorLog(fixture('xl-migrate-receive-success.txt'))
  t.match(op, /migration target: Domain started successsfully\./)
})

t.test('receiverStartedDomain: the receiver\'s point of no return is xl\'s "Domain started" line', async t => {
  const upTo = (last: string): string => [
    'migration target: Ready to receive domain.',
    'Savefile contains xl domain config in JSON format',
    'xc: info: Restore successful',
    'migration target: Transfer complete, requesting permission to start domain.',
    'migration target: Got permission, starting domain.',
    last
  ].join('\n')
  t.ok(receiverStartedDomain(upTo('migration target: Domain started successsfully.')), 'xl 4.17 spelling')
  t.ok(receiverStartedDomain(upTo('migration target: Domain started successfully.')), 'a fixed spelling too')
  t.notOk(receiverStartedDomain(upTo('')), 'permission given is not enough: the rename or unpause can still fail')
  t.notOk(receiverStartedDomain('test: Domain started successsfully'), 'only xl\'s own line, at a line start')
})
