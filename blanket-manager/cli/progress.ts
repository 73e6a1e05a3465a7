/** Prints progress events as timestamped lines on stderr (readable in a terminal and in CI logs). */
import type { ProgressEvent } from '../../core/progress.ts'

export function formatProgress (ev: ProgressEvent, now = new Date()): string {
  const t = now.toISOString().slice(11, 19)
  const pct = ev.fraction !== undefined ? ` ${Math.round(ev.fraction * 100)}%` : ''
  return `[${t}] ${ev.subject.padEnd(16)} ${ev.phase}: ${ev.message}${pct}`
}

export function makeProgressPrinter (out: NodeJS.WritableStream = process.stderr): (ev: ProgressEvent) => void {
  return ev => { out.write(formatProgress(ev) + '\n') }
}
