/**
 * The agent's guest manager: disks, TAP devices on the host bridge, and the
 * hypervisor backend (through HypervisorBackend only: this module names no backend).
 * Everything here touches the host (processes, kernel links, files).
 */
import { execFile } from 'node:child_process'
import { mkdir, readdir, readFile, rename, rm, stat, truncate, writeFile, access } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { GuestDefinition, HypervisorBackend, AccelMode, MigratingGuest, MigrationSummary } from '../../drivers/hypervisor.ts'
import { guestCmdline } from '../../images/guest/cmdline.ts'
import { GuestBootError, SupercloudError } from '../../core/errors.ts'
import type { IncomingParams, IncomingResult, OutgoingParams, SwitchesParams, UpdateResult, VmInfo, VmLaunch, VmStats } from './protocol.ts'
import { AgentOverdriver } from './overdriver-host.ts'
import type { DirtyStatus } from '../migration/disk-reuse.ts'
import { isMigrationId } from '../../core/names.ts'

/** A VM's disk images kept on a host it migrated away from (disk reuse on return). */
interface Departed {
  /** The migration that left them. */
  id: string
  at: string
  disks: Array<{ node: string, file: string }>
}

const run = promisify(execFile)

export class VmManager {
  constructor (
    private readonly dir: string,
    private readonly bridge: string,
    private readonly backend: HypervisorBackend,
    private readonly accel: () => AccelMode
  ) {
    this.overdriver = new AgentOverdriver(join(dir, 'vms'))
  }

  /** Swap exports, page repository and the overload loop (Overdriver). */
  readonly overdriver: AgentOverdriver

  vmDir (name: string): string { return join(this.dir, 'vms', name) }
  /** Where a VM's disk images wait for its return after it migrated away (at most one set per VM). */
  departedDir (name: string): string { return join(this.dir, 'departed', name) }
  runDir (name: string): string { return join(this.vmDir(name), 'run') }

  async create (l: VmLaunch, signal?: AbortSignal): Promise<VmInfo> {
    const current = await this.backend.status(l.name, this.runDir(l.name))
    if (current.state === 'running' || current.state === 'paused') return { ...current, accel: this.accel() }
    // One deadline for the whole create (start and boot): the controller waits bootTimeoutMs plus a
    // margin for the reply, so a slow host answers with the guest's console rather than going silent.
    const deadline = Date.now() + l.bootTimeoutMs
    const def = await this.define(l)
    try {
      const st = await this.backend.start(def, signal !== undefined ? { signal } : {})
      if (l.image.kind === 'kernel' && l.image.readyMarker !== undefined) {
        // The guest's init prints READY, or FAILED with its reasons (then there is no point waiting).
        const failed = `${l.image.readyMarker.replace(/READY$/, 'FAILED')} ${l.name}`
        await this.backend.waitForConsole(l.name, def.runDir, new RegExp(`(${escapeRe(`${l.image.readyMarker} ${l.name}`)}|${escapeRe(failed)})\\b`), Math.max(0, deadline - Date.now()), signal)
        const tail = await this.backend.consoleTail(def.runDir, 40)
        const line = tail.split('\n').find(x => x.includes(failed))
        if (line !== undefined) throw new GuestBootError(l.name, `its init reported: ${line.slice(line.indexOf(failed) + failed.length).trim()}`, tail)
      }
      return { ...st, accel: def.accel }
    } catch (err) {
      // A guest that failed to start or boot is removed: no orphaned guest or TAP.
      await this.backend.destroy(l.name, def.runDir).catch(() => {})
      await this.overdriver.stopSwap(l.name, 'destroy').catch(() => {})
      for (const n of l.nics) await this.deleteTap(n.tap)
      throw err
    }
  }

