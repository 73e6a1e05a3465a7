/**
 * One process contending for a supercloud's state lock (store.spec.ts races several):
 * `lock-contender.ts DIR GO_AT_MS HOLD_MS [die]` waits until GO_AT_MS (epoch ms), tries the lock,
 * prints `got PID` or `locked PID`; a winner holds it HOLD_MS and until the file DIR/release
 * exists (the test makes it once every contender answered), then exits (or, with `die`, kills
 * itself with SIGKILL while holding it, leaving a stale lock behind).
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { StateStore } from '../../../blanket-manager/state/store.ts'
import { StateLockedError } from '../../../core/errors.ts'

const [dir, goAt, hold, mode] = process.argv.slice(2)
const store = StateStore.open(dir ?? '')
await new Promise(resolve => setTimeout(resolve, Math.max(0, Number(goAt) - Date.now())))
try {
  store.lock()
  process.stdout.write(`got ${process.pid}\n`)
  await new Promise(resolve => setTimeout(resolve, Number(hold)))
  while (mode !== 'die' && !existsSync(join(dir ?? '', 'release'))) await new Promise(resolve => setTimeout(resolve, 50))
  if (mode === 'die') process.kill(process.pid, 'SIGKILL')
  store.close()
} catch (err) {
  if (!(err instanceof StateLockedError)) throw err
  process.stdout.write(`locked ${process.pid} ${err.message}\n`)
  store.close()
}
