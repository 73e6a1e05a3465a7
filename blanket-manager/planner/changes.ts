/**
 * What a plan does, as its user weighs it (pure): every change is a create, an update in place
 * (possibly a restart of the guest on its existing disks), a move (live migration, disks
 * included), a replace (the old one is destroyed, a new one made) or a delete. A replace or
 * delete of something that holds data (a VM's disks, a host's VMs) says what is lost.
 */
import { SupercloudError } from '../../core/errors.ts'
import { formatBytes } from '../../core/units.ts'
import type { DiskSpec, ImageSpec, Spec } from '../../core/spec.ts'
import type { Plan } from './plan.ts'

/** `up` would destroy data (disks, a host's guests) and was not allowed to (no --yes, no terminal, or declined). */
export class PlanDestroysDataError extends SupercloudError {
  constructor (readonly lost: string[], declined = false) {
    super('SC_PLAN_DESTROYS_DATA', `the plan destroys data: ${lost.join('; ')}; ${declined ? 'not confirmed' : 'no terminal to confirm on'}: nothing was changed (check the plan; \`up --yes\` applies it)`, { exitCode: 2 })
  }
}

/** Refuses `--replace` of a VM the spec does not have or that was never made (SC_USAGE). */
export function checkReplace (spec: Spec, state: { vm: (name: string) => unknown }, names: string[]): void {
  for (const n of names) {
    if (spec.vms[n] === undefined || state.vm(n) === undefined) throw new SupercloudError('SC_USAGE', `--replace vm/${n}: no VM '${n}' ${spec.vms[n] === undefined ? 'in the spec' : 'was made yet'}`, { exitCode: 2 })
  }
}

export type ChangeOp = 'create' | 'update' | 'move' | 'replace' | 'delete'

export interface Change {
  op: ChangeOp
  /** What changes: 'vm db1', 'host h1', 'network local', 'virtualwire'. */
  subject: string
  /** The rest of the human line after the subject, e.g. 'on h1 [198.18.1.100/24]'. */
  detail: string
  reason: string
  /** An update that stops the guest and starts it again on its existing disks. */
  restart?: boolean
  /** Data this change destroys, one item each ('disk data (64 MiB) of db1'); absent when none. */
  destroysData?: string[]
}

/** A VM's data as the state knows it: what a replace or delete of it loses. */
export interface VmData {
  name: string
  /** Data disks on its host. */
  disks: DiskSpec[]
  /** Its image, when the image writes to a per-VM overlay (qcow2). */
  image?: ImageSpec
}

/** '64 MiB', '1.5 GiB'. */
export function humanBytes (n: number): string {
  return formatBytes(n).replace(/([KMGT])$/, ' $1iB')
}

/** What destroying `vm` loses; empty when it holds no data (no disks, no writable root disk). */
export function vmDataLoss (vm: VmData): string[] {
  const out = vm.disks.map(d => `disk ${d.name} (${humanBytes(d.sizeBytes)}) of ${vm.name}`)
  if (vm.image?.kind === 'qcow2') out.unshift(`root disk of ${vm.name} (writes on top of image ${vm.image.name})`)
  return out
}

/** What destroying a host loses: each of its VMs, with their disks. Empty without VMs. */
export function hostDataLoss (host: string, vms: VmData[]): string[] {
  return vms.map(v => {
    const lost = vmDataLoss(v)
    return `vm ${v.name} on host ${host}${lost.length > 0 ? `: ${lost.join(', ')}` : ''}`
  })
}

const SYMBOL: Record<ChangeOp, string> = { create: '+', update: '~', move: '>', replace: '-/+', delete: '-' }

export function changeSymbol (op: ChangeOp): string {
  return SYMBOL[op]
}

/** One human line per change; lines that lose data say so (in red when `color`). */
export function describeChange (c: Change, color = false): string {
  const line = `${SYMBOL[c.op]} ${c.subject}${c.detail !== '' ? ` ${c.detail}` : ''}  (${c.reason})`
  if (c.destroysData === undefined || c.destroysData.length === 0) return line
  const text = `${line}  DATA LOSS: ${c.destroysData.join('; ')}`
  return color ? `\x1b[31m${text}\x1b[0m` : text
}

/** Every item of data the changes destroy (empty: the plan loses nothing). */
export function dataLoss (changes: Change[]): string[] {
  return changes.flatMap(c => c.destroysData ?? [])
}

/** The plan's classification for `plan --json`. */
export function changesJson (changes: Change[]): Array<{ op: ChangeOp, subject: string, reason: string, restart: boolean, destroysData: string[] }> {
  return changes.map(c => ({ op: c.op, subject: c.subject, reason: c.reason, restart: c.restart === true, destroysData: c.destroysData ?? [] }))
}

/**
 * The plan as a human reads it: one line per change (`+` create, `~` update, `>` move, `-/+`
 * replace, `-` delete; a line that loses data says so, in red when `color`), then `!` for what is held back.
 */
export function describePlan (p: Plan, color = false): string[] {
  return [...p.changes.map(c => describeChange(c, color)), ...(p.held ?? []).map(h => `! ${h}`)]
}
