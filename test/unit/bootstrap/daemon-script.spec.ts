/**
 * The script that starts a Blanket daemon on a host waits by the clock while the daemon lives,
 * reports a daemon that died at once with its log, and gives up on one that never serves.
 * Run by the shells a host may have (bash, dash).
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { daemonStartScript, type DaemonStart } from '../../../blanket-manager/bootstrap/daemon-script.ts'

function runScript (shell: string, o: Partial<DaemonStart> & { command: string }): Promise<{ code: number, stderr: string, ms: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'sc-daemon-'))
  const script = daemonStartScript({ dir, pidFile: 'd.pid', prepare: [], log: 'd.log', ready: 'test -e ready', what: 'test daemon', ...o })
  const t0 = Date.now()
  return new Promise(resolve => {
    execFile(shell, ['-c', script], (err, _out, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      // The daemons started here sleep at most a few seconds; leave them to end on their own.
      setTimeout(() => rmSync(dir, { recursive: true, force: true }), 6000).unref()
      resolve({ code, stderr, ms: Date.now() - t0 })
    })
  })
}

for (const shell of ['bash', 'dash']) {
  t.test(`${shell}: a daemon that takes 1.5 s to serve is waited for`, async t => {
    const r = await runScript(shell, { command: "sh -c 'sleep 1.5; touch ready; sleep 3'", readySeconds: 10 })
    t.equal(r.code, 0, r.stderr)
    t.ok(r.ms >= 1400, `waited ${r.ms} ms`)
  })
  t.test(`${shell}: a daemon that exits is reported at once, with its log`, async t => {
    const r = await runScript(shell, { command: "sh -c 'echo boom: bad flag; exit 3'", readySeconds: 30 })
    t.equal(r.code, 1)
    t.match(r.stderr, /test daemon exited before it served/)
    t.match(r.stderr, /boom: bad flag/)
    t.ok(r.ms < 10000, `reported after ${r.ms} ms, not after the 30 s deadline`)
  })
  t.test(`${shell}: a daemon that lives but never serves is given up after readySeconds`, async t => {
    const r = await runScript(shell, { command: "sh -c 'echo still starting; sleep 5'", readySeconds: 2 })
    t.equal(r.code, 1)
    t.match(r.stderr, /test daemon did not serve within 2 s/)
    t.match(r.stderr, /still starting/)
    t.ok(r.ms >= 1000 && r.ms < 4500, `gave up after ${r.ms} ms (the clock counts whole seconds)`)
  })
}
