# supercloud: what both images' /init share (busybox sh). Shipped in each initramfs at
# /lib/supercloud/init-common.sh (images/lib/init-common.ts) and sourced first by
# images/guest/init.sh and images/xen-host/init.sh; part of both images' ids.
#
# Sourcing sets PATH, the umask and an empty failure list; everything else is a function the
# /init calls in its own order:
#   fail <what>                 print "sc-init: <what>" and add it to the failure list
#   sc_mount_filesystems        /proc, /sys, /dev (devtmpfs, pts, shm), tmpfs on /run and /tmp
#   sc_load_modules             insmod each module in /etc/sc-modules, in that order
#   sc_param <key> <default>    the value of the last sc.<key>=... word on the kernel command line
#   sc_write_etc <name>         hostname, /etc/hostname, empty /etc/fstab, /etc/profile (prompt "<name># ")
#   wait_for <path>             wait up to 10 s for a device to appear
#   sc_announce <ready> <failed>
#                               kernel messages off the console, then the one status line
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
umask 022

failed=""
fail () { echo "sc-init: $*"; failed="$failed${failed:+; }$*"; }

# Where sc_param reads the command line (tests point it at a file of their own).
sc_cmdline=/proc/cmdline

sc_mount_filesystems () {
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  mount -t devtmpfs devtmpfs /dev 2>/dev/null
  mkdir -p /dev/pts /dev/shm
  mount -t devpts devpts /dev/pts
  mount -t tmpfs tmpfs /dev/shm
  mount -t tmpfs tmpfs /run
  mount -t tmpfs tmpfs /tmp
}

# Modules, in dependency order (the builder writes /etc/sc-modules from modules.dep).
sc_load_modules () {
  while read -r mod; do
    [ -n "$mod" ] || continue
    insmod "/lib/modules/$mod.ko" 2>/dev/null || fail "insmod $mod"
  done < /etc/sc-modules
}

# Use as name=$(sc_param name guest). A word without a value ("sc.gw=") gives "".
sc_param () {
  local value="$2" arg
  for arg in $(cat "$sc_cmdline"); do
    case "$arg" in
      "sc.$1="*) value="${arg#"sc.$1="}" ;;
    esac
  done
  printf '%s\n' "$value"
}

sc_write_etc () {
  hostname "$1"
  echo "$1" > /etc/hostname
  : > /etc/fstab
  cat > /etc/profile <<PROFILE
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
export PS1='$1# '
PROFILE
}

# Devices appear while the drivers probe: polls every 0.1 s, up to 10 s.
wait_for () {
  i=0
  while [ ! -e "$1" ] && [ $i -lt 100 ]; do usleep 100000; i=$((i + 1)); done
  [ -e "$1" ]
}

# The console is the image's serial line / hvc0: kernel messages (they land mid-line) stay off it
# from here on (`dmesg` still has them). Then exactly one line: <ready>, or <failed> and what failed.
sc_announce () {
  dmesg -n 1 2>/dev/null
  if [ -z "$failed" ]; then
    echo "$1"
  else
    echo "$2 $failed"
  fi
}
