/**
 * The agent protocol's schemas (pure): for every RPC method what its params and its result
 * are (AgentMethods, the type map the server's dispatch and the client's call() take their
 * types from) and a validator of each (AGENT_SCHEMAS), and the events the agent pushes.
 * The agent checks every request before dispatch, so a name that becomes part of a path or a
 * device (VM, disk, TAP, bridge names, migration ids) has passed its rule before any path is
 * built; the client checks the results it relies on and every push.
 */
import { SupercloudError } from '../../core/errors.ts'
import { isVmName } from '../../core/names.ts'
import { isMigrationSecurity, migrationTlsProblem, type MigrationProgress, type MigrationTls } from '../../core/migration.ts'
import type { MigrationSummary } from '../../drivers/qemu/migration.ts'
import type { GuestFirewall, L2fwRule } from '../../images/guest/cmdline.ts'
import type { ControllerPolicy, HostView } from '../../overdriver/decision/decide.ts'
import type { RepositoryRef, SectorTableJson } from '../../overdriver/coopswap/sector-table.ts'
import type { DirtyStatus } from '../migration/disk-reuse.ts'
import { validateEventInput } from '../events/schema.ts'
import type { AccelChoice, AdoptTableParams, AdoptTableResult, AgentMethod, AttachParams, BalloonParams, StopParams, BitmapParams, ConfigureParams, DestroyParams, HandoverParams, HelloResult, IncomingParams, IncomingResult, IssueParams, MigratedParams, NameParams, OutgoingParams, ProbeParams, RepositoryGrantJson, RepositoryInfo, RepositoryParams, SwapLaunch, SwitchesParams, UpdateParams, UpdateResult, VmImage, VmInfo, VmLaunch, VmStats } from './protocol.ts'
import type { GuestPlugged } from '../../drivers/hypervisor.ts'
import { FieldError, absPath, anyObject, arr, bool, byKind, check, count, deviceName, devicePrefix, guard, hex, listenPort, mac, migrationId, none, nonEmpty, num, obj, oneOf, opt, port, nonNegative, specName, isAbsPath, str, tuple, vmName, type Schema } from './validate.ts'

/** Requests without parameters. */
export type NoParams = Record<never, never>

/** For every method: what it takes and what it answers (null: nothing). */
export interface AgentMethods {
  'agent.hello': { params: NoParams, result: HelloResult }
  'host.probe': { params: ProbeParams, result: AccelChoice }
  'vm.create': { params: VmLaunch, result: VmInfo }
  'vm.destroy': { params: DestroyParams, result: null }
  'vm.status': { params: NameParams, result: VmInfo }
  'vm.list': { params: NoParams, result: VmInfo[] }
  'vm.stats': { params: NameParams, result: VmStats }
  'vm.balloon': { params: BalloonParams, result: null }
  'vm.stop': { params: StopParams, result: null }
  'vm.update': { params: UpdateParams, result: UpdateResult }
  'vm.console': { params: NameParams, result: { path: string } }
  'vm.migrate.incoming': { params: IncomingParams, result: IncomingResult }
  'vm.migrate.outgoing': { params: OutgoingParams, result: MigrationSummary }
  'vm.migrate.continue': { params: NameParams, result: null }
  'vm.migrate.cancel': { params: NameParams, result: null }
  'vm.migrate.finish': { params: NameParams, result: VmInfo }
  'vm.migrate.active': { params: NameParams, result: { active: boolean } }
  'vm.migrate.mark': { params: BitmapParams, result: { nodes: string[] } }
  'vm.migrate.dirty': { params: BitmapParams, result: DirtyStatus }
  'vm.departed.drop': { params: NameParams, result: null }
  'vw.switches': { params: SwitchesParams, result: null }
  'vw.attach': { params: AttachParams, result: null }
  'agent.shutdown': { params: NoParams, result: null }
  'host.watch': { params: { host: string }, result: { watching: boolean } }
  'overdriver.configure': { params: ConfigureParams, result: { vms: string[] } }
  'overdriver.subscribe': { params: NoParams, result: null }
  'overdriver.repository': { params: RepositoryParams, result: RepositoryInfo }
  'overdriver.issue': { params: IssueParams, result: RepositoryGrantJson }
  'overdriver.stats': { params: NoParams, result: Record<string, unknown> }
  'overdriver.migrated': { params: MigratedParams, result: null }
  'overdriver.table.export': { params: NameParams, result: { table: SectorTableJson } }
  'overdriver.table.adopt': { params: AdoptTableParams, result: AdoptTableResult }
  'overdriver.table.handover': { params: HandoverParams, result: null }
}

