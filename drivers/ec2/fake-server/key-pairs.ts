/** The fake EC2 server's key pairs: import, describe, delete. */
import { createHash } from 'node:crypto'
import { Ec2ApiError, filters, itemSet, str, strList, tagSet, tagSpecs, type QueryObject, type XmlNode } from './protocol.ts'
import { hex, type FakeEc2State, type KeyPair } from './state.ts'
import { matchFilters } from './filters.ts'

export function keysOf (s: FakeEc2State, region: string): Map<string, KeyPair> {
  const m = s.keyPairsByRegion.get(region)
  if (m === undefined) throw new Ec2ApiError('AuthFailure', `region ${region} is not enabled`, 401)
  return m
}

function keyXml (k: KeyPair): Array<XmlNode | undefined> {
  return [['keyPairId', k.id], ['keyName', k.name], ['keyFingerprint', k.fingerprint], ['keyType', k.publicKey.startsWith('ssh-rsa') ? 'rsa' : 'ed25519'], tagSet(k.tags)]
}

export function importKeyPair (s: FakeEc2State, region: string, q: QueryObject): Array<XmlNode | undefined> {
  const keys = keysOf(s, region)
  const name = str(q.KeyName) ?? ''
  if (name === '') throw new Ec2ApiError('MissingParameter', 'The request must contain the parameter KeyName')
  if (keys.has(name)) throw new Ec2ApiError('InvalidKeyPair.Duplicate', `The keypair '${name}' already exists.`)
  const material = Buffer.from(str(q.PublicKeyMaterial) ?? '', 'base64').toString('utf8').trim()
  const blob = material.split(/\s+/)[1]
  if (!/^(ssh-ed25519|ssh-rsa) /.test(material) || blob === undefined) throw new Ec2ApiError('InvalidKey.Format', 'Key is not in valid OpenSSH public key format')
  const fingerprint = createHash('md5').update(Buffer.from(blob, 'base64')).digest('hex').match(/../g)?.join(':') ?? ''
  const k: KeyPair = { id: `key-${hex(17)}`, name, region, publicKey: material, fingerprint, tags: tagSpecs(q, 'key-pair') }
  keys.set(name, k)
  return keyXml(k)
}

export function describeKeyPairs (s: FakeEc2State, region: string, q: QueryObject): XmlNode[] {
  const keys = [...keysOf(s, region).values()]
  const names = strList(q.KeyName)
  for (const n of names) if (!keys.some(k => k.name === n)) throw new Ec2ApiError('InvalidKeyPair.NotFound', `The key pair '${n}' does not exist`)
  const shown = keys.filter(k => (names.length === 0 || names.includes(k.name)) && matchFilters(filters(q), { 'key-name': [k.name], 'key-pair-id': [k.id] }, k.tags))
  return [itemSet('keySet', shown.map(k => keyXml(k)))]
}

export function deleteKeyPair (s: FakeEc2State, region: string, q: QueryObject): XmlNode[] {
  const keys = keysOf(s, region)
  const name = str(q.KeyName)
  const id = str(q.KeyPairId)
  for (const k of keys.values()) if (k.name === name || k.id === id) keys.delete(k.name)
  return [['return', true]]
}
