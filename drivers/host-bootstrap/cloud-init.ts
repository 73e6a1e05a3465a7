/**
 * The host image bootstrap: one POSIX shell script that turns a stock Debian or Ubuntu
 * machine into a host the Blanket layer can use. EC2 runs it as user-data (cloud-init
 * runs a user-data that starts with `#!` once, as root, late in the first boot); for a
 * private server the same script can be run over SSH (`sh -s < script`). Pure: no I/O.
 *
 * What it does, idempotently (running it again changes nothing that is already right):
 *  1. installs the Debian packages the Blanket layer needs when a command is missing
 *     (qemu-system-x86, qemu-utils, iproute2, nodejs, socat), retrying apt while the
 *     instance's own first-boot apt run holds the lock;
 *  2. lets root log in with the supercloud's key only (replaces the cloud image's
 *     "please log in as admin" line for that key), via an sshd drop-in;
 *  3. creates the Blanket directory and the guest bridge (`scbr0`, no uplink);
 *  4. reports the hypervisor mode the host supports (`kvm` when /dev/kvm exists, else `tcg`)
 *     in `<blanket dir>/host-image.json` and on its console (`SUPERCLOUD-HOST-READY ...`).
 *
 * `SC_HOST_ROOT` (environment, default empty) prefixes the system files of step 2; the
 * EC2 test server sets it because its instances share the test machine's filesystem.
 */

export const HOST_IMAGE_VERSION = 1
/** Bridge the agent attaches guest TAPs to on hosts made from this image. */
export const HOST_GUEST_BRIDGE = 'scbr0'
/** Name of the report file in the Blanket directory. */
export const HOST_REPORT_FILE = 'host-image.json'
/** Line printed on the console when the script has finished. */
export const HOST_READY_MARKER = 'SUPERCLOUD-HOST-READY'
/** EC2 refuses user-data above 16 KiB (before base64). */
export const USER_DATA_LIMIT = 16 * 1024

/** Debian package per command the bootstrap makes sure of. */
export const HOST_IMAGE_PACKAGES: Array<[command: string, pkg: string]> = [
  ['qemu-system-x86_64', 'qemu-system-x86'],
  ['qemu-img', 'qemu-utils'],
  ['ip', 'iproute2'],
  ['node', 'nodejs'],
  ['socat', 'socat']
]

export interface HostBootstrapOptions {
  supercloud: string
  host: string
  /** The Blanket directory on the host (HostRecord.stateDir). */
  stateDir: string
  /** One OpenSSH public key line (`ssh-ed25519 AAAA... comment`) allowed to log in as root. */
  publicKey: string
  /** Guest bridge to create; default scbr0. */
  bridge?: string
}

export interface HostReport {
  version: number
  supercloud: string
  host: string
  hypervisor: 'kvm' | 'tcg'
  reason: string
  /** Packages the script installed this time (empty when everything was there). */
  installed: string
}

/** Blanket directory of a host made from this image: one per supercloud and host. */
export function hostStateDir (supercloud: string, host: string): string {
  return `/var/lib/supercloud/${supercloud}/${host}`
}

/** Single-quotes for POSIX sh. */
export function sq (s: string): string {
  return `'${s.replace(/'/g, "'\\''")}'`
}

const NAME = /^[a-z0-9][a-z0-9-]*$/
const KEY = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\n\r]*)?$/

