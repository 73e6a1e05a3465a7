/** Progress reporting shared by every long-running operation. */
export interface ProgressEvent {
  /** What is being worked on, e.g. "host host-a" or "vm web1". */
  subject: string
  /** Short phase name, e.g. "namespace", "sshd", "bootstrap", "boot". */
  phase: string
  message: string
  /** 0..1 when known. */
  fraction?: number
}

export interface OperationOptions {
  signal?: AbortSignal
  onProgress?: (ev: ProgressEvent) => void
}
