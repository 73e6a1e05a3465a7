/** End-of-run sweep (scripts/test.sh): fails when a test left kernel objects behind, and removes them. */
import { leftovers, registeredPrefixes, sweepPrefix } from './sweep-lib.ts'

let dirty = false
for (const p of registeredPrefixes()) {
  const l = leftovers(p)
  if (l.namespaces.length + l.links.length + l.processes.length > 0) {
    dirty = true
    process.stderr.write(`sweep: prefix ${p} left ${JSON.stringify(l)}\n`)
    sweepPrefix(p)
  }
}
process.exit(dirty ? 1 : 0)
