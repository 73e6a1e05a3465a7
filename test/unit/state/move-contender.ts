/**
 * One process contending for a VM's move lock, or for the supercloud lock as `up`/`down` take
 * it (vm-lock.spec.ts runs several): `move-contender.ts DIR WHAT GO_AT_MS HOLD_MS [die]`, WHAT
 * being `move:VM` (state/vm-lock.ts takeMoveLock, as `migrate` and serve's Overdriver loop take
 * it) or `up` (StateStore.lock). It waits until GO_AT_MS (epoch ms), tries, prints `got PID`, or
 * `refused PID CODE MESSAGE`; a winner holds it HOLD_MS and until the file DIR/release exists,
 * then exits (with `die`, kills itself with SIGKILL while holding it).
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { StateStore } from '../../../blanket-manager/state/store.ts'
import { takeMoveLock } from '../../../blanket-manager/state/vm-lock.ts'
import { SupercloudError } from '../../../core/errors.ts'

const [dir = '', what = '', goAt, hold, mode] = process.argv.slice(2)
const store = StateStore.open(dir)
await new Promise(resolve => setTimeout(resolve, Math.max(0, Number(goAt) - Date.now())))
try {
  if (what === 'up') store.lock()
  else await takeMoveLock(dir, store.path, what.replace(/^move:/, ''), { waitMs: 1000 })
  process.stdout.write(`got ${process.pid}\n`)
  await new Promise(resolve => setTimeout(resolve, Number(hold)))
  while (mode !== 'die' && !existsSync(join(dir, 'release'))) await new Promise(resolve => setTimeout(resolve, 50))
  if (mode === 'die') process.kill(process.pid, 'SIGKILL')
} catch (err) {
  if (!(err instanceof SupercloudError)) throw err
  process.stdout.write(`refused ${process.pid} ${err.code} ${err.message}\n`)
}
store.close()
