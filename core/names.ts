/**
 * Names: the spec's rule for the names of hosts, VMs, sites and the supercloud (checked before
 * any path, device or file name is built from one), and the names derived from them.
 */
import { createHash } from 'node:crypto'

/** The spec's name rule: lower-case letters, digits and '-', starting with a letter, not ending with '-'. */
export const NAME_RULE = /^[a-z]([a-z0-9-]*[a-z0-9])?$/
/** The longest VM name (QEMU and xl ids, TAP and file names are built from it). */
export const VM_NAME_MAX = 32

/** Whether `name` is a spec name of at most `max` characters. */
export function isName (name: unknown, max = 63): name is string {
  return typeof name === 'string' && name.length <= max && NAME_RULE.test(name)
}

/** Whether `name` may name a VM (checked by the agent before it builds a path from it). */
export function isVmName (name: unknown): name is string {
  return typeof name === 'string' && /^[a-z][a-z0-9-]{0,31}$/.test(name)
}

function shortHash (...parts: string[]): string {
  return createHash('sha256').update(parts.join('\0')).digest('hex')
}

/** Deterministic locally administered MAC (52:54:00 is QEMU's prefix; we set the local bit too). */
export function macFor (supercloud: string, vm: string, nic: string): string {
  const h = shortHash('mac', supercloud, vm, nic)
  return `52:54:${h.slice(0, 2)}:${h.slice(2, 4)}:${h.slice(4, 6)}:${h.slice(6, 8)}`
}

/** TAP name: "<prefix>t" + 6 hex chars of (vm, nic) — unique per supercloud, <= 15 chars. */
export function tapFor (prefix: string, vm: string, nic: string): string {
  return `${prefix}t${shortHash('tap', vm, nic).slice(0, 6)}`.slice(0, 15)
}

const ID_RE = /^[0-9a-f]{8,32}$/

/** Whether `id` is a migration id this module produces (hex), safe in file and bitmap names. */
export function isMigrationId (id: unknown): id is string {
  return typeof id === 'string' && ID_RE.test(id)
}

