/** Test helpers for tiny-image guests: a QEMU process driven through its serial console. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { qemuKernel, type TinyImage } from '../../../images/guest/build.ts'

export const BOOT_TIMEOUT_MS = 90_000

/** A QEMU process whose serial console is its stdio. */
export class SerialGuest {
  readonly name: string
  readonly proc: ChildProcess
  private out = ''
  private waiters: Array<() => void> = []
  exited = false

  constructor (name: string, cmd: string, args: string[]) {
    this.name = name
    this.proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    const onData = (b: Buffer): void => {
      // Drop \r and ash's cursor-position query (ESC [ 6 n) so lines compare plainly.
      this.out += b.toString('utf8').replace(/\r/g, '').replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')
      for (const w of this.waiters) w()
    }
    this.proc.stdout?.on('data', onData)
    this.proc.stderr?.on('data', onData)
    this.proc.on('exit', () => { this.exited = true; for (const w of this.waiters) w() })
  }

  get output (): string { return this.out }
  mark (): number { return this.out.length }

  /** Resolves with the first match of re in the output after `from`; rejects with the console tail on timeout or exit. */
  waitFor (re: RegExp, timeoutMs: number, from = 0): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const m = this.out.slice(from).match(re)
        if (m !== null) { done(); resolve(m); return true }
        if (this.exited) { done(); reject(new Error(`${this.name}: QEMU exited before ${re}\n${this.tail()}`)); return true }
        return false
      }
      const timer = setTimeout(() => { done(); reject(new Error(`${this.name}: no ${re} within ${timeoutMs} ms\n${this.tail()}`)) }, timeoutMs)
      const done = (): void => { clearTimeout(timer); this.waiters = this.waiters.filter(w => w !== waiter) }
      const waiter = (): void => { check() }
      if (!check()) this.waiters.push(waiter)
    })
  }

  /** Waits for the shell prompt "<name># " after `from`; returns the offset just past it. */
  async prompt (timeoutMs: number, from = 0): Promise<number> {
    const m = await this.waitFor(new RegExp(`${this.name}# `), timeoutMs, from)
    return from + (m.index ?? 0) + m[0].length
  }

  /**
   * Types a command at the prompt, waits for `re` in what follows and then for
   * the next prompt, so the next command never races the shell.
   */
  async run (command: string, re: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    const from = this.mark()
    this.proc.stdin?.write(command + '\n')
    const m = await this.waitFor(re, timeoutMs, from)
    await this.prompt(timeoutMs, from + (m.index ?? 0) + m[0].length)
    return m
  }

  tail (): string { return this.out.split('\n').slice(-25).join('\n') }

  async kill (): Promise<void> {
    if (this.exited) return
    const gone = new Promise<void>(resolve => this.proc.once('exit', () => resolve()))
    this.proc.kill('SIGKILL')
    await gone
  }
}

export function qemuArgs (img: TinyImage, append: string, extra: string[] = []): string[] {
  return [
    '-accel', 'tcg', '-m', '256', '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-serial', 'stdio',
    '-kernel', qemuKernel(img), '-initrd', img.initrd, '-append', append,
    ...extra
  ]
}

/** Runs a command; throws with its stderr when it fails. */
export function sh (cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`)
}

export const haveQemu = spawnSync('qemu-system-x86_64', ['--version']).status === 0