export type AgentParams<M extends AgentMethod> = AgentMethods[M]['params']
export type AgentResult<M extends AgentMethod> = AgentMethods[M]['result']

// Names and values the agent builds paths, devices or processes from.
const diskName = specName(32)
const nicName = specName(15)
const hostName = specName(63)
const positive = guard('a whole number > 0', (v): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0)
const migrationMode = oneOf('auto', 'precopy', 'postcopy', 'hybrid')
/** An address the agent listens on or connects to (IPv4, IPv6 or a host name), not a path. */
/** A migration's TLS credentials ({ identity, key: 64 hex }) or 'off' (clear text, asked explicitly). */
const migrationSecurity = guard('TLS credentials { identity, key, x509? } or \'off\'', isMigrationSecurity)
const address = guard('an address (IPv4, IPv6 or host name)', (v): v is string => typeof v === 'string' && /^[A-Za-z0-9.:-]{1,253}$/.test(v))

/** A probe without a test guest image (accel forced) sends ''. */
const absPathOrNone = guard('an absolute path without \'..\', or \'\'', (v): v is string => v === '' || isAbsPath(v))

const noParams = obj<NoParams>({})
const nameParams = obj<NameParams>({ name: vmName })

const accelChoice = obj<AccelChoice>({ mode: oneOf('kvm', 'tcg', 'xen'), reason: str, probed: bool })

/** A page repository's TLS-PSK credential ({ identity, key: 64 hex }); a grant without one is refused (no clear text). */
const repositoryTls = guard('TLS credentials { identity, key }', (v): v is MigrationTls => migrationTlsProblem(v) === undefined)
const repositoryGrant = obj<RepositoryGrantJson>({ address: obj<RepositoryGrantJson['address']>({ host: address, port }), capability: hex, tls: repositoryTls })
const swapLaunch = obj<SwapLaunch>({ sizeBytes: positive, repositories: opt(arr(repositoryGrant)) })

const firewall = obj<GuestFirewall>({
  between: tuple(deviceName, deviceName),
  rules: opt(arr(obj<L2fwRule>({ action: oneOf('allow', 'drop'), match: str }))),
  default: opt(oneOf('allow', 'drop'))
})

const vmImage = byKind<VmImage>({
  kernel: obj<Extract<VmImage, { kind: 'kernel' }>>({ kind: oneOf('kernel'), kernel: absPath, initrd: opt(absPath), append: opt(str), readyMarker: opt(str) }),
  qcow2: obj<Extract<VmImage, { kind: 'qcow2' }>>({ kind: oneOf('qcow2'), path: absPath })
})

/** Hot-plug ports by device id (drivers/qemu/hotplug.ts checks ids and port numbers against the launch). */
const ports = guard('device id -> port number', (v): v is Record<string, number> => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every(x => Number.isSafeInteger(x) && (x as number) >= 0))
const vmReasons = guard('VM name -> reason', (v): v is Record<string, string> => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.entries(v).every(([k, x]) => isVmName(k) && typeof x === 'string'))
const plugged = obj<GuestPlugged>({ bootCpus: positive, bootMemoryBytes: positive, dimmBytes: arr(positive), ports })

type Nic = VmLaunch['nics'][number]
const vmLaunch = obj<VmLaunch>({
  name: vmName,
  cpus: positive,
  memory: obj<VmLaunch['memory']>({ requestedBytes: positive, allocatedBytes: positive }),
  image: vmImage,
  disks: arr(obj<VmLaunch['disks'][number]>({ name: diskName, sizeBytes: positive })),
  nics: arr(obj<Nic>({ name: nicName, mac, tap: deviceName, address: str, bridge: opt(deviceName), mtu: opt(positive) })),
  gateway: opt(str),
  firewall: opt(firewall),
  swap: opt(swapLaunch),
  bootTimeoutMs: nonNegative,
  plugged: opt(plugged)
})

const vmInfo = obj<VmInfo>({ name: str, state: oneOf('running', 'paused', 'shutdown', 'absent', 'other'), pid: opt(count), detail: opt(str), accel: opt(str) })

