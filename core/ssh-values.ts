/**
 * Rules for the SSH values a spec gives (a host's `ssh.user`, `ssh.address`, an ec2 host's
 * `ec2.user`): they end up on command lines (`supercloud ssh`), so nothing that could read as an
 * option (`-oProxyCommand=...`) or carry shell or ssh syntax gets through. Pure.
 */
import { isIP } from 'node:net'

const USER = /^[a-z_][a-z0-9._-]{0,31}$/
const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/

/** Why `user` is not a POSIX user name (portable characters, not starting with `-`, `.` or a digit, at most 32), or undefined when it is one. */
export function sshUserProblem (user: string): string | undefined {
  if (USER.test(user)) return undefined
  if (user.startsWith('-')) return `'${user}' starts with '-'; a user name never does (it would be read as an ssh option)`
  return `'${user}' is not a user name (lower-case letters, digits, '.', '_', '-'; starting with a letter or '_'; at most 32 characters)`
}

/** Why `address` is neither an IP address nor a DNS name, or undefined when it is one. */
export function sshAddressProblem (address: string): string | undefined {
  if (address.startsWith('-')) return `'${address}' starts with '-'; an address never does (it would be read as an ssh option)`
  if (isIP(address) !== 0) return undefined
  const name = address.endsWith('.') ? address.slice(0, -1) : address
  if (name.length > 0 && name.length <= 253 && name.split('.').every(l => LABEL.test(l)) && !/^[0-9.]+$/.test(name)) return undefined
  return `'${address}' is neither an IP address nor a DNS name`
}
