/**
 * A second process using a supercloud's state (state.compliance.ts): opens the state of `NAME`
 * (the SQLite file in DIR, or PostgreSQL at URL when given), then runs MODE:
 *   lock     takes the supercloud lock for "up", prints `got PID` (or `locked CODE MESSAGE`),
 *            holds it until a line arrives on stdin, then closes and exits;
 *   move VM  the same with VM's move lock;
 *   die      takes the supercloud lock, prints `got PID` and kills itself with SIGKILL;
 *   lead     takes the leadership of `serve`, prints `got PID`, holds it like `lock`;
 *   event    appends a `host.gone` event about host VM (the 5th argument), prints `got PID`, exits.
 * `contender.ts MODE DIR NAME [URL] [VM]`
 */
import { openStateStore } from '../../../blanket-manager/state/store.ts'
import { SupercloudError } from '../../../core/errors.ts'

const [mode, dir = '', name = '', url = '', vm = ''] = process.argv.slice(2)
const store = openStateStore(name, dir, url === '' ? undefined : url)
if (mode === 'event') {
  store.appendEvents([{ ts: new Date().toISOString(), type: 'host.gone', host: vm, data: JSON.stringify({ reason: 'removed' }) }])
  process.stdout.write(`got ${process.pid}\n`)
  store.close()
  process.exit(0)
}
try {
  const release = mode === 'move' ? store.locks.takeMove(vm, `migrate ${vm}`) : mode === 'lead' ? store.locks.takeLeader() : (store.lock('up'), () => { store.unlock() })
  process.stdout.write(`got ${process.pid}\n`)
  if (mode === 'die') process.kill(process.pid, 'SIGKILL')
  await new Promise(resolve => process.stdin.once('data', resolve))
  release()
} catch (err) {
  if (!(err instanceof SupercloudError)) throw err
  process.stdout.write(`locked ${err.code} ${err.message}\n`)
}
store.close()
process.exit(0)
