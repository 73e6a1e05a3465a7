/** The spec problems parseSpec reports for `text` (fails the test when it reports none). */
import { parseSpec } from '../../../blanket-manager/specfile/load.ts'
import { SpecError, type SpecIssue } from '../../../core/errors.ts'

export function specIssues (text: string, file: string): SpecIssue[] {
  try {
    parseSpec(text, file)
  } catch (err) {
    if (err instanceof SpecError) return err.issues
    throw err
  }
  throw new Error('expected a SpecError')
}