  /** Disks, TAPs and the guest definition for a launch (shared by create and incoming migration). */
  private async define (l: VmLaunch): Promise<GuestDefinition> {
    if (!/^[a-z][a-z0-9-]{0,31}$/.test(l.name)) throw new SupercloudError('SC_AGENT_BAD_REQUEST', `bad VM name '${l.name}'`)
    const vmDir = this.vmDir(l.name)
    await mkdir(this.runDir(l.name), { recursive: true })
    await writeFile(join(vmDir, 'launch.json'), JSON.stringify(l, null, 2))

    let boot: GuestDefinition['boot']
    if (l.image.kind === 'qcow2') {
      const root = join(vmDir, 'root.qcow2')
      if (!await exists(root)) await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', l.image.path, root])
      boot = { kind: 'disk' }
    } else {
      // The swap disk is plugged after the data disks: the backend says what the guest calls it.
      const swapDevice = l.swap !== undefined ? { swapDevice: this.backend.swapDeviceName(l.disks.length) } : {}
      const append = [
        guestCmdline({ name: l.name, nics: l.nics.map((n, i) => ({ ifname: `eth${i}`, address: n.address })), ...(l.gateway !== undefined ? { gateway: l.gateway } : {}), ...(l.firewall !== undefined ? { firewall: l.firewall } : {}), ...swapDevice }),
        l.image.append ?? ''
      ].join(' ').trim()
      boot = { kind: 'kernel', kernel: l.image.kernel, append, ...(l.image.initrd !== undefined ? { initrd: l.image.initrd } : {}) }
    }
    await this.prepareDevices(l)
    const def = this.definition(l, boot)
    if (l.memory.allocatedBytes < l.memory.requestedBytes) def.balloonTargetBytes = l.memory.allocatedBytes
    if (l.swap !== undefined) def.swap = { socketPath: await this.overdriver.startSwap(l) }
    return def
  }

  /** The data disk images (made, or grown when the spec grew them) and TAPs of a launch. */
  private async prepareDevices (l: VmLaunch): Promise<void> {
    const format = this.backend.diskFormat
    for (const d of l.disks) {
      const p = join(this.vmDir(l.name), this.dataDiskFile(d.name))
      // An existing image is the guest's data: kept (a restart or cold boot), grown when the spec grew it.
      if (!await exists(p)) await createDiskImage(p, format, d.sizeBytes)
      else await growDiskImage(p, format, d.sizeBytes)
    }
    for (const n of l.nics) await this.ensureTap(n.tap, n.bridge, n.mtu)
  }

  /** The guest definition of a launch whose devices are ready (no I/O). */
  private definition (l: VmLaunch, boot: GuestDefinition['boot']): GuestDefinition {
    const format = this.backend.diskFormat
    return {
      name: l.name,
      cpus: l.cpus,
      memoryBytes: l.memory.requestedBytes,
      accel: this.accel(),
      boot,
      disks: [
        ...(l.image.kind === 'qcow2' ? [{ id: 'root', path: join(this.vmDir(l.name), 'root.qcow2'), format: 'qcow2' as const }] : []),
        ...l.disks.map(d => ({ id: `disk-${d.name}`, path: join(this.vmDir(l.name), this.dataDiskFile(d.name)), format }))
      ],
      nics: l.nics.map(n => ({ id: n.name, tap: n.tap, mac: n.mac, ...(n.mtu !== undefined ? { mtu: n.mtu } : {}) })),
      runDir: this.runDir(l.name),
      ...(l.plugged !== undefined ? { plugged: l.plugged } : {})
    }
  }

