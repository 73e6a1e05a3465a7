/**
 * watchConsole (drivers/console-watch.ts): a guest whose firmware starts twice before its ready
 * line was reset during boot, and the wait ends at once with the console tail instead of
 * running to its deadline; one firmware start and the ready line is a boot.
 */
import t from 'tap'
import { watchConsole, type ConsoleLogReader } from '../../../drivers/console-watch.ts'
import { SEABIOS_BANNER } from '../../../drivers/qemu/backend.ts'

/** A console log that grows by one chunk per read. */
function growing (chunks: string[], banner?: string): ConsoleLogReader {
  let log = ''
  let i = 0
  return {
    read: async offset => {
      if (i < chunks.length) log += chunks[i++]
      return { text: log.slice(offset), next: log.length, restarted: false }
    },
    ...(banner !== undefined ? { firmwareBanner: banner } : {})
  }
}

const boot = `${SEABIOS_BANNER} 1.16.2-debian-1.16.2-1)\r\nBooting from ROM..\r\n`

t.test('a guest reset during boot ends the wait at once, with its console', async t => {
  const started = Date.now()
  const err = await watchConsole(growing([boot, 'Kernel panic - not syncing: out of memory\r\n', boot, '', ''], SEABIOS_BANNER), 'starved', 'READY starved', 60_000, undefined, 5)
    .then(() => undefined, (e: unknown) => e as Error & { code?: string })
  t.equal(err?.code, 'SC_GUEST_BOOT')
  t.match(err?.message, /guest starved failed to boot: the guest was reset before 'READY starved' appeared/)
  t.match(err?.message, /Kernel panic/, 'the console tail is in the error')
  t.ok(Date.now() - started < 5_000, 'long before the 60 s deadline')
})

t.test('one firmware start and the ready line: booted', async t => {
  await watchConsole(growing([boot, 'Linux version 6.1\r\n', 'READY web1\r\n'], SEABIOS_BANNER), 'web1', 'READY web1', 5_000, undefined, 5)
  t.pass('resolved')
})

t.test('a reader without a firmware banner (Xen) waits for the pattern as before', async t => {
  await watchConsole(growing([boot, boot, 'READY web1\r\n']), 'web1', 'READY web1', 5_000, undefined, 5)
  t.pass('two banners mean nothing when the backend names none')
})
