import { createPublicKey } from 'node:crypto'
import { createVerifier } from 'fast-jwt'

type Algorithm = 'EdDSA' | 'ES256' | 'RS256'
export type Verify = (token: string) => unknown

export interface ClaimChecks {
  issuer: string
  audience: string
}

/**
 * The algorithm a public JWK verifies, from the key itself (RFC 8725 section 3.1): never from a token's header.
 * Undefined for a key the service would not sign with, or whose own `alg`/`use` says otherwise.
 */
function algorithmOf (jwk: Record<string, unknown>): Algorithm | undefined {
  let alg: Algorithm | undefined
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') alg = 'EdDSA'
  else if (jwk.kty === 'EC' && jwk.crv === 'P-256') alg = 'ES256'
  else if (jwk.kty === 'RSA') alg = 'RS256'
  if (alg === undefined) return undefined
  if (jwk.alg !== undefined && jwk.alg !== alg) return undefined
  if (jwk.use !== undefined && jwk.use !== 'sig') return undefined
  return alg
}

/** One verifier per key of a JWK Set, by kid, each pinned to its key's algorithm and checking typ, iss and aud. */
export function verifiersOf (jwks: unknown, checks: ClaimChecks): Map<string, Verify> {
  const verifiers = new Map<string, Verify>()
  const keys = (jwks as { keys?: unknown } | null)?.keys
  if (!Array.isArray(keys)) throw new Error('the JWKS has no "keys" array')
  for (const jwk of keys as Array<Record<string, unknown>>) {
    if (jwk === null || typeof jwk !== 'object' || typeof jwk.kid !== 'string' || jwk.kid === '') continue
    const alg = algorithmOf(jwk)
    if (alg === undefined) continue
    let pem: string
    try {
      const key = createPublicKey({ key: jwk as never, format: 'jwk' })
      if (alg === 'RS256' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) continue
      pem = key.export({ format: 'pem', type: 'spki' }).toString()
    } catch {
      continue
    }
    verifiers.set(jwk.kid, createVerifier({
      key: pem,
      algorithms: [alg],
      checkTyp: 'at+jwt',
      allowedIss: checks.issuer,
      allowedAud: checks.audience,
      requiredClaims: ['exp', 'iat', 'sub', 'iss', 'aud']
    }))
  }
  return verifiers
}

// Headers that point a verifier at keys elsewhere (RFC 8725 section 3.10): never followed, always refused.
const FOREIGN_KEY_HEADERS = ['jku', 'x5u', 'jwk', 'x5c']

/** A token's kid when its header is well-formed and names no foreign keys; else undefined. */
export function kidOf (token: string): string | undefined {
  const [encodedHeader, , signature, extra] = token.split('.')
  if (signature === undefined || extra !== undefined) return undefined
  let header: unknown
  try {
    header = JSON.parse(Buffer.from(encodedHeader, 'base64url').toString('utf8'))
  } catch {
    return undefined
  }
  if (header === null || typeof header !== 'object' || FOREIGN_KEY_HEADERS.some(h => h in header)) return undefined
  const kid = (header as { kid?: unknown }).kid
  return typeof kid === 'string' && kid !== '' ? kid : undefined
}
