/**
 * JSON Schema (draft-07, validated by ajv) of supercloud.yaml as the user writes it, before
 * normalization. It checks shape only: types, known keys (`additionalProperties: false`
 * everywhere), enums, and value syntax through the custom `parse` keyword (sizes, durations,
 * bandwidths, addresses). Cross-field rules (references, subnets, duplicates) live in load.ts.
 * docs/spec-reference.md describes every field.
 */
import { parseBandwidth, parseDuration, parseSize, SIZE_EXAMPLE, DURATION_EXAMPLE, BANDWIDTH_EXAMPLE, UnitError } from '../../core/units.ts'
import { parseCidr, parseIpv4 } from '../../core/ipv4.ts'

/** Value syntaxes checked by the `parse` schema keyword. */
export type ValueKind = 'size' | 'duration' | 'bandwidth' | 'ipv4' | 'cidr' | 'mac'

/** What a value of each kind looks like, used in "expected …" messages. */
export const VALUE_EXAMPLES: Record<ValueKind, string> = {
  size: SIZE_EXAMPLE,
  duration: DURATION_EXAMPLE,
  bandwidth: BANDWIDTH_EXAMPLE,
  ipv4: 'an IPv4 address like 198.18.1.10',
  cidr: 'an IPv4 address with prefix like 198.18.1.0/24',
  mac: 'a MAC address like 52:54:00:12:34:56'
}

function unitMessage (fn: (v: string | number) => number, value: string | number): string | undefined {
  try {
    fn(value)
    return undefined
  } catch (err) {
    if (err instanceof UnitError) return err.message
    throw err
  }
}

function show (value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : JSON.stringify(value) ?? String(value)
}

/**
 * Checks a value of the given kind. Returns undefined when valid, otherwise a readable message
 * ("expected a size like 512M, got '12 potatoes'"). Values of a JSON type the kind never
 * accepts are left to the `type` keyword and reported as valid here.
 */
export function checkValue (kind: ValueKind, value: unknown): string | undefined {
  if (typeof value !== 'string' && typeof value !== 'number') return undefined
  switch (kind) {
    case 'size': return unitMessage(parseSize, value)
    case 'duration': return unitMessage(parseDuration, value)
    case 'bandwidth': return unitMessage(parseBandwidth, value)
    case 'ipv4':
      if (typeof value === 'string' && parseIpv4(value) !== undefined) return undefined
      if (typeof value === 'string' && parseCidr(value) !== undefined) return `expected ${VALUE_EXAMPLES.ipv4} without a prefix, got ${show(value)}`
      return `expected ${VALUE_EXAMPLES.ipv4}, got ${show(value)}`
    case 'cidr':
      if (typeof value === 'string' && parseCidr(value) !== undefined) return undefined
      if (typeof value === 'string' && parseIpv4(value) !== undefined) return `expected ${VALUE_EXAMPLES.cidr}, got ${show(value)} (add the prefix length, e.g. ${value}/24)`
      return `expected ${VALUE_EXAMPLES.cidr}, got ${show(value)}`
    case 'mac':
      if (typeof value !== 'string' || !/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(value)) return `expected ${VALUE_EXAMPLES.mac}, got ${show(value)}`
      if ((parseInt(value.slice(0, 2), 16) & 1) === 1) return `${show(value)} is a multicast MAC address; the first byte must be even (e.g. 52:54:00:…)`
      return undefined
  }
}

type Schema = Record<string, unknown>

const str: Schema = { type: 'string', minLength: 1 }
const size: Schema = { type: ['string', 'integer'], parse: 'size' }
const duration: Schema = { type: ['string', 'number'], parse: 'duration' }
const bandwidth: Schema = { type: ['string', 'integer'], parse: 'bandwidth' }
const ipv4: Schema = { type: 'string', parse: 'ipv4' }
const cidr: Schema = { type: 'string', parse: 'cidr' }
const count: Schema = { type: 'integer', minimum: 1 }

