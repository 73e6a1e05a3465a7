/**
 * Serial console clients: an interactive one (raw terminal, Ctrl-] leaves) and a scripted
 * one that runs a single command and returns its output and exit status.
 */
import type { Duplex } from 'node:stream'
import { randomBytes } from 'node:crypto'
import { SupercloudError } from '../../core/errors.ts'

const CTRL_RIGHT_BRACKET = 0x1d

export async function runConsole (stream: Duplex, vm: string): Promise<void> {
  const stdin = process.stdin
  process.stderr.write(`connected to ${vm}'s console; press Ctrl-] to leave\r\n`)
  if (stdin.isTTY) stdin.setRawMode(true)
  stdin.resume()
  await new Promise<void>(resolve => {
    const onData = (d: Buffer): void => {
      const i = d.indexOf(CTRL_RIGHT_BRACKET)
      if (i >= 0) {
        if (i > 0) stream.write(d.subarray(0, i))
        finish()
        return
      }
      stream.write(d)
    }
    const finish = (): void => {
      stdin.off('data', onData)
      if (stdin.isTTY) stdin.setRawMode(false)
      stdin.pause()
      stream.end()
      process.stderr.write('\r\nleft the console\r\n')
      resolve()
    }
    stdin.on('data', onData)
    stdin.on('end', finish)
    stream.on('data', (d: Buffer) => process.stdout.write(d))
    stream.on('close', () => resolve())
  })
}

export interface ConsoleRunResult {
  output: string
  status: number
}

/**
 * Types `command` at the guest's shell and waits for a marker carrying its exit status.
 * The marker is built by the guest's shell arithmetic, so the echoed command line never matches it.
 */
export async function runInConsole (stream: Duplex, command: string, timeoutMs: number): Promise<ConsoleRunResult> {
  const token = randomBytes(4).toString('hex')
  const re = new RegExp(`__SC_DONE_${token}_(\\d+)__`)
  let buf = ''
  return await new Promise<ConsoleRunResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.destroy()
      reject(new SupercloudError('SC_CONSOLE_TIMEOUT', `command did not finish within ${timeoutMs} ms; console said:\n${buf.slice(-2000)}`))
    }, timeoutMs)
    stream.on('data', (d: Buffer) => {
      buf += d.toString('utf8')
      const m = re.exec(buf)
      if (m === null) return
      clearTimeout(timer)
      const startMarker = `__SC_START_${token}__`
      const begin = buf.lastIndexOf(startMarker, m.index)
      let out = begin >= 0 ? buf.slice(begin + startMarker.length, m.index) : buf.slice(0, m.index)
      out = out.replace(/\x1b\[6n/g, '').replace(/\r/g, '').replace(/^\n/, '')
      stream.end()
      resolve({ output: out, status: Number(m[1]) })
    })
    // Start marker printed by printf so the echo of this line does not contain it verbatim.
    stream.write(`\nprintf '__SC_START_%s__\\n' ${token}; ${command}; echo "__SC_DONE_${token}_$?__"\n`)
  })
}
