/**
 * A throwaway self-signed certificate for 127.0.0.1 (P-256, one day), made with the openssl CLI
 * in a temporary directory at test time: no key material lives in the repository. The same
 * certificate is the node's, the test watchers', and the CA that verifies both.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCertificate {
  dir: string;
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
  /** Remove the temporary directory. */
  remove(): void;
}

export async function makeTestCertificate(): Promise<TestCertificate> {
  const dir = mkdtempSync(join(tmpdir(), 'presenced-tls-'));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  try {
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`openssl could not make a test certificate: ${(err as Error).message}`);
  }
  return {
    dir,
    certFile,
    keyFile,
    cert: readFileSync(certFile),
    key: readFileSync(keyFile),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
