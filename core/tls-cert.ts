/**
 * Self-signed certificates for one-off TLS peers (a Xen migration's two socat ends): an RSA key
 * pair from Node's crypto, the certificate built and signed by node-forge. The certificate is
 * its own trust anchor: the other end pins it (socat `cafile=`), so its name and lifetime only
 * have to satisfy OpenSSL's checks.
 */
import { generateKeyPair, randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import forge from 'node-forge'
import { MIGRATION_CLIENT_CN, MIGRATION_SERVER_CN, type CertifiedKey, type MigrationX509 } from './migration.ts'

export { MIGRATION_CLIENT_CN, MIGRATION_SERVER_CN }

const generateKeyPairAsync = promisify(generateKeyPair)

/** A self-signed certificate for `commonName`, valid from an hour ago for `days` days (a CA: it anchors itself). */
export async function selfSignedCertificate (commonName: string, days = 1): Promise<CertifiedKey> {
  const { publicKey, privateKey } = await generateKeyPairAsync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' }
  })
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey)
  // Positive (leading 0 bit), 64 random bits.
  cert.serialNumber = '0' + randomBytes(8).toString('hex')
  cert.validity.notBefore = new Date(Date.now() - 3600_000)
  cert.validity.notAfter = new Date(Date.now() + days * 86400_000)
  const name = [{ name: 'commonName', value: commonName }]
  cert.setSubject(name)
  cert.setIssuer(name)
  cert.setExtensions([{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', digitalSignature: true, keyCertSign: true, critical: true }])
  cert.sign(forge.pki.privateKeyFromPem(privateKey), forge.md.sha256.create())
  return { cert: forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n'), key: privateKey }
}

/** A fresh pair of ends for one migration's TLS stream (MigrationTls.x509). */
export async function migrationX509 (): Promise<MigrationX509> {
  const [server, client] = await Promise.all([selfSignedCertificate(MIGRATION_SERVER_CN), selfSignedCertificate(MIGRATION_CLIENT_CN)])
  return { server, client }
}
