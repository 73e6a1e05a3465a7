#!/bin/sh
# supercloud: boot a Debian host into Xen safely (issue #6). POSIX sh, runs as root on the host.
#
#   xen-boot.sh [options] facts       key=value facts for xenCapability()
#   xen-boot.sh [options] status      key=value state of the boot entries and of a trial boot
#   xen-boot.sh [options] prepare --fallback-entry E
#                                     GRUB_DEFAULT=saved, Debian's Xen override off, saved_entry=E
#   xen-boot.sh [options] install PKG...   apt-get install (non-interactive)
#   xen-boot.sh [options] regenerate  grub-mkconfig -o <boot>/grub/grub.cfg
#   xen-boot.sh [options] arm --entry E --guard-seconds N
#                                     grub-reboot E (next boot only) + the trial guard unit
#   xen-boot.sh [options] reboot      reboot in 2 s, detached (the SSH command returns first)
#   xen-boot.sh [options] guard       run at boot by the guard unit (see below)
#   xen-boot.sh [options] commit      grub-set-default <trial entry>: Xen becomes permanent
#   xen-boot.sh [options] revert --reason WHY   drop the trial, reboot into the saved default
#   xen-boot.sh [options] disarm      drop the trial (no reboot)
#
# Options (defaults are the real paths; tests point them at temporary directories):
#   --boot DIR          /boot        (GRUB files in DIR/grub: grub.cfg, grubenv)
#   --etc DIR           /etc         (DIR/default/grub.d, DIR/systemd/system)
#   --state DIR         /var/lib/supercloud/xen-boot
#   --xen-dir DIR       /proc/xen
#   --boot-id-file F    /proc/sys/kernel/random/boot_id
#   --xl CMD            xl
#   --mkconfig CMD      grub-mkconfig
#   --reboot-cmd CMD    "systemctl reboot"
#
# The trial guard: `arm` enables a systemd unit that runs `guard` on the next boot. On a
# boot without Xen it records the fallback and removes itself. On a boot under Xen it waits
# for `commit` (the controller confirmed the agent); without one within --guard-seconds it
# removes the trial and reboots: GRUB already consumed the one-shot entry, so that boot is
# the old default again. Whatever happens, a reset lands on the old default: only `commit`
# changes saved_entry.
set -u

boot=/boot
etc=/etc
state=/var/lib/supercloud/xen-boot
xendir=/proc/xen
bootidfile=/proc/sys/kernel/random/boot_id
xl=xl
mkconfig=grub-mkconfig
rebootcmd='systemctl reboot'
entry=
fallback=
guardsecs=900

die () { echo "xen-boot: $*" >&2; exit 1; }

cmd=
rest=
reason=
while [ $# -gt 0 ]; do
  case "$1" in
    --boot) boot=$2; shift 2 ;;
    --etc) etc=$2; shift 2 ;;
    --state) state=$2; shift 2 ;;
    --xen-dir) xendir=$2; shift 2 ;;
    --boot-id-file) bootidfile=$2; shift 2 ;;
    --xl) xl=$2; shift 2 ;;
    --mkconfig) mkconfig=$2; shift 2 ;;
    --reboot-cmd) rebootcmd=$2; shift 2 ;;
    --entry) entry=$2; shift 2 ;;
    --fallback-entry) fallback=$2; shift 2 ;;
    --guard-seconds) guardsecs=$2; shift 2 ;;
    --reason) reason=$2; shift 2 ;;
    -*) die "unknown option $1" ;;
    *) if [ -z "$cmd" ]; then cmd=$1; else rest="$rest $1"; fi; shift ;;
  esac
done
[ -n "$cmd" ] || die "no subcommand"
# Remaining words (package names for install) never contain spaces.
# shellcheck disable=SC2086
set -- $rest

grubenv=$boot/grub/grubenv
unit=supercloud-xen-trial.service
unitfile=$etc/systemd/system/$unit
wants=$etc/systemd/system/multi-user.target.wants/$unit
cfgfile=$etc/default/grub.d/supercloud-xen.cfg

