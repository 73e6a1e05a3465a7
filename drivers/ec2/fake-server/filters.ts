/** EC2 filter matching and the CIDR test of the fake EC2 server. */
import { Ec2ApiError } from './protocol.ts'

function ipToInt (ip: string): number {
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0)
}

/** Whether IPv4 `ip` is inside `cidr`. */
export function cidrContains (cidr: string, ip: string): boolean {
  const [base, lenStr] = cidr.split('/')
  const len = Number(lenStr ?? '32')
  if (base === undefined || !/^\d+\.\d+\.\d+\.\d+$/.test(base) || !/^\d+\.\d+\.\d+\.\d+$/.test(ip)) return false
  if (len === 0) return true
  const mask = len >= 32 ? 0xffffffff : (~((1 << (32 - len)) - 1)) >>> 0
  return ((ipToInt(base) & mask) >>> 0) === ((ipToInt(ip) & mask) >>> 0)
}

/** EC2 filter semantics: every filter must match; values of one filter are alternatives; `tag:K`, `tag-key`. */
export function matchFilters (fs: Array<{ name: string, values: string[] }>, fields: Record<string, string[]>, tags: Record<string, string>): boolean {
  return fs.every(f => {
    if (f.name.startsWith('tag:')) {
      const v = tags[f.name.slice(4)]
      return v !== undefined && f.values.some(w => globMatch(w, v))
    }
    if (f.name === 'tag-key') return f.values.some(w => Object.keys(tags).some(k => globMatch(w, k)))
    const have = fields[f.name]
    if (have === undefined) throw new Ec2ApiError('InvalidParameterValue', `The filter '${f.name}' is invalid`)
    return f.values.some(w => have.some(h => globMatch(w, h)))
  })
}

function globMatch (pattern: string, value: string): boolean {
  if (!pattern.includes('*') && !pattern.includes('?')) return pattern === value
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`)
  return re.test(value)
}
