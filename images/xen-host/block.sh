#!/bin/sh
# supercloud dom0: libxl's hotplug script for PV disks (phy backend), installed as
# /etc/xen/scripts/block (Debian's own needs bash and more tools than the dom0 has).
# libxl runs it as `block add|remove` with $XENBUS_PATH (backend/vbd/<domid>/<dev>) in the
# environment; the disk's target is in "$XENBUS_PATH/params".
#   add:    a block device (an NBD device the host agent connected, a partition) is used as
#           it is; a regular file (a raw disk image) gets a loop device, remembered in
#           "$XENBUS_PATH/node". blkback is told the device ("physical-device" = major:minor
#           in hex) and libxl that the disk is ready (hotplug-status = connected).
#   remove: the loop device made by add is released; block devices are left to their owner.
command="$1"
fail () {
  echo "block $command: $*" >&2
  [ -n "${XENBUS_PATH:-}" ] && xenstore-write "$XENBUS_PATH/hotplug-error" "$*" "$XENBUS_PATH/hotplug-status" error 2>/dev/null
  exit 1
}
[ -n "${XENBUS_PATH:-}" ] || fail "no \$XENBUS_PATH in the environment"
case "$command" in
  add)
    params=$(xenstore-read "$XENBUS_PATH/params" 2>/dev/null)
    [ -n "$params" ] || fail "no params in $XENBUS_PATH"
    dev="$params"
    if [ -f "$params" ]; then
      mode=$(xenstore-read "$XENBUS_PATH/mode" 2>/dev/null)
      ro=""
      [ "$mode" = r ] && ro="-r"
      # busybox losetup has no --show: take the next free device under a lock (disks of one
      # domain are added concurrently).
      # A lock whose holder died (libxl kills a hotplug script that overran) is broken.
      lock=/run/xen-block.lock n=0
      until mkdir "$lock" 2>/dev/null; do
        p=$(cat "$lock/pid" 2>/dev/null)
        if [ -n "$p" ] && ! kill -0 "$p" 2>/dev/null; then rm -rf "$lock"; continue; fi
        n=$((n + 1)); [ "$n" -lt 300 ] || fail "$lock held for 30 s"; sleep 0.1
      done
      echo $$ > "$lock/pid"
      dev=$(losetup -f 2>&1) && out=$(losetup $ro "$dev" "$params" 2>&1) || { rm -rf "$lock"; fail "no loop device for $params: $dev $out"; }
      rm -rf "$lock"
      xenstore-write "$XENBUS_PATH/node" "$dev" || { losetup -d "$dev"; fail "cannot record $dev"; }
    fi
    [ -b "$dev" ] || fail "$dev is not a block device"
    # stat's %t/%T: major/minor in hex, as blkback reads physical-device.
    mm=$(stat -L -c '%t:%T' "$dev") || fail "cannot stat $dev"
    xenstore-write "$XENBUS_PATH/physical-device" "$mm" "$XENBUS_PATH/physical-device-path" "$dev" || fail "cannot write physical-device"
    xenstore-write "$XENBUS_PATH/hotplug-status" connected || fail "cannot write hotplug-status"
    ;;
  remove)
    node=$(xenstore-read "$XENBUS_PATH/node" 2>/dev/null)
    case "$node" in /dev/loop*) losetup -d "$node" 2>/dev/null ;; esac
    xenstore-rm "$XENBUS_PATH/hotplug-status" 2>/dev/null
    ;;
  *) fail "unknown command" ;;
esac
exit 0
