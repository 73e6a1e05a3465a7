/** The sshd configuration of a namespaced host (pure). */
export interface SshdConfigInput {
  address: string
  hostKeyPath: string
  pidFile: string
  authorizedKeysFile: string
}

export function sshdConfig (c: SshdConfigInput): string {
  return [
    `ListenAddress ${c.address}:22`,
    `HostKey ${c.hostKeyPath}`,
    `PidFile ${c.pidFile}`,
    `AuthorizedKeysFile ${c.authorizedKeysFile}`,
    'PermitRootLogin prohibit-password',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'AllowStreamLocalForwarding yes',
    'AllowTcpForwarding yes',
    'StreamLocalBindUnlink yes',
    'StrictModes no',
    'UsePAM no',
    'UseDNS no',
    'PrintMotd no',
    'MaxSessions 64',
    'MaxStartups 64:30:128',
    'Subsystem sftp internal-sftp',
    ''
  ].join('\n')
}
