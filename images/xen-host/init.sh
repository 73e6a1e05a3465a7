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
#
# The shared steps (mounts, modules, sc.* words, /etc, the status line) are functions in
# images/lib/init-common.sh, shipped at /lib/supercloud/init-common.sh.
. /lib/supercloud/init-common.sh

sc_mount_filesystems
sc_load_modules

name=$(sc_param name xen-host)
net=$(sc_param net "")
gw=$(sc_param gw "")
sc_write_etc "$name"
# libfuse (the VirtualWire endpoint manager's FUSE mount) reads the mount table here.
ln -sf /proc/self/mounts /etc/mtab

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

sc_announce "SUPERCLOUD-XEN-HOST-READY $name" "SUPERCLOUD-XEN-HOST-FAILED $name"
exec /bin/busybox init