const policy = obj<ControllerPolicy>({
  intervalMs: check(count, v => v >= 100 ? undefined : `must be at least 100 (ms), got ${v}`),
  overloadOpsPerSec: nonNegative,
  window: obj<ControllerPolicy['window']>({ size: positive, sustained: positive }),
  initialThresholdMs: nonNegative,
  adaptive: obj<ControllerPolicy['adaptive']>({ enabled: bool, baseCount: count }),
  quietIntervals: count,
  arrivalGraceIntervals: opt(count),
  migrationTimeoutMs: opt(nonNegative)
})

const sectorTable = obj<SectorTableJson>({
  version: guard('1 or 2', (v): v is 1 | 2 => v === 1 || v === 2),
  pageSize: positive,
  repositories: arr(obj<RepositoryRef>({ address: str, capability: hex })),
  entries: arr(tuple(count, count, count, count)),
  sums: opt(str)
})

const switchPort = obj<SwitchesParams['switches'][number]['ports'][number]>({ port: str, endpointBridge: deviceName, link: deviceName, peer: deviceName })

/** Every method's params and result validators. */
export const AGENT_SCHEMAS: { [M in AgentMethod]: { params: Schema<AgentParams<M>>, result: Schema<AgentResult<M>> } } = {
  'agent.hello': {
    params: noParams,
    result: obj<HelloResult>({ protocol: nonNegative, build: str, pid: nonNegative, hostname: str, stateDir: str, bridge: str, qemuVersion: str, memTotalBytes: nonNegative, cpus: nonNegative, accel: opt(accelChoice) })
  },
  'host.probe': { params: obj<ProbeParams>({ kernel: absPathOrNone, initrd: absPathOrNone, timeoutMs: positive, want: oneOf('auto', 'kvm', 'tcg') }), result: accelChoice },
  'vm.create': { params: vmLaunch, result: vmInfo },
  'vm.destroy': { params: obj<DestroyParams>({ name: vmName, nics: opt(arr(obj<{ tap: string }>({ tap: deviceName }))), keep: opt(migrationId) }), result: none },
  'vm.status': { params: nameParams, result: vmInfo },
  'vm.list': { params: noParams, result: arr(vmInfo) },
  'vm.stats': { params: nameParams, result: obj<VmStats>({ name: str, memoryBytes: nonNegative, balloonActualBytes: nonNegative, residentBytes: nonNegative }) },
  'vm.balloon': { params: obj<BalloonParams>({ name: vmName, bytes: positive }), result: none },
  'vm.stop': { params: obj<StopParams>({ name: vmName, timeoutMs: nonNegative }), result: none },
  'vm.update': { params: obj<UpdateParams>({ launch: vmLaunch }), result: obj<UpdateResult>({ plugged }) },
  'vm.console': { params: nameParams, result: obj<{ path: string }>({ path: nonEmpty }) },
  'vm.migrate.incoming': {
    params: obj<IncomingParams>({ launch: vmLaunch, listenIp: address, mode: migrationMode, tls: opt(migrationSecurity), reuse: opt(migrationId) }),
    result: obj<IncomingResult>({ migrationPort: port, nbdPort: count, diskNodes: opt(arr(str)), reusedNodes: opt(arr(str)), selfConfig: opt(str) })
  },
  'vm.migrate.outgoing': {
    params: obj<OutgoingParams>({
      name: vmName,
      destIp: address,
      migrationPort: port,
      nbdPort: count,
      mode: migrationMode,
      maxDowntimeMs: nonNegative,
      bandwidth: opt(nonNegative),
      deadlineMs: positive,
      holdAtSwitchover: bool,
      tls: opt(migrationSecurity),
      incremental: opt(obj<NonNullable<OutgoingParams['incremental']>>({ id: migrationId, nodes: arr(str) })),
      selfConfig: opt(str)
    }),
    result: obj<MigrationSummary>({
      mode: migrationMode,
      postcopy: bool,
      totalMs: nonNegative,
      downtimeMs: nonNegative,
      sentBytes: nonNegative,
      iterations: nonNegative,
      diskSentBytes: nonNegative,
      diskSizeBytes: nonNegative,
      diskReused: bool,
      switchoverHoldMs: opt(nonNegative)
    })
  },
  'vm.migrate.continue': { params: nameParams, result: none },
  'vm.migrate.cancel': { params: nameParams, result: none },
  'vm.migrate.finish': { params: nameParams, result: vmInfo },
  'vm.migrate.active': { params: nameParams, result: obj<{ active: boolean }>({ active: bool }) },
  'vm.migrate.mark': { params: obj<BitmapParams>({ name: vmName, id: migrationId }), result: obj<{ nodes: string[] }>({ nodes: arr(str) }) },
  'vm.migrate.dirty': { params: obj<BitmapParams>({ name: vmName, id: migrationId }), result: obj<DirtyStatus>({ present: bool, dirtyBytes: nonNegative, sizeBytes: nonNegative }) },
  'vm.departed.drop': { params: nameParams, result: none },
  'vw.switches': {
    params: obj<SwitchesParams>({
      prefix: devicePrefix,
      switches: arr(obj<SwitchesParams['switches'][number]>({ name: specName(32), bridge: deviceName, mtu: positive, ports: arr(switchPort) }))
    }),
    result: none
  },
  'vw.attach': { params: obj<AttachParams>({ taps: arr(obj<AttachParams['taps'][number]>({ tap: deviceName, bridge: deviceName, mtu: opt(positive) })) }), result: none },
  'agent.shutdown': { params: noParams, result: none },
  'host.watch': { params: obj<{ host: string }>({ host: hostName }), result: obj<{ watching: boolean }>({ watching: bool }) },
  'overdriver.configure': {
    params: obj<ConfigureParams>({ host: hostName, policy, hosts: opt(arr(obj<HostView>({ name: hostName, migrationSpaceBytes: nonNegative, noMigration: opt(str), refuses: opt(vmReasons) }))) }),
    result: obj<{ vms: string[] }>({ vms: arr(str) })
  },
  'overdriver.subscribe': { params: noParams, result: none },
  'overdriver.repository': {
    params: obj<RepositoryParams>({ host: address, port: opt(listenPort), capacityBytes: positive }),
    result: obj<RepositoryInfo>({ host: address, port, capacityPages: positive })
  },
  'overdriver.issue': { params: obj<IssueParams>({ vm: vmName, maxPages: opt(positive) }), result: repositoryGrant },
  'overdriver.stats': { params: noParams, result: anyObject },
  'overdriver.migrated': { params: obj<MigratedParams>({ name: vmName, ok: bool }), result: none },
  'overdriver.table.export': { params: nameParams, result: obj<{ table: SectorTableJson }>({ table: sectorTable }) },
  'overdriver.table.adopt': { params: obj<AdoptTableParams>({ name: vmName, table: sectorTable }), result: obj<AdoptTableResult>({ adopted: count, skipped: count, repositories: count }) },
  'overdriver.table.handover': { params: obj<HandoverParams>({ name: vmName, ok: bool }), result: none }
}

