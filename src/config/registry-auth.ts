// The registry token scheme's options (TRUSTGATE_AUTH=registry-token), as auth/ takes them.
export interface RegistryAuthConfig {
  type: 'token';
  realm: string;
  service: string;
  issuer: string;
  /** Path of a PEM bundle of the certificates whose keys may sign tokens. */
  rootCertBundle: string;
  /** Built-in token endpoint (GET /api/v1/token): signing key and certificate (PEM paths) and users file. */
  issuerKey?: string;
  issuerCert?: string;
  users?: string;
  tokenTtl: number;
}
