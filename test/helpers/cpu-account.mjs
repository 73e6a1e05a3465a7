/**
 * Loaded into every test file's process by tap (.taprc's node-arg): when scripts/test.sh sets
 * SC_TEST_CPU_CGROUP to a cpuacct cgroup directory it made, the process moves into a
 * child cgroup named after its test file. Everything it starts (CLI processes, QEMU, Xen
 * machines, sshd, daemons that detach) stays in that cgroup, so scripts/test.sh can say how much
 * CPU each file used in all. On 2 cores the suite is CPU-bound: a file's CPU time, not its wall
 * time, is what it costs the others (a file that waits lets the other job run).
 * Plain JavaScript, no imports of ours: it runs before the TypeScript loader. Any failure leaves
 * the process where it was (the count is a measurement, never a reason for a test to fail).
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'

const root = process.env.SC_TEST_CPU_CGROUP
const file = process.argv[1]
if (root !== undefined && root !== '' && file !== undefined && file.endsWith('.spec.ts')) {
  try {
    const dir = join(root, relative(process.cwd(), file).replace(/\//g, ':'))
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'tasks'), String(process.pid))
  } catch {}
}