export function isAgentMethod (m: unknown): m is AgentMethod {
  return typeof m === 'string' && Object.prototype.hasOwnProperty.call(AGENT_SCHEMAS, m)
}

/**
 * The agent's check of a request's params (missing params count as {}): the params as their
 * type, or SC_AGENT_BAD_REQUEST naming the method and the field.
 */
export function parseParams<M extends AgentMethod> (method: M, params: unknown): AgentParams<M> {
  const schema: Schema<AgentParams<M>> = AGENT_SCHEMAS[method].params
  try {
    return schema.parse(params ?? {}, 'params')
  } catch (err) {
    if (err instanceof FieldError) throw new SupercloudError('SC_AGENT_BAD_REQUEST', `${method}: ${err.message}`)
    throw err
  }
}

/** The client's check of a result: the result as its type, or a FieldError naming the field. */
export function parseResult<M extends AgentMethod> (method: M, result: unknown): AgentResult<M> {
  const schema: Schema<AgentResult<M>> = AGENT_SCHEMAS[method].result
  return schema.parse(result, 'result')
}

// Pushed events.

/** vm.migrate.outgoing's progress, pushed while the migration runs (Xen's carries xl's message). */
export interface MigrationProgressPush extends MigrationProgress { type: 'migration.progress', ts: string, vm: string, message?: string }
/** vm.migrate.outgoing reached the switchover (held there when holdAtSwitchover). */
export interface SwitchoverPush { type: 'migration.switchover', ts: string, vm: string }

const progressPush = obj<MigrationProgressPush>({
  type: oneOf('migration.progress'),
  ts: str,
  vm: vmName,
  phase: oneOf('preparing', 'disks', 'memory', 'postcopy', 'switchover', 'completed', 'failed', 'cancelled'),
  sentBytes: num,
  remainingBytes: num,
  dirtyRate: num,
  iteration: num,
  fraction: num,
  message: opt(str)
})
const switchoverPush = obj<SwitchoverPush>({ type: oneOf('migration.switchover'), ts: str, vm: vmName })

