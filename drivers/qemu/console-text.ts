/** Pure helpers for guest serial console text (as logged in console.log). */

/** Makes console output readable: CRLF → LF, terminal escape sequences and other control bytes removed. */
export function cleanConsoleText (s: string): string {
  return s
    .replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '')
    .replace(/\x1b[@-Z\\-_]/g, '')
    .replace(/\r\n/g, '\n')
    .replace(/\r/g, '\n')
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '')
}

/** The last `lines` lines of console text, cleaned, without trailing empty lines. */
export function lastLines (text: string, lines: number): string {
  if (lines <= 0) return ''
  const all = cleanConsoleText(text).replace(/\n+$/, '').split('\n')
  return all.slice(Math.max(0, all.length - lines)).join('\n')
}
