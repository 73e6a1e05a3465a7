import t from 'tap'
import { splitExitMark } from '../../../core/ssh.ts'

t.test('the exit status line comes off the output; the output stays byte for byte', async t => {
  t.same(splitExitMark('ok\n\n__SC_EXIT_STATUS=0\n'), { stdout: 'ok\n', code: 0 })
  t.same(splitExitMark('no newline\n__SC_EXIT_STATUS=3\n'), { stdout: 'no newline', code: 3 })
  t.same(splitExitMark('\n__SC_EXIT_STATUS=137\n'), { stdout: '', code: 137 })
  t.same(splitExitMark('a\n__SC_EXIT_STATUS=1\nmore\n'), { stdout: 'a\n__SC_EXIT_STATUS=1\nmore\n' }, 'only a last line counts')
  t.same(splitExitMark('cut off mid-comm'), { stdout: 'cut off mid-comm' }, 'no line: no status')
})
