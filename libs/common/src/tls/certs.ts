import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';

/**
 * Certificates for a Berth cluster: one CA, and per service or node a certificate it presents both as a server
 * and as a client (mutual TLS). RSA 2048 keys come from node:crypto; node-forge builds and signs the X.509.
 */

/** A PEM certificate and its PEM (PKCS#8) private key. */
export interface CertAndKey {
  readonly cert: string;
  readonly key: string;
}

export interface IssueOptions {
  /** The certificate's common name: the service or node it names (e.g. `metadata`, `node-1`). */
  readonly name: string;
  /** DNS names and IP addresses peers dial it by; each becomes a subjectAltName. */
  readonly hosts: readonly string[];
  readonly days?: number;
}

const dayMs = 24 * 3600_000;

function keyPair(): { priv: forge.pki.rsa.PrivateKey; pub: forge.pki.rsa.PublicKey; pem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    priv: forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()),
    pub: forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString()),
    pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

function skeleton(pub: forge.pki.rsa.PublicKey, days: number): forge.pki.Certificate {
  const c = forge.pki.createCertificate();
  c.publicKey = pub;
  // Positive 128-bit serial: a leading 0 nibble keeps the DER integer non-negative.
  c.serialNumber = `0${randomBytes(16).toString('hex').slice(1)}`;
  c.validity.notBefore = new Date(Date.now() - 60_000);
  c.validity.notAfter = new Date(Date.now() + days * dayMs);
  return c;
}

/** A self-signed CA that signs the cluster's certificates. */
export function createCa(opts: { name?: string; days?: number } = {}): CertAndKey {
  const k = keyPair();
  const c = skeleton(k.pub, opts.days ?? 3650);
  const subject = [{ name: 'commonName', value: opts.name ?? 'Berth cluster CA' }];
  c.setSubject(subject);
  c.setIssuer(subject);
  c.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  c.sign(k.priv, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(c), key: k.pem };
}

/** A certificate signed by `ca` for both TLS server and client use. */
export function issueCert(ca: CertAndKey, opts: IssueOptions): CertAndKey {
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const caKey = forge.pki.privateKeyFromPem(ca.key) as forge.pki.rsa.PrivateKey;
  const k = keyPair();
  const c = skeleton(k.pub, opts.days ?? 825);
  c.setSubject([{ name: 'commonName', value: opts.name }]);
  c.setIssuer(caCert.subject.attributes);
  c.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    {
      name: 'subjectAltName',
      altNames: opts.hosts.map((h) => (isIP(h) ? { type: 7, ip: h } : { type: 2, value: h })),
    },
  ]);
  c.sign(caKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(c), key: k.pem };
}