const site: Schema = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: { subnet: cidr, gateway: ipv4 }
}

const wan: Schema = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: { bandwidth, delay: duration }
}

const host: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['site'],
  properties: {
    site: str,
    driver: { enum: ['local', 'ssh', 'ec2'] },
    cpus: count,
    memory: size,
    address: ipv4,
    hypervisor: {
      type: 'object',
      additionalProperties: false,
      properties: {
        backend: { enum: ['qemu', 'xen'] },
        accel: { enum: ['auto', 'kvm', 'tcg'] }
      }
    },
    ssh: {
      type: 'object',
      additionalProperties: false,
      required: ['address', 'key'],
      properties: {
        address: str,
        user: str,
        key: str,
        port: { type: 'integer', minimum: 1, maximum: 65535 },
        guestBridge: str,
        hostKey: str
      }
    },
    ec2: {
      type: 'object',
      additionalProperties: false,
      required: ['region', 'ami', 'instanceType'],
      properties: {
        region: str,
        ami: str,
        instanceType: str,
        // true/false, or the spot pool { maxPrice, instanceTypes }: checked in sections/ec2.ts.
        spot: {},
        sshFrom: str,
        subnetId: str,
        endpoint: str,
        user: str
      }
    }
  }
}

const image: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    builtin: { enum: ['tiny'] },
    qcow2: str,
    kernel: str,
    initrd: str,
    append: { type: 'string' }
  }
}

const disk: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['size'],
  properties: { name: str, size }
}

const nic: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: { name: str, address: cidr, mac: { type: 'string', parse: 'mac' } }
}

const memory: Schema = {
  if: { type: 'object' },
  then: {
    type: 'object',
    additionalProperties: false,
    required: ['requested'],
    properties: { requested: size, allocated: size }
  },
  else: size
}

const vm: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['image', 'memory'],
  properties: {
    image: str,
    host: str,
    cpus: count,
    memory,
    disks: { type: ['array', 'null'], items: disk },
    nics: { type: ['array', 'null'], items: nic },
    gateway: ipv4,
    swap: size,
    firewall: {
      type: 'object',
      additionalProperties: false,
      required: ['between'],
      properties: {
        between: { type: 'array', items: str, minItems: 2, maxItems: 2 },
        allow: { type: 'array', items: str },
        drop: { type: 'array', items: str },
        default: { enum: ['allow', 'drop'] }
      }
    }
  }
}

const network: Schema = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    port: { type: 'integer', minimum: 1, maximum: 65535 },
    switches: {
      type: ['object', 'null'],
      additionalProperties: { type: 'object', additionalProperties: false, required: ['host'], properties: { host: str } }
    },
    wires: { type: ['array', 'null'], items: str },
    extenders: {
      type: ['object', 'null'],
      additionalProperties: { type: 'object', additionalProperties: false, required: ['gateway'], properties: { gateway: str } }
    }
  }
}

/** The schema of a whole supercloud.yaml (as parsed YAML, before normalization). */
export const specSchema: Schema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://supercloud.dev/schema/supercloud.yaml.json',
  title: 'supercloud.yaml',
  type: 'object',
  additionalProperties: false,
  // `x-…` keys are ignored: a place for YAML anchors shared by several entries (as in compose files).
  patternProperties: { '^x-': {} },
  properties: {
    name: str,
    sites: { type: ['object', 'null'], additionalProperties: site },
    wan,
    hosts: { type: ['object', 'null'], additionalProperties: host },
    images: { type: ['object', 'null'], additionalProperties: image },
    vms: { type: ['object', 'null'], additionalProperties: vm },
    network,
    prices: str,
    state: str,
    operators: {
      type: ['array', 'null'],
      items: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: str, key: str, keyFile: str } }
    },
    // Checked field by field by parseOverdriverPolicy (overdriver/decision/policy.ts).
    overdriver: { type: ['object', 'null'] }
  }
}
