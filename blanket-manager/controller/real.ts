/** The real collaborators of a Controller: guest images over SSH, the Blanket bootstrap, this machine. */
import { execFileSync } from 'node:child_process'
import { ensureSupercloudKey } from '../../drivers/local/keys.ts'
import { buildTinyImage } from '../../images/guest/build.ts'
import type { AgentClient } from '../agent/client.ts'
import { agentBundle } from '../agent/bundle.ts'
import { bootstrapHost, type BootstrapResult } from '../bootstrap/blanket.ts'
import { ensureEndpointManager } from '../bootstrap/endpoint-manager.ts'
import { ensureImageOnHost } from '../bootstrap/images.ts'
import { bootHostIntoXen } from '../bootstrap/xen-boot.ts'
import { syncAuthorizedKeys } from '../access/remote.ts'
import { amendFirewall, installFirewall, removeFirewall } from '../firewall/apply.ts'
import type { SshConnection } from '../../core/ssh.ts'
import type { GuestImages, HostSetup, LocalMachine } from './components.ts'
import type { HostSessions } from './sessions.ts'
import type { HostRecord } from '../../drivers/cloud.ts'

type RecordOf = (host: string) => HostRecord

/** Guest images: the builtin one built here, files uploaded to `<state dir>/images/<id>/` on hosts. */
export function sshGuestImages (sessions: HostSessions<AgentClient>, record: RecordOf): GuestImages {
  return {
    tiny: async opts => await buildTinyImage(opts),
    place: async (host, id, files, opts) => {
      const stateDir = record(host).stateDir
      const ssh = await sessions.connect(host, opts.signal)
      return await ensureImageOnHost(ssh, stateDir, id, files, opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {})
    }
  }
}

/** The Blanket bootstrap over SSH; a real server with `hypervisor: xen` boots into Xen first (docs/xen-real-hosts.md). */
export function blanketHostSetup (sessions: HostSessions<AgentClient>, record: RecordOf): HostSetup<AgentClient> {
  return {
    wantedAgentBuild: async () => (await agentBundle()).hash,
    bootstrap: async (h, rec, tiny, opts) => {
      const { signal } = opts
      const bootstrap = async (ssh: SshConnection): Promise<BootstrapResult> => await bootstrapHost(rec, ssh, {
        accel: h.hypervisor.accel,
        hypervisor: h.hypervisor.backend,
        ...(tiny !== undefined ? { image: { id: tiny.id, kernel: tiny.kernel, initrd: tiny.initrd } } : {}),
        ...(signal !== undefined ? { signal } : {}),
        ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {})
      })
      let boot: BootstrapResult | undefined
      if (h.hypervisor.backend === 'xen' && h.driver !== 'local') {
        // Keep Xen only once the agent answered under it. A host already running Xen skips straight on.
        await bootHostIntoXen(h.name, async () => { sessions.drop(h.name); return await sessions.connect(h.name, signal) }, {
          ...(signal !== undefined ? { signal } : {}),
          ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}),
          confirmAgent: async conn => { boot = await bootstrap(conn) }
        })
      }
      boot ??= await bootstrap(await sessions.connect(h.name, signal))
      return { agent: boot.agent, accel: { mode: boot.accel.mode, reason: boot.accel.reason } }
    },
    endpointManager: async (host, prefix, opts) => {
      const stateDir = record(host).stateDir
      await ensureEndpointManager(await sessions.connect(host, opts.signal), stateDir, prefix, opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {})
    },
    firewall: {
      install: async (host, prefix, ruleset, opts) => await installFirewall(await sessions.connect(host, opts.signal), prefix, record(host).stateDir, ruleset, opts.signal),
      amend: async (host, prefix, nft) => { await amendFirewall(await sessions.connect(host), prefix, nft) },
      remove: async (host, prefix) => { await removeFirewall(await sessions.connect(host), prefix, record(host).stateDir) }
    },
    access: {
      authorize: async (host, supercloud, block, opts) => await syncAuthorizedKeys(await sessions.connect(host, opts.signal), supercloud, block, opts.signal)
    }
  }
}

/** This machine: the key pair made with ssh-keygen, prefixes taken by network namespaces. */
export const thisMachine: LocalMachine = {
  ensureKey: ensureSupercloudKey,
  prefixTaken: prefix => {
    try {
      return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').some(l => l.startsWith(prefix))
    } catch {
      return false
    }
  }
}