# One line, no newlines: values of key=value output.
oneline () { tr '\n' ' ' | sed 's/[[:space:]]*$//'; }
bootid () { cat "$bootidfile" 2>/dev/null | tr -d '\n'; }
envget () { grub-editenv "$grubenv" list 2>/dev/null | sed -n "s/^$1=//p"; }
xlstate () {
  if ! command -v "$xl" >/dev/null 2>&1; then echo absent
  elif "$xl" info >/dev/null 2>&1; then echo ok
  else echo fail; fi
}
xencaps () { if [ -r "$xendir/capabilities" ]; then cat "$xendir/capabilities" | oneline; else echo absent; fi; }
under_xen () { grep -qw control_d "$xendir/capabilities" 2>/dev/null; }
trialget () { sed -n "s/^$1=//p" "$state/trial" 2>/dev/null; }
ensure_env () {
  mkdir -p "$boot/grub"
  [ -f "$grubenv" ] || grub-editenv "$grubenv" create || die "cannot create $grubenv"
}
disarm () {
  rm -f "$state/trial" "$wants" "$unitfile"
  if [ "$etc" = /etc ] && command -v systemctl >/dev/null 2>&1; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
}
result () { mkdir -p "$state"; printf '%s\n' "$*" > "$state/result"; }

case "$cmd" in
facts)
  echo "arch=$(uname -m)"
  echo "kernel_release=$(uname -r)"
  if [ -r /etc/os-release ]; then
    echo "os_id=$(. /etc/os-release; echo "${ID:-}")"
    echo "os_version_id=$(. /etc/os-release; echo "${VERSION_ID:-}")"
  fi
  echo "cpu_flags=$(sed -n 's/^flags[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)"
  echo "vmx_flags=$(sed -n 's/^vmx flags[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)"
  echo "virt=$(systemd-detect-virt 2>/dev/null || true)"
  echo "sys_vendor=$(cat /sys/class/dmi/id/sys_vendor 2>/dev/null | oneline)"
  echo "product_name=$(cat /sys/class/dmi/id/product_name 2>/dev/null | oneline)"
  echo "hypervisor_type=$(cat /sys/hypervisor/type 2>/dev/null | oneline)"
  echo "xen_caps=$(xencaps)"
  echo "xl_info=$(xlstate)"
  if [ -d /sys/firmware/efi ]; then
    echo efi=yes
    sb=unknown
    for f in /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098e06b8c; do
      [ -r "$f" ] && case "$(od -An -tu1 -j4 -N1 "$f" | tr -d ' ')" in 1) sb=yes ;; 0) sb=no ;; esac
    done
    echo "secure_boot=$sb"
  else
    echo efi=no
    echo secure_boot=no
  fi
  if [ -f "$boot/grub/grub.cfg" ]; then echo grub_cfg=yes; else echo grub_cfg=no; fi
  command -v grub-reboot >/dev/null 2>&1 && echo grub_tools=yes || echo grub_tools=no
  probe=$grubenv; [ -e "$probe" ] || probe=$boot/grub
  echo "grubenv_fs=$(grub-probe --target=fs "$probe" 2>/dev/null | oneline)"
  echo "grubenv_abstraction=$(grub-probe --target=abstraction "$probe" 2>/dev/null | oneline)"
  k=
  for c in "$boot"/config-*; do
    [ -f "$c" ] && grep -qx 'CONFIG_XEN_DOM0=y' "$c" && k="$k ${c#"$boot"/config-}"
  done
  echo "dom0_kernels=${k# }"
  command -v apt-get >/dev/null 2>&1 && echo apt=yes || echo apt=no
  echo "boot_id=$(bootid)"
  ;;

status)
  echo "boot_id=$(bootid)"
  echo "next_entry=$(envget next_entry)"
  echo "saved_entry=$(envget saved_entry)"
  echo "xen_caps=$(xencaps)"
  echo "xl_info=$(xlstate)"
  echo "xen_version=$("$xl" info 2>/dev/null | sed -n 's/^xen_version[[:space:]]*:[[:space:]]*//p' | head -n 1)"
  if [ -f "$state/trial" ]; then echo trial=yes; else echo trial=no; fi
  echo "trial_entry=$(trialget entry)"
  echo "armed_boot_id=$(trialget armed_boot_id)"
  echo "xen_boot_id=$(cat "$state/xen-boot-id" 2>/dev/null | oneline)"
  echo "result=$(cat "$state/result" 2>/dev/null | oneline)"
  echo "guard_enabled=$([ -e "$wants" ] && echo yes || echo no)"
  xb=$(cat "$state/xen-boot-id" 2>/dev/null | tr -d -- '-\n')
  if [ -n "$xb" ] && command -v journalctl >/dev/null 2>&1 && [ "$etc" = /etc ]; then
    echo "xen_boot_errors=$(journalctl -b "$xb" -p err -n 8 -o cat --no-pager 2>/dev/null | oneline | cut -c1-1500)"
  else
    echo xen_boot_errors=
  fi
  ;;

prepare)
  [ -n "$fallback" ] || die "prepare needs --fallback-entry"
  mkdir -p "$etc/default/grub.d" "$state" || die "cannot create $etc/default/grub.d"
  # Sorts before Debian's xen.cfg, which otherwise makes Xen the permanent default on
  # every update-grub (XEN_OVERRIDE_GRUB_DEFAULT unset means 1 there).
  cat > "$cfgfile.tmp" <<'EOF'
