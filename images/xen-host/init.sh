#!/bin/sh
# supercloud Xen host: /init of the dom0 initramfs (PID 1 until it hands over to busybox init).
#
# Contract (see docs/xen.md): reads sc.* parameters from the dom0 kernel command line,
#   sc.name=<host name>         hostname
#   sc.net=<addr/prefix>        IPv4 address of xenbr0 (the bridge that holds eth0 and the guests' vifs)
#   sc.gw=<ipv4>                default route
# starts xenstored, xen-init-dom0, xenconsoled (guest consoles logged to
# /var/log/xen/console/guest-<domain>.log) and sshd (host key and authorized_keys come
# from a second cpio archive appended to the initramfs at launch), then prints exactly
# one line, "SUPERCLOUD-XEN-HOST-READY <name>" or "SUPERCLOUD-XEN-HOST-FAILED <name> <what>",
# and runs a root shell on hvc0.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
umask 022

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp

failed=""
fail () { echo "sc-init: $*"; failed="$failed${failed:+; }$*"; }

while read -r mod; do
  [ -n "$mod" ] || continue
  insmod "/lib/modules/$mod.ko" 2>/dev/null || fail "insmod $mod"
done < /etc/sc-modules

name=xen-host; net=""; gw=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    sc.name=*) name="${arg#sc.name=}" ;;
    sc.net=*)  net="${arg#sc.net=}" ;;
    sc.gw=*)   gw="${arg#sc.gw=}" ;;
  esac
done
hostname "$name"
echo "$name" > /etc/hostname
: > /etc/fstab
# libfuse (the VirtualWire endpoint manager's FUSE mount) reads the mount table here.
ln -sf /proc/self/mounts /etc/mtab
cat > /etc/profile <<PROFILE
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
export PS1='$name# '
PROFILE

wait_for () {
  i=0
  while [ ! -e "$1" ] && [ $i -lt 100 ]; do usleep 100000; i=$((i + 1)); done
  [ -e "$1" ]
}

# Xen control plane: xenfs, xenstored, dom0's xenstore entries, the console daemon.
mkdir -p /proc/xen /run/xen /run/xenstored /run/sshd /var/lib/xen /var/lib/xenstored /var/log/xen/console /var/lock
mount -t xenfs xenfs /proc/xen || fail "mount xenfs"
if [ -e /proc/xen/capabilities ] && grep -q control_d /proc/xen/capabilities; then
  /usr/lib/xen-4.17/bin/xenstored --pid-file /run/xen/xenstored.pid >/var/log/xen/xenstored.log 2>&1 || fail "xenstored"
  /usr/lib/xen-4.17/bin/xen-init-dom0 >/var/log/xen/xen-init-dom0.log 2>&1 || fail "xen-init-dom0"
  /usr/lib/xen-4.17/bin/xenconsoled --pid-file=/run/xen/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console \
    >/var/log/xen/xenconsoled.log 2>&1 || fail "xenconsoled"
else
  fail "not a Xen dom0 (no control_d in /proc/xen/capabilities)"
fi

ip link set lo up
ip link add xenbr0 type bridge || fail "bridge xenbr0"
if wait_for /sys/class/net/eth0; then
  ip link set eth0 master xenbr0 || fail "eth0 into xenbr0"
  ip link set eth0 up || fail "link up eth0"
else
  fail "no interface eth0"
fi
ip link set xenbr0 up
if [ -n "$net" ]; then ip addr add "$net" dev xenbr0 || fail "address $net"; fi
if [ -n "$gw" ]; then ip route add default via "$gw" || fail "default route via $gw"; fi

if [ -e /etc/ssh/ssh_host_ed25519_key ]; then
  chmod 600 /etc/ssh/ssh_host_ed25519_key
  /usr/sbin/sshd -f /etc/ssh/sshd_config -E /var/log/sshd.log || fail "sshd"
else
  fail "no ssh host key (launch appends it to the initramfs)"
fi

cat > /etc/inittab <<'INITTAB'
hvc0::respawn:-/bin/sh
::ctrlaltdel:/sbin/reboot
INITTAB
dmesg -n 1 2>/dev/null

if [ -z "$failed" ]; then
  echo "SUPERCLOUD-XEN-HOST-READY $name"
else
  echo "SUPERCLOUD-XEN-HOST-FAILED $name $failed"
fi
exec /bin/busybox init