  /**
   * Changes the running guest to `l` without a reboot (hot-plug: more vCPUs, more memory, disks
   * and NICs added or removed); answers what is plugged now. Refused (SC_LIVE_UPDATE_UNSUPPORTED,
   * nothing changed) when the backend cannot; a removed disk's image is deleted after the unplug.
   */
  async update (l: VmLaunch): Promise<UpdateResult> {
    const live = this.backend.liveUpdate
    if (live === undefined) throw new SupercloudError('SC_LIVE_UPDATE_UNSUPPORTED', `${l.name}: the ${this.backend.kind} backend changes no running guest; restart it on its disks`)
    const old = await this.launchOf(l.name)
    const st = await this.backend.status(l.name, this.runDir(l.name))
    if (st.state !== 'running') throw new SupercloudError('SC_GUEST_NOT_RUNNING', `${l.name} is ${st.state}: nothing to change live`)
    for (const d of l.disks) {
      const was = old.disks.find(x => x.name === d.name)
      if (was !== undefined && was.sizeBytes !== d.sizeBytes) throw new SupercloudError('SC_LIVE_UPDATE_UNSUPPORTED', `${l.name}: disk ${d.name} changes size; restart it on its disks`)
    }
    const boot: GuestDefinition['boot'] = { kind: 'disk' } // not used by a live update
    const from = this.definition(old, boot)
    const added: VmLaunch = { ...l, disks: l.disks.filter(d => !old.disks.some(x => x.name === d.name)), nics: l.nics.filter(n => !old.nics.some(x => x.name === n.name)) }
    await this.prepareDevices(added)
    const { plugged: _, ...want } = l
    const plugged = await live.call(this.backend, { from, to: this.definition(want, boot) })
    // The image and swap disk are the ones it booted with (neither changes live).
    const { swap: _swap, ...rest } = l
    const next: VmLaunch = { ...rest, image: old.image, plugged, ...(old.swap !== undefined ? { swap: old.swap } : {}) }
    await writeFile(join(this.vmDir(l.name), 'launch.json'), JSON.stringify(next, null, 2))
    for (const d of old.disks) if (!l.disks.some(x => x.name === d.name)) await rm(join(this.vmDir(l.name), this.dataDiskFile(d.name)), { force: true })
    for (const n of old.nics) if (!l.nics.some(x => x.name === n.name)) await this.deleteTap(n.tap)
    return { plugged }
  }

  /** File name of a data disk's image in the VM's directory (in the backend's disk format). */
  private dataDiskFile (disk: string): string {
    return `disk-${disk}.${this.backend.diskFormat === 'raw' ? 'img' : 'qcow2'}`
  }

  /** The launch as a migration knows it (the GuestDisk ids are define()'s). */
  private migrating (l: VmLaunch): MigratingGuest {
    return {
      name: l.name,
      runDir: this.runDir(l.name),
      diskIds: [...(l.image.kind === 'qcow2' ? ['root'] : []), ...l.disks.map(d => `disk-${d.name}`)],
      swap: l.swap !== undefined,
      memoryBytes: l.memory.requestedBytes
    }
  }

  private async launchOf (name: string): Promise<VmLaunch> {
    return JSON.parse(await readFile(join(this.vmDir(name), 'launch.json'), 'utf8')) as VmLaunch
  }

  /**
   * The disks of a launch that can be kept on departure and reused on return: node (as the
   * backend's migration names it), image file, size. None when the backend's migration moves no disks.
   */
  keepableDisks (l: VmLaunch): Array<{ node: string, file: string, sizeBytes?: number }> {
    const disks = this.backend.migration.disks
    if (disks === undefined) return []
    return [
      ...(l.image.kind === 'qcow2' ? [{ node: disks.node('root'), file: 'root.qcow2' }] : []),
      ...l.disks.map(d => ({ node: disks.node(`disk-${d.name}`), file: this.dataDiskFile(d.name), sizeBytes: d.sizeBytes }))
    ]
  }

