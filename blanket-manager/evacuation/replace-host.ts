/**
 * Launching the replacement host of an evacuation (evacuate.ts uses it): the candidates of
 * replacement.ts tried in order through the controller (driver createHost, bootstrap, recorded
 * ready in the state), in the background while the moves to hosts with room go on. One
 * replacement per evacuation; its launch is aborted when its VMs can no longer make the deadline.
 */
import { CancelledError } from '../../core/errors.ts'
import type { OperationOptions, ProgressEvent } from '../../core/progress.ts'
import type { HostSpec, Spec } from '../../core/spec.ts'
import { replacementCandidates } from './replacement.ts'

/** Creates, bootstraps and records a host that is not in the spec file (Controller.addHost). */
export type AddHost = (spec: Spec, host: HostSpec, opts: OperationOptions) => Promise<void>

export interface ReplacementRecord {
  host: string
  what: string
  /** Ready and used as a target; false when its launch failed or was given up. */
  ready: boolean
  error?: string
}

export class ReplacementLaunch {
  readonly tried: ReplacementRecord[] = []
  /** Resolves with the ready host's spec, or undefined when no candidate could be launched. */
  readonly done: Promise<HostSpec | undefined>
  private readonly abort = new AbortController()
  private settled = false

  constructor (addHost: AddHost, spec: Spec, source: HostSpec, taken: ReadonlySet<string>, say: (message: string) => void, opts: { signal?: AbortSignal, onProgress?: (ev: ProgressEvent) => void } = {}) {
    opts.signal?.addEventListener('abort', () => { this.abort.abort() }, { once: true })
    const candidates = replacementCandidates(source, taken)
    this.done = (async () => {
      for (const cand of candidates) {
        if (this.abort.signal.aborted) return undefined
        const rec: ReplacementRecord = { host: cand.host.name, what: cand.what, ready: false }
        this.tried.push(rec)
        say(`launching replacement host ${cand.host.name} (${cand.what})`)
        try {
          await addHost(spec, cand.host, { signal: this.abort.signal, ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}) })
          rec.ready = true
          say(`replacement host ${cand.host.name} (${cand.what}) is ready`)
          return cand.host
        } catch (err) {
          rec.error = (err as Error).message
          if (err instanceof CancelledError || this.abort.signal.aborted) return undefined
          say(`replacement host ${cand.host.name} (${cand.what}) could not be launched: ${rec.error}`)
        }
      }
      return undefined
    })().finally(() => { this.settled = true })
  }

  get pending (): boolean { return !this.settled }

  /** Gives up the launch (its VMs cannot make the deadline any more). */
  giveUp (): void { this.abort.abort() }
}
