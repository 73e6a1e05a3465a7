#!/usr/bin/env bash
# Installs everything supercloud needs on this machine (Debian, as root): system packages,
# npm dependencies, and the cached guest image. Idempotent and quick when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  qemu-system-x86 qemu-utils          # second-layer hypervisor (TCG/KVM) and disk images
  openssh-server openssh-client       # one sshd per namespaced host; `supercloud ssh`
  iproute2 socat procps kmod nftables # namespaces, veth, bridges, VXLAN, tc; proxy command; link-cut tests
  busybox-static cpio xz-utils zstd   # guest image: userland, initramfs, module decompression
  linux-image-amd64                   # guest kernel (Debian's, with virtio modules)
  gcc libc6-dev                       # guest tools (memload, netprobe), built static
  iperf3 openvpn openssl libfuse2 vtun # VirtualWire benchmarks (vtun: user-space tunnel baseline), extenders, FUSE
  python3                             # raw 802.1Q frame test of the endpoint manager
  chromium                            # dashboard browser tests (playwright-core drives Debian's Chromium)
  xen-hypervisor-4.17-amd64 xen-utils-4.17 # Xen hosts: Xen and xl for the dom0 image (booted under QEMU; this machine's boot is not touched)
  xen-hypervisor-common               # Xen boot on real servers: Debian's /etc/grub.d/20_linux_xen and /etc/default/grub.d/xen.cfg (a Recommends, not pulled in above); no update-grub without /boot/grub
  nbd-client                          # Xen hosts: a guest swap disk on the agent NBD export, in the dom0 image
  grub2-common                        # Xen boot on real servers: grub-reboot / grub-set-default tested on a scratch /boot
  postgresql                          # shared state store (issue 16): tests start their own server on a unix socket, as the postgres user
)

missing=()
for p in "${PACKAGES[@]}"; do
  [[ "$p" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) != 0 ]]; then echo "setup: need root to install: ${missing[*]}" >&2; exit 1; fi
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p /run/sshd

if [[ ! -d node_modules/.package-lock.json && ! -f node_modules/.package-lock.json ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: installing npm dependencies" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

# The CLI as bundled JavaScript (dist/cli/), so the first command starts at once; bin/supercloud
# rebuilds it whenever a source is newer.
bash scripts/cli-bundle.sh

# Build (or find in the cache) the guest image used by examples and tests.
node --import tsx images/guest/build-cli.ts >/dev/null
echo "setup: ready" >&2
