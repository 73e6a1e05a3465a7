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
#
# The shared steps (mounts, modules, sc.* words, /etc, the status line) are functions in
# images/lib/init-common.sh, shipped at /lib/supercloud/init-common.sh.
. /lib/supercloud/init-common.sh

sc_mount_filesystems
sc_load_modules

name=$(sc_param name guest)
net=$(sc_param net "")
gw=$(sc_param gw "")
mtu=$(sc_param mtu "")
swap=$(sc_param swap "")
echo_port=$(sc_param echo "")
fw=$(sc_param fw "")
sc_write_etc "$name"

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

sc_announce "SUPERCLOUD-GUEST-READY $name" "SUPERCLOUD-GUEST-FAILED $name"
exec /bin/busybox init