  /**
   * Moves the disk images kept from migration `reuse` into the VM's directory (the ones the launch
   * still has, same size), so the incoming guest opens them; deletes the VM's kept images either way.
   * Returns the block nodes that were reused.
   */
  private async takeDeparted (l: VmLaunch, reuse: string | undefined): Promise<string[]> {
    const dir = this.departedDir(l.name)
    const reused: string[] = []
    try {
      const d = JSON.parse(await readFile(join(dir, 'departed.json'), 'utf8')) as Departed
      if (reuse === undefined || d.id !== reuse) return reused
      await mkdir(this.vmDir(l.name), { recursive: true })
      for (const k of this.keepableDisks(l)) {
        if (!d.disks.some(x => x.node === k.node && x.file === k.file)) continue
        const size = await imageSize(join(dir, k.file))
        if (size === undefined || (k.sizeBytes !== undefined && size !== k.sizeBytes)) continue
        await rename(join(dir, k.file), join(this.vmDir(l.name), k.file))
        reused.push(k.node)
      }
      return reused
    } catch {
      return reused
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }

  /** Moves a departed VM's disk images aside, tagged with the migration that left them. */
  private async keepDeparted (name: string, id: string): Promise<void> {
    if (!isMigrationId(id)) throw new SupercloudError('SC_AGENT_BAD_REQUEST', `bad migration id '${id}'`)
    const l = await this.launchOf(name)
    const dir = this.departedDir(name)
    await rm(dir, { recursive: true, force: true })
    await mkdir(dir, { recursive: true })
    const kept: Departed['disks'] = []
    for (const k of this.keepableDisks(l)) {
      try { await rename(join(this.vmDir(name), k.file), join(dir, k.file)); kept.push({ node: k.node, file: k.file }) } catch { /* no such image */ }
    }
    if (kept.length === 0) { await rm(dir, { recursive: true, force: true }); return }
    const d: Departed = { id, at: new Date().toISOString(), disks: kept }
    await writeFile(join(dir, 'departed.json'), JSON.stringify(d, null, 2))
  }

  /** Deletes the disk images a VM left here (it cannot return to them any more, or it was deleted). */
  async dropDeparted (name: string): Promise<void> {
    if (!/^[a-z][a-z0-9-]{0,31}$/.test(name)) throw new SupercloudError('SC_AGENT_BAD_REQUEST', `bad VM name '${name}'`)
    await rm(this.departedDir(name), { recursive: true, force: true })
  }

  /** Destination side, at the switchover hold: record the guest's writes from now on (bitmap of migration `id`). */
  async markArrival (name: string, id: string): Promise<{ nodes: string[] }> {
    if (!isMigrationId(id)) throw new SupercloudError('SC_AGENT_BAD_REQUEST', `bad migration id '${id}'`)
    const l = await this.launchOf(name)
    const nodes = this.keepableDisks(l).map(k => k.node)
    const disks = this.backend.migration.disks
    if (disks !== undefined && nodes.length > 0) await disks.markArrival(this.migrating(l), nodes, id)
    return { nodes }
  }

  /** Source side: whether the guest's disks carry migration `id`'s bitmap, and how much it holds. */
  async dirtyStatus (name: string, id: string): Promise<DirtyStatus> {
    if (!isMigrationId(id)) throw new SupercloudError('SC_AGENT_BAD_REQUEST', `bad migration id '${id}'`)
    const l = await this.launchOf(name)
    const nodes = this.keepableDisks(l).map(k => k.node)
    const st = await this.backend.status(name, this.runDir(name))
    const disks = this.backend.migration.disks
    if (disks === undefined || (st.state !== 'running' && st.state !== 'paused')) return { present: false, dirtyBytes: 0, sizeBytes: 0 }
    return await disks.dirtyStatus(this.migrating(l), nodes, id)
  }

  /** Destination side: devices ready, the guest waiting for its state (its disks exported when they move). */
  async prepareIncoming (p: IncomingParams): Promise<IncomingResult> {
    const mig = this.backend.migration
    const current = await this.backend.status(p.launch.name, this.runDir(p.launch.name))
    if (current.state !== 'absent') throw new SupercloudError('SC_MIGRATION_DEST_BUSY', `a guest named ${p.launch.name} already exists on this host (${current.state})`)
    if (!/^[a-z][a-z0-9-]{0,31}$/.test(p.launch.name)) throw new SupercloudError('SC_AGENT_BAD_REQUEST', `bad VM name '${p.launch.name}'`)
    // Leftovers of an earlier copy are never opened by mistake: only images kept under `reuse` are.
    await rm(this.vmDir(p.launch.name), { recursive: true, force: true })
    const reusedNodes = await this.takeDeparted(p.launch, p.reuse)
    mig.checkMode(p.mode)
    const def = await this.define(p.launch)
    try {
      const at = await mig.prepareIncoming(def, { listenIp: p.listenIp, mode: p.mode, ...(p.tls !== undefined ? { tls: p.tls } : {}), port: async avoid => await freeMigrationPort(p.listenIp, avoid) })
      return {
        migrationPort: at.migrationPort,
        nbdPort: at.nbdPort,
        diskNodes: this.keepableDisks(p.launch).map(k => k.node),
        reusedNodes,
        ...(at.selfConfig !== undefined ? { selfConfig: at.selfConfig } : {})
      }
    } catch (err) {
      await this.destroy(p.launch.name, p.launch.nics.map(n => n.tap)).catch(() => {})
      throw err
    }
  }

  /** Destination side, after the switch: the guest runs here now (disk exports stopped, an arrival let run). */
  async finishIncoming (name: string): Promise<VmInfo> {
    await this.backend.migration.finish(this.migrating(await this.launchOf(name)))
    const st = await this.status(name)
    // The guest runs here: a sector table adopted at the switchover hold is this copy's now.
    if (st.state === 'running') this.overdriver.arrivalCommitted(name)
    return st
  }

  /** Source side: run the migration; `push` reports progress to the caller. */
  async migrateOut (p: OutgoingParams, push: (ev: Record<string, unknown>) => void): Promise<MigrationSummary> {
    const mig = this.backend.migration
    const l = await this.launchOf(p.name)
    try {
      return await mig.migrateOut(this.migrating(l), {
        destIp: p.destIp,
        migrationPort: p.migrationPort,
        nbdPort: p.nbdPort,
        mode: p.mode,
        maxDowntimeMs: p.maxDowntimeMs,
        ...(p.bandwidth !== undefined ? { bandwidth: p.bandwidth } : {}),
        deadlineMs: p.deadlineMs,
        holdAtSwitchover: p.holdAtSwitchover,
        ...(p.tls !== undefined ? { tls: p.tls } : {}),
        ...(p.incremental !== undefined ? { incremental: p.incremental } : {}),
        ...(p.selfConfig !== undefined ? { selfConfig: p.selfConfig } : {}),
        onProgress: pr => push({ type: 'migration.progress', vm: p.name, ...pr }),
        onSwitchover: () => push({ type: 'migration.switchover', vm: p.name })
      })
    } catch (err) {
      // Still running here (the switch did not happen): the sector table stays this copy's. (A
      // migration still active was refused as SC_MIGRATION_IN_PROGRESS: that one goes on.)
      const st = await this.backend.status(p.name, this.runDir(p.name)).catch(() => undefined)
      if (st?.state === 'running' && !mig.active(p.name)) this.overdriver.handoverAborted(p.name)
      throw err
    }
  }

  /** Lets a migration held at switchover continue. */
  continueMigration (name: string): void {
    this.backend.migration.continue(name)
  }

  /** Whether an outgoing migration of `name` is running in this agent. */
  migrationActive (name: string): boolean {
    return this.backend.migration.active(name)
  }

  cancelMigration (name: string): void {
    this.backend.migration.cancel(name)
  }

  /**
   * Removes the guest. `keep`: it migrated away in migration `keep`; its disk images stay here
   * (replacing any kept before) for a return. Otherwise images it left here earlier go too.
   */
  async destroy (name: string, taps: string[], keep?: string): Promise<void> {
    await this.backend.destroy(name, this.runDir(name))
    // Its repository pages are freed, unless its sector table was handed to the host it migrated to.
    await this.overdriver.stopSwap(name, 'destroy')
    if (keep !== undefined) await this.keepDeparted(name, keep)
    else await this.dropDeparted(name).catch(() => {})
    let all = taps
    try {
      const l = await this.launchOf(name)
      all = [...new Set([...taps, ...l.nics.map(n => n.tap)])]
    } catch { /* no launch record */ }
    for (const t of all) await this.deleteTap(t)
    await rm(this.vmDir(name), { recursive: true, force: true })
  }

  /** Stops the guest (power-down asked, killed after `timeoutMs`); its directory and disk images stay for the next create. */
  async stop (name: string, timeoutMs: number): Promise<void> {
    await this.backend.stop(name, this.runDir(name), timeoutMs)
    await this.overdriver.stopSwap(name, 'destroy')
  }

  async status (name: string): Promise<VmInfo> {
    return { ...await this.backend.status(name, this.runDir(name)), accel: this.accel() }
  }

  async list (): Promise<VmInfo[]> {
    const names = await readdir(join(this.dir, 'vms')).catch(() => [] as string[])
    return await Promise.all(names.sort().map(async n => await this.status(n)))
  }

  async stats (name: string): Promise<VmStats> {
    return { name, ...await this.backend.stats(name, this.runDir(name)) }
  }

  async balloon (name: string, bytes: number): Promise<void> {
    await this.backend.setBalloon(name, this.runDir(name), bytes)
    const p = join(this.vmDir(name), 'launch.json')
    const l = await this.launchOf(name)
    l.memory.allocatedBytes = bytes
    await writeFile(p, JSON.stringify(l, null, 2))
    this.overdriver.setAllocated(name, bytes)
  }

  consoleSocket (name: string): string {
    return this.backend.consoleSocket(this.runDir(name))
  }

  private async ensureTap (tap: string, bridge?: string, mtu?: number): Promise<void> {
    if (!/^[a-zA-Z0-9_-]{1,15}$/.test(tap)) throw new SupercloudError('SC_AGENT_BAD_REQUEST', `bad TAP name '${tap}'`)
    try {
      await run('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap'])
    } catch (err) {
      if (!/exists|busy/i.test(String((err as { stderr?: string }).stderr))) throw new SupercloudError('SC_AGENT_TAP', `cannot create TAP ${tap}: ${String((err as { stderr?: string }).stderr ?? err)}`)
    }
    await this.attach(tap, bridge ?? this.bridge, mtu)
  }

