/** Where everything about a Xen guest lives in its runDir in the dom0 (backend.ts's header lists them). */
export const xenRunPaths = (runDir: string): { config: string, consoleLog: string, serial: string, consolePid: string, consoleSocatLog: string, consoleScript: string } => ({
  config: `${runDir}/domain.cfg`,
  consoleLog: `${runDir}/console.log`,
  serial: `${runDir}/serial.sock`,
  consolePid: `${runDir}/console.pid`,
  consoleSocatLog: `${runDir}/console-socat.log`,
  consoleScript: `${runDir}/console.sh`
})
