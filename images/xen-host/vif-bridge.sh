#!/bin/sh
# supercloud dom0: libxl's hotplug script for PV network interfaces, installed as
# /etc/xen/scripts/vif-bridge (Debian's own needs bash and more tools than the dom0 has).
# libxl runs it as `vif-bridge online|offline` with $vif (vif<domid>.<n>) and $XENBUS_PATH
# (backend/vif/<domid>/<n>) in the environment. "online" puts the vif into the bridge named
# in the vif's xenstore entry (xl's `bridge=`; default xenbr0) and tells netback it may
# connect (hotplug-status = connected). A vif with xl's `vifname=` is renamed first (the
# name is in the vif's xenstore entry, as Debian's vif-common.sh reads it); `mtu=` (in
# xenstore too) wins over the bridge's MTU.
command="$1"
dev="${vif:-}"
fail () {
  echo "vif-bridge $command $dev: $*" >&2
  [ -n "${XENBUS_PATH:-}" ] && xenstore-write "$XENBUS_PATH/hotplug-error" "$*" 2>/dev/null
  exit 1
}
[ -n "$dev" ] || fail "no \$vif in the environment"
bridge=""
[ -n "${XENBUS_PATH:-}" ] && bridge=$(xenstore-read "$XENBUS_PATH/bridge" 2>/dev/null)
[ -n "$bridge" ] || bridge=xenbr0
vifname=""
[ -n "${XENBUS_PATH:-}" ] && vifname=$(xenstore-read "$XENBUS_PATH/vifname" 2>/dev/null)
if [ -n "$vifname" ] && [ "$vifname" != "$dev" ]; then
  if [ "$command" = online ] && [ -e "/sys/class/net/$dev" ] && [ ! -e "/sys/class/net/$vifname" ]; then
    ip link set "$dev" name "$vifname" || fail "cannot rename $dev to $vifname"
  fi
  dev="$vifname"
fi
case "$command" in
  online|add)
    [ -e "/sys/class/net/$bridge/bridge" ] || fail "no bridge $bridge"
    mtu=""
    [ -n "${XENBUS_PATH:-}" ] && mtu=$(xenstore-read "$XENBUS_PATH/mtu" 2>/dev/null)
    [ -n "$mtu" ] || mtu=$(cat "/sys/class/net/$bridge/mtu")
    ip link set "$dev" mtu "$mtu" 2>/dev/null
    ip link set "$dev" master "$bridge" || fail "cannot add $dev to $bridge"
    ip link set "$dev" up || fail "cannot bring $dev up"
    if [ "$command" = online ]; then xenstore-write "$XENBUS_PATH/hotplug-status" connected || fail "cannot write hotplug-status"; fi
    ;;
  offline|remove)
    ip link set "$dev" nomaster 2>/dev/null
    ip link set "$dev" down 2>/dev/null
    [ -n "${XENBUS_PATH:-}" ] && xenstore-rm "$XENBUS_PATH/hotplug-status" 2>/dev/null
    ;;
  *) fail "unknown command" ;;
esac
exit 0