  /** Puts a TAP on a bridge (idempotent); the TAP takes the bridge's MTU unless one is given. */
  async attach (tap: string, bridge: string, mtu?: number): Promise<void> {
    if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(bridge)) throw new SupercloudError('SC_AGENT_BAD_REQUEST', `bad bridge name '${bridge}'`)
    try {
      if (mtu !== undefined) await run('ip', ['link', 'set', tap, 'mtu', String(mtu)])
      await run('ip', ['link', 'set', tap, 'master', bridge])
      await run('ip', ['link', 'set', tap, 'up'])
    } catch (err) {
      throw new SupercloudError('SC_AGENT_TAP', `cannot attach ${tap} to ${bridge}: ${String((err as { stderr?: string }).stderr ?? err).trim()}`)
    }
  }

  /** Makes this host's Domain-0 switches exactly `p.switches` (bridges plus veth ports into endpoint bridges). */
  async ensureSwitches (p: SwitchesParams): Promise<void> {
    const links = await this.linkNames()
    const wantedBridges = new Set(p.switches.map(s => s.bridge))
    const wantedLinks = new Set(p.switches.flatMap(s => s.ports.map(x => x.link)))
    for (const sw of p.switches) {
      if (!links.has(sw.bridge)) await run('ip', ['link', 'add', sw.bridge, 'type', 'bridge'])
      await run('ip', ['link', 'set', sw.bridge, 'mtu', String(sw.mtu), 'up'])
      for (const port of sw.ports) {
        if (!links.has(port.link)) await run('ip', ['link', 'add', port.link, 'mtu', String(sw.mtu), 'type', 'veth', 'peer', 'name', port.peer, 'mtu', String(sw.mtu)])
        await this.attach(port.link, port.endpointBridge, sw.mtu)
        await this.attach(port.peer, sw.bridge, sw.mtu)
      }
    }
    // Switch ports and switches that are no longer wanted (names carry the prefix and a kind letter).
    for (const l of links) {
      if (l.startsWith(`${p.prefix}p`) && !wantedLinks.has(l)) await run('ip', ['link', 'del', l]).catch(() => {})
      if (l.startsWith(`${p.prefix}s`) && !wantedBridges.has(l)) await run('ip', ['link', 'del', l]).catch(() => {})
    }
  }

  private async linkNames (): Promise<Set<string>> {
    const { stdout } = await run('ip', ['-j', 'link', 'show'])
    return new Set((JSON.parse(stdout) as Array<{ ifname: string }>).map(l => l.ifname))
  }

  private async deleteTap (tap: string): Promise<void> {
    await run('ip', ['link', 'del', tap]).catch(() => {})
  }
}

