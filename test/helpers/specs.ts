/**
 * Spec texts for the e2e tests, as a user would write them: namespaced local hosts running QEMU
 * under TCG, the builtin tiny image, and the VMs each test needs. Every builder returns YAML
 * text for `sandbox` (helpers/cli.ts).
 */

/** A local host: its site and memory; it runs QEMU under TCG. */
export interface TcgHost { site: string, memory: string }

export interface TcgSpec {
  name: string
  /** Site name -> subnet. */
  sites: Record<string, string>
  /** The WAN between the sites, as a YAML flow mapping: `{ bandwidth: 200mbit, delay: 5ms }`. */
  wan?: string
  /** Host name -> host, in the order they are listed. */
  hosts: Record<string, TcgHost>
  /** The text under `vms:`, each VM indented two spaces (see tinyVm, tinyVmLine); lines of it are joined with newlines. */
  vms: string | string[]
}

/** A spec of TCG hosts with the tiny image. */
export function tcgSpec (s: TcgSpec): string {
  const vms = typeof s.vms === 'string' ? s.vms : s.vms.join('\n')
  return [
    '',
    `name: ${s.name}`,
    'sites:',
    ...Object.entries(s.sites).map(([site, subnet]) => `  ${site}: { subnet: ${subnet} }`),
    ...(s.wan !== undefined ? [`wan: ${s.wan}`] : []),
    'hosts:',
    ...Object.entries(s.hosts).map(([host, h]) => `  ${host}: { site: ${h.site}, memory: ${h.memory}, hypervisor: { accel: tcg } }`),
    'images:',
    '  tiny: { builtin: tiny }',
    'vms:',
    vms,
    ''
  ].join('\n')
}

export interface SiteSpec {
  name: string
  subnet: string
  /** The site's name; default s1. */
  site?: string
  /** Each host's memory; default 512M. */
  memory?: string
  vms: string | string[]
}

/** One site with one host, h1. */
export function oneHostSpec (s: SiteSpec): string {
  const site = s.site ?? 's1'
  const memory = s.memory ?? '512M'
  return tcgSpec({ name: s.name, sites: { [site]: s.subnet }, hosts: { h1: { site, memory } }, vms: s.vms })
}

/** One site with two hosts of the same size, h1 and h2 (for migrations between them). */
export function twoHostSpec (s: SiteSpec): string {
  const site = s.site ?? 's1'
  const memory = s.memory ?? '512M'
  return tcgSpec({ name: s.name, sites: { [site]: s.subnet }, hosts: { h1: { site, memory }, h2: { site, memory } }, vms: s.vms })
}

/** A VM of the tiny image. */
export interface TinyVm {
  host?: string
  memory: string
  /** The size of one disk named `data`. */
  disk?: string
  /** The address of one NIC named eth0. */
  address?: string
}

/** A VM as a block under `vms:` (one key a line). */
export function tinyVm (name: string, vm: TinyVm): string {
  return [
    `  ${name}:`,
    '    image: tiny',
    ...(vm.host !== undefined ? [`    host: ${vm.host}`] : []),
    `    memory: ${vm.memory}`,
    ...(vm.disk !== undefined ? [`    disks: [ { name: data, size: ${vm.disk} } ]`] : []),
    ...(vm.address !== undefined ? [`    nics: [ { name: eth0, address: ${vm.address} } ]`] : [])
  ].join('\n')
}

/** A VM as one line under `vms:` (a flow mapping). */
export function tinyVmLine (name: string, vm: TinyVm): string {
  const keys = [
    'image: tiny',
    ...(vm.host !== undefined ? [`host: ${vm.host}`] : []),
    `memory: ${vm.memory}`,
    ...(vm.disk !== undefined ? [`disks: [ { name: data, size: ${vm.disk} } ]`] : []),
    ...(vm.address !== undefined ? [`nics: [ { name: eth0, address: ${vm.address} } ]`] : [])
  ]
  return `  ${name}: { ${keys.join(', ')} }`
}
