/**
 * The OpenSSH command line of `supercloud ssh`: the supercloud's key only, the host key the
 * controller pinned (a known_hosts file holding just that key, under the host's name as alias,
 * strict checking), no agent forwarding, and `--` before the destination.
 */
import type { SshEndpoint } from '../../core/ssh.ts'

/** The known_hosts file's one line for a host's pinned key. */
export function knownHostsLine (alias: string, publicKey: string): string {
  return `${alias} ${publicKey}\n`
}

export function sshArgs (host: string, ep: SshEndpoint, knownHostsFile: string, command: readonly string[], tty: boolean): string[] {
  const args = [
    '-i', ep.privateKeyPath, '-p', String(ep.port),
    '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR',
    '-o', 'ForwardAgent=no', '-o', 'ForwardX11=no',
    '-o', `UserKnownHostsFile=${knownHostsFile}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', '-o', `HostKeyAlias=${host}`
  ]
  if (ep.proxyCommand !== undefined) args.push('-o', `ProxyCommand=${ep.proxyCommand.join(' ')}`)
  if (tty) args.push('-t')
  // `supercloud ssh HOST -- CMD`: our own `--` ends supercloud's options and is not part of the
  // remote command (ssh reads nothing after its own `--`, so it would reach the remote shell as `sh -c '-- CMD'`).
  args.push('-l', ep.username, '--', ep.host, ...(command[0] === '--' ? command.slice(1) : command))
  return args
}