const stamped = obj<{ type: string, ts: string }>({ type: str, ts: str })
/** An overload.* event (overdriver.subscribe) or host.interruption / host.rebalance (host.watch): checked against the event schema (blanket-manager/events/schema.ts). */
const overloadPush: Schema<{ type: string, ts: string }> = {
  parse: (v, at) => {
    const r = validateEventInput(v)
    if (!r.ok) throw new FieldError(at, r.issues.join('; '))
    return stamped.parse(v, at)
  }
}

/** The schema of every event the agent pushes, by type. */
export const PUSH_SCHEMAS: Record<string, Schema<{ type: string, ts: string }>> = {
  'migration.progress': progressPush,
  'migration.switchover': switchoverPush,
  'overload.started': overloadPush,
  'overload.classified': overloadPush,
  'overload.swap': overloadPush,
  'overload.threshold': overloadPush,
  'overload.migration-decided': overloadPush,
  'overload.ended': overloadPush,
  'host.interruption': overloadPush,
  'host.rebalance': overloadPush
}

/** A request as the agent received it: its id, a method it knows, params not checked yet (parseParams). */
export interface AgentRequestLine { id: number, method: AgentMethod, params: unknown }

/**
 * Parses one line the agent received. Not JSON or no id: SC_AGENT_BAD_REQUEST (`id` -1, the
 * reply cannot be matched); a method it does not know: SC_AGENT_UNKNOWN_METHOD with `id`.
 */
export function parseRequestLine (line: string): AgentRequestLine | { id: number, error: SupercloudError } {
  let msg: Record<string, unknown>
  let id: number
  try {
    msg = anyObject.parse(JSON.parse(line), 'request')
    id = messageId.parse(msg.id, 'request.id')
  } catch (err) {
    return { id: -1, error: new SupercloudError('SC_AGENT_BAD_REQUEST', `malformed request: ${(err as Error).message}`) }
  }
  if (typeof msg.method !== 'string') return { id, error: new SupercloudError('SC_AGENT_BAD_REQUEST', `malformed request: request.method must be a string, got ${JSON.stringify(msg.method) ?? 'nothing'}`) }
  if (!isAgentMethod(msg.method)) return { id, error: new SupercloudError('SC_AGENT_UNKNOWN_METHOD', `unknown method '${msg.method}'`) }
  return { id, method: msg.method, params: msg.params }
}

/** One line from the agent: a push, or the response to request `id`. */
export type AgentMessage =
  | { kind: 'push', event: { type: string, ts: string, [k: string]: unknown } }
  | { kind: 'result', id: number, result: unknown }
  | { kind: 'error', id: number, code: string, message: string }

const messageId = guard('a whole number', (v): v is number => typeof v === 'number' && Number.isSafeInteger(v))
const responseError = obj<{ code: string, message: string }>({ code: nonEmpty, message: str })

/** Parses one line the client received; throws a FieldError when it is no message of the protocol. */
export function parseAgentMessage (line: string): AgentMessage {
  let raw: unknown
  try { raw = JSON.parse(line) } catch { throw new FieldError('message', 'must be JSON') }
  const msg = anyObject.parse(raw, 'message')
  if ('event' in msg) {
    const ev = anyObject.parse(msg.event, 'event')
    const schema = typeof ev.type === 'string' && Object.prototype.hasOwnProperty.call(PUSH_SCHEMAS, ev.type) ? PUSH_SCHEMAS[ev.type] : undefined
    if (schema === undefined) throw new FieldError('event.type', `must be one of ${Object.keys(PUSH_SCHEMAS).join(', ')}, got ${JSON.stringify(ev.type)}`)
    schema.parse(ev, 'event')
    return { kind: 'push', event: { ...ev, type: str.parse(ev.type, 'event.type'), ts: str.parse(ev.ts, 'event.ts') } }
  }
  const id = messageId.parse(msg.id, 'message.id')
  if (msg.ok === true) return { kind: 'result', id, result: msg.result }
  if (msg.ok === false) { const e = responseError.parse(msg.error, 'message.error'); return { kind: 'error', id, code: e.code, message: e.message } }
  throw new FieldError('message.ok', `must be true or false, got ${JSON.stringify(msg.ok)}`)
}
