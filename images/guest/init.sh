#!/bin/sh
# supercloud tiny guest: /init (PID 1 until it hands over to busybox init).
#
# Contract (see docs/images.md): reads sc.* parameters from /proc/cmdline,
#   sc.name=<vm name>                       hostname and shell prompt
#   sc.net=<if>:<addr/prefix>[,<if>:...]    static IPv4 addresses
#   sc.gw=<ipv4>                            default route
#   sc.mtu=<n>                              MTU of every listed interface
#   sc.swap=/dev/vdX                        mkswap + swapon that disk
#   sc.echo=<port>                          run 'netprobe echo <port>' (UDP)
#   sc.fw=<if-a>,<if-b>[,--allow,<m>|,--drop,<m>]...[,--default,allow|drop]
#                                           run 'l2fw' (commas become spaces); pid in
#                                           /run/l2fw.pid, output (counters) in /run/l2fw.log
# then prints exactly one line, "SUPERCLOUD-GUEST-READY <name>" (or
# "SUPERCLOUD-GUEST-FAILED <name> <what failed>") and runs a root shell on
# ttyS0, respawned when it exits, with the prompt "<name># ".
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

# Modules, in dependency order (written at build time from modules.dep).
while read -r mod; do
  [ -n "$mod" ] || continue
  insmod "/lib/modules/$mod.ko" 2>/dev/null || fail "insmod $mod"
done < /etc/sc-modules

name=guest; net=""; gw=""; mtu=""; swap=""; echo_port=""; fw=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    sc.name=*) name="${arg#sc.name=}" ;;
    sc.net=*)  net="${arg#sc.net=}" ;;
    sc.gw=*)   gw="${arg#sc.gw=}" ;;
    sc.mtu=*)  mtu="${arg#sc.mtu=}" ;;
    sc.swap=*) swap="${arg#sc.swap=}" ;;
    sc.echo=*) echo_port="${arg#sc.echo=}" ;;
    sc.fw=*)   fw="${arg#sc.fw=}" ;;
  esac
done

: > /etc/fstab
hostname "$name"
echo "$name" > /etc/hostname
cat > /etc/profile <<PROFILE
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
export PS1='$name# '
PROFILE

# wait_for <path>: devices appear while the drivers probe; allow up to 10 s.
wait_for () {
  i=0
  while [ ! -e "$1" ] && [ $i -lt 100 ]; do usleep 100000; i=$((i + 1)); done
  [ -e "$1" ]
}

ip link set lo up
for spec in $(echo "$net" | tr ',' ' '); do
  ifname="${spec%%:*}"
  addr="${spec#*:}"
  if ! wait_for "/sys/class/net/$ifname"; then fail "no interface $ifname"; continue; fi
  if [ -n "$mtu" ]; then ip link set "$ifname" mtu "$mtu" || fail "mtu $mtu on $ifname"; fi
  ip addr add "$addr" dev "$ifname" || fail "address $addr on $ifname"
  ip link set "$ifname" up || fail "link up $ifname"
done
if [ -n "$gw" ]; then ip route add default via "$gw" || fail "default route via $gw"; fi

if [ -n "$swap" ]; then
  if wait_for "$swap"; then
    # -d: discard freed swap slots (the host releases their pages in peers' repositories)
    if mkswap "$swap" >/dev/null 2>&1 && swapon -d "$swap"; then
      echo "$swap none swap sw 0 0" >> /etc/fstab
    else
      fail "swap on $swap"
    fi
  else
    fail "no swap device $swap"
  fi
fi

if [ -n "$echo_port" ]; then netprobe echo "$echo_port" >/dev/null 2>&1 & fi

if [ -n "$fw" ]; then
  fw_args=$(echo "$fw" | tr ',' ' ')
  fw_a="${fw_args%% *}"; fw_rest="${fw_args#* }"; fw_b="${fw_rest%% *}"
  if wait_for "/sys/class/net/$fw_a" && wait_for "/sys/class/net/$fw_b"; then
    # shellcheck disable=SC2086 # word splitting is the point: one word per argument
    l2fw $fw_args >/run/l2fw.log 2>&1 &
    echo $! > /run/l2fw.pid
    usleep 300000
    kill -0 "$(cat /run/l2fw.pid)" 2>/dev/null || fail "l2fw: $(tail -n 1 /run/l2fw.log)"
  else
    fail "l2fw: no interface $fw_a or $fw_b"
  fi
fi

cat > /etc/inittab <<'INITTAB'
ttyS0::respawn:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/sbin/swapoff -a
INITTAB

# The serial line is the guest's console: keep kernel messages (they land mid-line) off it
# from here on; `dmesg` still has them.
dmesg -n 1 2>/dev/null

if [ -z "$failed" ]; then
  echo "SUPERCLOUD-GUEST-READY $name"
else
  echo "SUPERCLOUD-GUEST-FAILED $name $failed"
fi
exec /bin/busybox init
