/**
 * A Xen guest's Overdriver swap disk: the dom0's kernel NBD client on the agent's swap export
 * (a unix socket), the device linked at <runDir>/swap.nbd for the domain config to name.
 */
import type { GuestDefinition } from '../hypervisor.ts'
import { xenSwapLink } from './config.ts'
import type { DomShell } from './console.ts'
import { XenGuestStartError } from './errors.ts'

/** Owner files of the claimed NBD devices in the dom0 (one per device: the link that claimed it). */
const NBD_OWNERS = '/run/sc-nbd'

/**
 * Connects a free NBD device of the dom0 to the guest's swap export (nbd-client on the
 * agent's unix socket) and links it at <runDir>/swap.nbd, which the domain config names.
 * Each claimed device has an owner file (NBD_OWNERS/<dev>: the link that claimed it), so a
 * link left from an earlier start is reused only when its device is still connected for this
 * guest, never when another guest has claimed the device since.
 */
export async function connectSwap (sh: DomShell, name: string, runDir: string, swap: NonNullable<GuestDefinition['swap']>): Promise<string> {
  const r = await sh([
    'sock=$1 exp=$2 link=$3 owners=$4',
    'connected () { [ -e "/sys/block/$1/pid" ] || [ "$(cat "/sys/block/$1/size" 2>/dev/null || echo 0)" != 0 ]; }',
    'if [ -L "$link" ]; then d=$(readlink "$link"); n=${d##*/}',
    '  if [ "$(cat "$owners/$n" 2>/dev/null)" = "$link" ] && connected "$n"; then echo "$d"; exit 0; fi',
    '  rm -f "$link"',
    'fi',
    '[ -e /sys/block/nbd0 ] || { echo "no NBD devices in the dom0 (nbd module)" >&2; exit 3; }',
    'mkdir -p "$owners"',
    // Devices are claimed under a lock (guests start concurrently); a lock whose holder died is broken.
    'lock=/run/sc-nbd.lock i=0',
    'until mkdir "$lock" 2>/dev/null; do',
    '  p=$(cat "$lock/pid" 2>/dev/null); if [ -n "$p" ] && ! kill -0 "$p" 2>/dev/null; then rm -rf "$lock"; continue; fi',
    '  i=$((i + 1)); [ "$i" -lt 300 ] || { echo "$lock held for 30 s" >&2; exit 4; }; sleep 0.1',
    'done',
    'echo $$ > "$lock/pid"; trap "rm -rf $lock" EXIT',
    'for s in /sys/block/nbd*; do',
    '  n=${s##*/}',
    '  connected "$n" && continue',
    '  nbd-client -unix "$sock" "/dev/$n" -N "$exp" -b 4096 >&2 || exit 5',
    '  printf "%s\\n" "$link" > "$owners/$n" && ln -sfn "/dev/$n" "$link" && echo "/dev/$n" && exit 0',
    '  exit 7',
    'done',
    'echo "every NBD device of the dom0 is in use" >&2; exit 6'
  ].join('\n'), [swap.socketPath, swap.exportName ?? 'swap', xenSwapLink(runDir), NBD_OWNERS], { timeoutMs: 60_000 })
  if (r.code !== 0) throw new XenGuestStartError(name, `cannot connect the swap disk to ${swap.socketPath}`, r.stderr)
  return r.stdout.trim()
}

/** Disconnects the NBD device linked at <runDir>/swap.nbd, if any and if this guest still owns it (after the domain is gone). */
export async function disconnectSwap (sh: DomShell, runDir: string): Promise<void> {
  await sh('link=$1 owners=$2; [ -L "$link" ] || exit 0; d=$(readlink "$link"); n=${d##*/}; ' +
    'if [ "$(cat "$owners/$n" 2>/dev/null)" = "$link" ]; then nbd-client -d "$d" >/dev/null 2>&1; rm -f "$owners/$n"; fi; rm -f "$link"',
  [xenSwapLink(runDir), NBD_OWNERS], { timeoutMs: 30_000 })
}
