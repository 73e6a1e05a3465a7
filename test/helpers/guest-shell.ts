/** Shell snippets the e2e tests run in a guest through `supercloud console --run`. */

/**
 * Waits, in the guest, at most `seconds` for a line matching the extended regular expression
 * `pattern` in `file` (one console session instead of one per poll). The console echoes the
 * command, so write the pattern so that it does not match itself (`v[e]rify`, not `verify`).
 */
export function waitInGuest (file: string, pattern: string, seconds: number): string {
  return `i=0; while ! grep -qE '${pattern}' ${file} 2>/dev/null && [ $i -lt ${seconds} ]; do sleep 1; i=$((i+1)); done`
}
