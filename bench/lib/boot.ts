/** One bare QEMU boot (TCG) of a kernel + initrd to the tiny image's ready line: the benchmarks' baseline for a guest. */
import { spawn } from 'node:child_process'

/** Milliseconds from starting QEMU to `SUPERCLOUD-GUEST-READY <name>` on its serial console. */
export async function bareBoot (kernel: string, initrd: string, name = 'bench'): Promise<number> {
  const t0 = process.hrtime.bigint()
  const q = spawn('qemu-system-x86_64', ['-accel', 'tcg', '-m', '128', '-nodefaults', '-no-user-config', '-display', 'none',
    '-serial', 'stdio', '-kernel', kernel, '-initrd', initrd, '-append', `console=ttyS0 sc.name=${name}`], { stdio: ['ignore', 'pipe', 'ignore'] })
  let out = ''
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('bare boot timed out')) }, 180000)
      q.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.includes(`SUPERCLOUD-GUEST-READY ${name}`)) { clearTimeout(timer); resolve() } })
      q.on('exit', code => { clearTimeout(timer); reject(new Error(`QEMU exited (${String(code)}) before the guest was ready`)) })
    })
    return Number(process.hrtime.bigint() - t0) / 1e6
  } finally {
    q.kill('SIGKILL')
  }
}