# Written by supercloud (xen-boot.sh prepare). Xen is tried for one boot with
# grub-reboot and made the default with grub-set-default only once it worked.
XEN_OVERRIDE_GRUB_DEFAULT=0
GRUB_DEFAULT=saved
EOF
  mv -f "$cfgfile.tmp" "$cfgfile" || die "cannot write $cfgfile"
  ensure_env
  grub-editenv "$grubenv" set "saved_entry=$fallback" || die "cannot set saved_entry in $grubenv"
  grub-editenv "$grubenv" unset prev_saved_entry
  grub-editenv "$grubenv" list
  ;;

install)
  [ $# -gt 0 ] || die "install needs package names"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Options::=--force-confold "$@" || die "apt-get install $* failed"
  ;;

regenerate)
  mkdir -p "$boot/grub"
  $mkconfig -o "$boot/grub/grub.cfg" || die "$mkconfig -o $boot/grub/grub.cfg failed"
  ;;

arm)
  [ -n "$entry" ] || die "arm needs --entry"
  ensure_env
  mkdir -p "$state" "$etc/systemd/system/multi-user.target.wants" || die "cannot create $state"
  self=$state/xen-boot.sh
  [ -f "$self" ] || die "$self missing: copy this script there first"
  rm -f "$state/result" "$state/xen-boot-id"
  {
    echo "entry=$entry"
    echo "armed_boot_id=$(bootid)"
    echo "armed_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } > "$state/trial.tmp" && mv -f "$state/trial.tmp" "$state/trial" || die "cannot write $state/trial"
  q () { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
  cat > "$unitfile" <<EOF
[Unit]
Description=supercloud: confirm or undo a trial boot into Xen
After=local-fs.target

[Service]
Type=simple
ExecStart=/bin/sh $(q "$self") --boot $(q "$boot") --etc $(q "$etc") --state $(q "$state") --xen-dir $(q "$xendir") --boot-id-file $(q "$bootidfile") --xl $(q "$xl") --reboot-cmd $(q "$rebootcmd") --guard-seconds $guardsecs guard

[Install]
WantedBy=multi-user.target
EOF
  ln -sf "../$unit" "$wants" || die "cannot enable $unit"
  if [ "$etc" = /etc ] && command -v systemctl >/dev/null 2>&1; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
  # Last, once everything else is in place: the one-shot entry.
  grub-reboot --boot-directory="$boot" "$entry" >/dev/null || die "grub-reboot $entry failed"
  [ "$(envget next_entry)" = "$entry" ] || die "next_entry did not stick in $grubenv"
  grub-editenv "$grubenv" list
  ;;

reboot)
  nohup sh -c "sleep 2; $rebootcmd" >/dev/null 2>&1 </dev/null &
  echo rebooting
  ;;

guard)
  [ -f "$state/trial" ] || exit 0
  now=$(bootid)
  [ "$now" != "$(trialget armed_boot_id)" ] || exit 0
  if ! under_xen; then
    result "fallback: boot $now came up without Xen"
    disarm
    exit 0
  fi
  echo "$now" > "$state/xen-boot-id"
  waited=0
  while [ -f "$state/trial" ] && [ "$waited" -lt "$guardsecs" ]; do sleep 1; waited=$((waited + 1)); done
  [ -f "$state/trial" ] || exit 0
  result "guard: boot $now under Xen was not confirmed within $guardsecs s; rebooted into the previous default entry"
  disarm
  sync
  $rebootcmd
  ;;

commit)
  e=$entry; [ -n "$e" ] || e=$(trialget entry)
  [ -n "$e" ] || die "commit: no trial entry and no --entry"
  under_xen || die "commit refused: this boot is not under Xen (no control_d in $xendir/capabilities)"
  grub-set-default --boot-directory="$boot" "$e" >/dev/null || die "grub-set-default $e failed"
  [ "$(envget saved_entry)" = "$e" ] || die "saved_entry did not stick in $grubenv"
  disarm
  result "committed: $e is the default"
  grub-editenv "$grubenv" list
  ;;

revert)
  result "reverted: ${reason:-by the controller}"
  disarm
  grub-editenv "$grubenv" unset next_entry 2>/dev/null
  nohup sh -c "sleep 2; sync; $rebootcmd" >/dev/null 2>&1 </dev/null &
  echo rebooting
  ;;

disarm)
  disarm
  ;;

*)
  die "unknown subcommand $cmd"
  ;;
esac