async function imageSize (p: string): Promise<number | undefined> {
  try {
    await stat(p)
    const { stdout } = await run('qemu-img', ['info', '-U', '--output=json', p])
    return (JSON.parse(stdout) as { 'virtual-size': number })['virtual-size']
  } catch {
    return undefined
  }
}

/** A new data disk image of `sizeBytes` in `format`. */
async function createDiskImage (p: string, format: GuestDefinition['disks'][number]['format'], sizeBytes: number): Promise<void> {
  if (format === 'qcow2') {
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', p, String(sizeBytes)])
    return
  }
  // A sparse raw file, sized under a temporary name, then renamed: a crash in between leaves no empty disk behind.
  const tmp = `${p}.new`
  await writeFile(tmp, '')
  await truncate(tmp, sizeBytes)
  await rename(tmp, p)
}

/** Grows a data disk image to `sizeBytes` (never shrinks it: the planner replaces a VM whose disk shrinks). */
async function growDiskImage (p: string, format: GuestDefinition['disks'][number]['format'], sizeBytes: number): Promise<void> {
  const now = await imageSize(p)
  if (now === undefined || now >= sizeBytes) return
  if (format === 'qcow2') await run('qemu-img', ['resize', '-q', p, String(sizeBytes)])
  else await truncate(p, sizeBytes)
}

async function exists (p: string): Promise<boolean> {
  try { await access(p); return true } catch { return false }
}

/** Ports for migration streams and NBD disk exports (the range the EC2 security group opens). */
export const MIGRATION_PORTS = { first: 49152, last: 49215 }

/** A free TCP port in the migration range on `ip` (checked by binding it). */
export async function freeMigrationPort (ip: string, avoid: number[] = []): Promise<number> {
  const { createServer } = await import('node:net')
  const span = MIGRATION_PORTS.last - MIGRATION_PORTS.first + 1
  const start = Math.floor(Math.random() * span)
  for (let i = 0; i < span; i++) {
    const port = MIGRATION_PORTS.first + ((start + i) % span)
    if (avoid.includes(port)) continue
    const ok = await new Promise<boolean>(resolve => {
      const srv = createServer()
      srv.once('error', () => resolve(false))
      srv.listen(port, ip, () => srv.close(() => resolve(true)))
    })
    if (ok) return port
  }
  throw new SupercloudError('SC_MIGRATION_NO_PORT', `no free port in ${MIGRATION_PORTS.first}-${MIGRATION_PORTS.last} on ${ip}`)
}

function escapeRe (s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
