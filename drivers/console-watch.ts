/**
 * Waiting for text on a guest's console log, whatever backend keeps the log: the backend
 * says how to read the log from an offset (a local file for QEMU, a file in the dom0 for Xen)
 * and, when it can, whether the guest's process is gone.
 */
import { open } from 'node:fs/promises'
import { GuestBootError, throwIfAborted } from '../core/errors.ts'
import { cleanConsoleText, lastLines } from './qemu/console-text.ts'

export interface ConsoleLogReader {
  /**
   * The log from byte `offset` on, and the offset after what was read. A log shorter than
   * `offset` is a new one (the guest restarted): read from 0, `restarted` set. Undefined: no log yet.
   */
  read: (offset: number) => Promise<{ text: string, next: number, restarted: boolean } | undefined>
  /** When the guest's process exited (it prints no more): what exited (e.g. 'QEMU') and a note for the message; undefined while it runs. */
  exited?: () => Promise<{ what: string, note: string } | undefined>
}

/** ConsoleLogReader.read of a log file on this machine. */
export function localLogRead (path: string): ConsoleLogReader['read'] {
  return async offset => {
    let fh
    try { fh = await open(path, 'r') } catch { return undefined }
    try {
      const size = (await fh.stat()).size
      const restarted = size < offset // log rotated by a restart
      const from = restarted ? 0 : offset
      if (size <= from) return { text: '', next: from, restarted }
      const buf = Buffer.alloc(size - from)
      const { bytesRead } = await fh.read(buf, 0, buf.length, from)
      return { text: buf.subarray(0, bytesRead).toString('utf8'), next: from + bytesRead, restarted }
    } finally { await fh.close() }
  }
}

/** Console text kept for matching (the end of the log). */
const WINDOW = 1024 * 1024

/**
 * Watches the console log until `pattern` appears (anywhere in the log of the current boot).
 * On timeout, or when the guest exits first, throws GuestBootError with the console tail.
 * Honours `signal` (CancelledError).
 */
export async function watchConsole (log: ConsoleLogReader, vm: string, pattern: string | RegExp, timeoutMs: number, signal?: AbortSignal, intervalMs = 250): Promise<void> {
  const matches = (s: string): boolean => typeof pattern === 'string' ? s.includes(pattern) : pattern.test(s)
  const what = typeof pattern === 'string' ? `'${pattern}'` : String(pattern)
  const deadline = Date.now() + timeoutMs
  let offset = 0
  let text = ''
  for (;;) {
    throwIfAborted(signal, `waiting for ${what} on the console of ${vm}`)
    const r = await log.read(offset)
    if (r !== undefined) {
      if (r.restarted) text = ''
      offset = r.next
      text += cleanConsoleText(r.text)
      if (text.length > WINDOW) text = text.slice(text.length - WINDOW)
    }
    if (matches(text)) return
    const exited = await log.exited?.()
    if (exited !== undefined) throw new GuestBootError(vm, `${exited.what} exited before ${what} appeared on the console${exited.note}`, lastLines(text, 30))
    if (Date.now() >= deadline) {
      throw new GuestBootError(vm, `${what} did not appear on the console within ${Math.round(timeoutMs / 100) / 10} s`, lastLines(text, 30))
    }
    await new Promise<void>(resolve => {
      const t = setTimeout(done, Math.min(intervalMs, Math.max(0, deadline - Date.now())))
      function done (): void { clearTimeout(t); signal?.removeEventListener('abort', done); resolve() }
      signal?.addEventListener('abort', done, { once: true })
    })
  }
}