/** The bootstrap script. Throws on values that cannot be embedded safely. */
export function hostBootstrapScript (o: HostBootstrapOptions): string {
  if (!NAME.test(o.supercloud)) throw new Error(`invalid supercloud name '${o.supercloud}'`)
  if (!NAME.test(o.host)) throw new Error(`invalid host name '${o.host}'`)
  if (!o.stateDir.startsWith('/') || /[\s'"\\$`]/.test(o.stateDir)) throw new Error(`invalid state dir '${o.stateDir}'`)
  const key = o.publicKey.trim()
  if (!KEY.test(key)) throw new Error('the public key must be one OpenSSH public key line')
  const blob = key.split(' ')[1] ?? ''
  const bridge = o.bridge ?? HOST_GUEST_BRIDGE
  if (!/^[a-z][a-z0-9]{0,14}$/.test(bridge)) throw new Error(`invalid bridge name '${bridge}'`)
  const checks = HOST_IMAGE_PACKAGES.map(([cmd, pkg]) => `command -v ${cmd} >/dev/null 2>&1 || need="$need ${pkg}"`).join('\n')
  return `#!/bin/sh
# supercloud host bootstrap v${HOST_IMAGE_VERSION} (drivers/host-bootstrap/cloud-init.ts): idempotent.
set -eu
SC_NAME=${sq(o.supercloud)}
SC_HOST=${sq(o.host)}
SC_STATE_DIR=${sq(o.stateDir)}
SC_BRIDGE=${sq(bridge)}
SC_PUBKEY=${sq(key)}
SC_KEYBLOB=${sq(blob)}
ROOT="\${SC_HOST_ROOT:-}"
say() { echo "supercloud-bootstrap: $*"; }

# 1. Packages, only when a command is missing.
need=""
${checks}
installed=""
if [ -n "$need" ]; then
  command -v apt-get >/dev/null 2>&1 || { say "missing:$need and no apt-get"; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  ok=0
  for i in 1 2 3 4 5 6 7 8 9 10; do
    if apt-get update -q && apt-get install -y -q --no-install-recommends $need; then ok=1; break; fi
    say "apt-get failed (attempt $i), retrying in 15 s"
    sleep 15
  done
  [ "$ok" = 1 ] || { say "could not install:$need"; exit 1; }
  installed="$need"
fi

# 2. Root logs in with the supercloud key only.
mkdir -p "$ROOT/root/.ssh"
chmod 700 "$ROOT/root/.ssh"
ak="$ROOT/root/.ssh/authorized_keys"
if ! grep -qxF "$SC_PUBKEY" "$ak" 2>/dev/null || [ "$(grep -cF "$SC_KEYBLOB" "$ak")" != 1 ]; then
  { grep -vF "$SC_KEYBLOB" "$ak" 2>/dev/null || true; echo "$SC_PUBKEY"; } > "$ak.sc-tmp"
  chmod 600 "$ak.sc-tmp"
  mv "$ak.sc-tmp" "$ak"
fi
mkdir -p "$ROOT/etc/ssh/sshd_config.d"
conf="$ROOT/etc/ssh/sshd_config.d/50-supercloud.conf"
want="PermitRootLogin prohibit-password
AllowStreamLocalForwarding yes"
if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
  printf '%s\\n' "$want" > "$conf"
  if [ -z "$ROOT" ] && command -v systemctl >/dev/null 2>&1; then
    systemctl reload ssh 2>/dev/null || systemctl reload sshd 2>/dev/null || true
  fi
fi

# 3. Blanket directory and guest bridge.
mkdir -p "$SC_STATE_DIR"
chmod 700 "$SC_STATE_DIR"
ip link show "$SC_BRIDGE" >/dev/null 2>&1 || ip link add "$SC_BRIDGE" type bridge
ip link set "$SC_BRIDGE" up

# 4. Hypervisor mode this host supports.
if [ -c /dev/kvm ]; then
  hv=kvm; reason="/dev/kvm present"
  grep -qE 'vmx|svm' /proc/cpuinfo 2>/dev/null && reason="/dev/kvm present, CPU virtualization extensions visible"
else
  hv=tcg; reason="no /dev/kvm (instance type without nested virtualization): QEMU TCG"
fi
printf '{"version":${HOST_IMAGE_VERSION},"supercloud":"%s","host":"%s","hypervisor":"%s","reason":"%s","installed":"%s"}\\n' \\
  "$SC_NAME" "$SC_HOST" "$hv" "$reason" "$(echo $installed)" > "$SC_STATE_DIR/${HOST_REPORT_FILE}.tmp"
mv "$SC_STATE_DIR/${HOST_REPORT_FILE}.tmp" "$SC_STATE_DIR/${HOST_REPORT_FILE}"
echo "${HOST_READY_MARKER} host=$SC_HOST hypervisor=$hv"
`
}

/** The script as EC2 user-data (base64, as RunInstances wants it). Throws when above EC2's limit. */
export function ec2UserData (o: HostBootstrapOptions): string {
  const script = hostBootstrapScript(o)
  const size = Buffer.byteLength(script)
  if (size > USER_DATA_LIMIT) throw new Error(`user-data is ${size} bytes, EC2 accepts at most ${USER_DATA_LIMIT}`)
  return Buffer.from(script).toString('base64')
}

/** Parses host-image.json; undefined when absent, partial or not ours. */
export function parseHostReport (text: string): HostReport | undefined {
  try {
    const j = JSON.parse(text) as Partial<HostReport>
    if (typeof j.version !== 'number' || (j.hypervisor !== 'kvm' && j.hypervisor !== 'tcg')) return undefined
    return {
      version: j.version,
      supercloud: String(j.supercloud ?? ''),
      host: String(j.host ?? ''),
      hypervisor: j.hypervisor,
      reason: String(j.reason ?? ''),
      installed: String(j.installed ?? '')
    }
  } catch {
    return undefined
  }
}
