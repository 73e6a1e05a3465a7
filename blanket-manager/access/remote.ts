/**
 * Puts a supercloud's managed block into the login user's authorized_keys on a host, over any
 * CommandRunner (the host's SSH connection). The file is the one the sshd serving this very
 * connection reads: the `-f` config of its listening process (found up the process tree from the
 * command's shell, whose own command line is not looked at; /etc/ssh/sshd_config when the sshd
 * processes above it have none; no sshd above it at all is an error, nothing is written), its AuthorizedKeysFile (first entry;
 * `.ssh/authorized_keys` when unset). Written to a temporary file beside it and renamed over it
 * (atomic); nothing is written when the text would not change (idempotent).
 */
import type { CommandRunner } from '../../core/exec.ts'
import { RemoteCommandError } from '../../core/errors.ts'
import { shq } from '../../core/ssh.ts'
import { authorizedKeysPath, spliceBlock } from './authorized-keys.ts'

/** The walk up the process tree met no sshd: nothing is written (the file sshd reads is unknown). */
const NO_SSHD = 93

/** Prints the user, the home and the AuthorizedKeysFile setting of the sshd serving this session, one per line. */
const FIND = String.raw`conf=
p=$PPID
while [ -n "$p" ] && [ "$p" -gt 1 ]; do
  c=$(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null)
  case "$c" in
    'sshd: '*|'sshd '*|*/sshd|*/sshd' '*)
      f=$(printf '%s\n' "$c" | sed -n 's/.* -f \([^ ]*\).*/\1/p')
      if [ -n "$f" ]; then conf=$f; break; fi
      conf=/etc/ssh/sshd_config ;;
  esac
  p=$(awk '/^PPid:/ {print $2}' /proc/$p/status 2>/dev/null)
done
[ -n "$conf" ] || { echo 'no sshd among the processes above this session' >&2; exit ${NO_SSHD}; }
id -un
printf '%s\n' "$HOME"
awk 'tolower($1) == "match" {exit} tolower($1) == "authorizedkeysfile" {$1 = ""; print; exit}' "$conf" 2>/dev/null
true`

/** The path of the login user's authorized_keys as the host's sshd reads it. */
export async function findAuthorizedKeys (runner: CommandRunner, signal?: AbortSignal): Promise<string> {
  const r = await runner.run(FIND, signal !== undefined ? { signal } : {})
  const [user = '', home = '', setting] = r.stdout.split('\n')
  if (user === '' || !home.startsWith('/')) throw new RemoteCommandError(runner.host, 'finding authorized_keys', 0, `no user or home directory in: ${r.stdout.trim()}`)
  return authorizedKeysPath(setting, home, user)
}

/**
 * Makes supercloud `name`'s block in the host's authorized_keys exactly `block` (blockLines);
 * 'unchanged' when it already was.
 */
export async function syncAuthorizedKeys (runner: CommandRunner, name: string, block: readonly string[], signal?: AbortSignal): Promise<'changed' | 'unchanged'> {
  const opts = signal !== undefined ? { signal } : {}
  const path = await findAuthorizedKeys(runner, signal)
  const current = (await runner.run(`cat ${shq(path)} 2>/dev/null; true`, opts)).stdout
  const next = spliceBlock(current, name, block)
  if (next === current) return 'unchanged'
  const dir = path.replace(/\/[^/]*$/, '') || '/'
  const tmp = `${path}.supercloud-new`
  await runner.run([
    'umask 077',
    `mkdir -p ${shq(dir)}`,
    `cat > ${shq(tmp)}`,
    `chmod 600 ${shq(tmp)}`,
    `mv -f ${shq(tmp)} ${shq(path)}`
  ].join(' && '), { ...opts, input: next })
  return 'changed'
}
