import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { and, asc, eq, isNull, sql } from '../db/orm.js'
import type { Database } from '../db/client.js'
import { roles, serviceClients, type ServiceClientRow } from '../db/schema.js'
import { SERVICE_SCOPES } from './scopes.js'

/** A registered client as administrators and the token endpoint see it: never its secret or the secret's hash. */
export type ServiceClient = Omit<ServiceClientRow, 'secretHash' | 'deletedAt'>

export type CreateClientOutcome =
  | { ok: true, client: ServiceClient, secret: string }
  | { ok: false, unknownScopes: string[] }

export interface ClientService {
  /** Registers a client; its scopes must be ones some role defines, or the service's own (sessions:ended). */
  create: (name: string, scopes: string[]) => Promise<CreateClientOutcome>
  list: () => Promise<ServiceClient[]>
  /** A new secret; the old one is refused from now on (tokens already issued stay valid until they expire). */
  rotateSecret: (id: string) => Promise<{ client: ServiceClient, secret: string } | undefined>
  /** Soft-deletes the client; answers when, for the caller to announce its id as ended (its tokens die with it). */
  remove: (id: string) => Promise<{ id: string, endedAt: Date } | undefined>
  /** The live client whose id and secret these are, else undefined (unknown, deleted, or a wrong secret alike). */
  authenticate: (id: string, secret: string) => Promise<ServiceClient | undefined>
}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/

/**
 * 256 random bits. Stored as a SHA-256, not argon2: a secret this long cannot be guessed or brute-forced from its hash
 * (as with refresh tokens), and a fast hash keeps a client's token request and each introspection cheap.
 */
function newSecret (): { secret: string, hash: string } {
  const secret = randomBytes(32).toString('base64url')
  return { secret, hash: hashSecret(secret) }
}

const hashSecret = (secret: string): string => createHash('sha256').update(secret).digest('base64url')

// Compared as digests of equal length in constant time; an unknown client is compared against this, so that it costs
// the same as a wrong secret.
const DUMMY_HASH = hashSecret(randomBytes(32).toString('base64url'))

const PUBLIC = {
  id: serviceClients.id,
  name: serviceClients.name,
  scopes: serviceClients.scopes,
  createdAt: serviceClients.createdAt,
  secretRotatedAt: serviceClients.secretRotatedAt
}

export function createClientService (db: Database): ClientService {
  async function unknownScopes (scopes: string[]): Promise<string[]> {
    const service = new Set<string>(SERVICE_SCOPES)
    const wanted = scopes.filter(s => !service.has(s))
    if (wanted.length === 0) return []
    const defined = await db.select({ scope: sql<string>`distinct unnest(${roles.scopes})` }).from(roles)
    const known = new Set(defined.map(r => r.scope))
    return wanted.filter(s => !known.has(s))
  }

  return {
    async create (name, scopes) {
      const unknown = await unknownScopes(scopes)
      if (unknown.length > 0) return { ok: false, unknownScopes: unknown }
      const { secret, hash } = newSecret()
      const [client] = await db.insert(serviceClients)
        .values({ name, scopes: [...new Set(scopes)].sort(), secretHash: hash })
        .returning(PUBLIC)
      return { ok: true, client, secret }
    },

    list: async () => await db.select(PUBLIC).from(serviceClients).where(isNull(serviceClients.deletedAt)).orderBy(asc(serviceClients.createdAt), asc(serviceClients.id)),

    async rotateSecret (id) {
      const { secret, hash } = newSecret()
      const [client] = await db.update(serviceClients)
        .set({ secretHash: hash, secretRotatedAt: sql`now()` })
        .where(and(eq(serviceClients.id, id), isNull(serviceClients.deletedAt)))
        .returning(PUBLIC)
      return client === undefined ? undefined : { client, secret }
    },

    async remove (id) {
      const [row] = await db.update(serviceClients)
        .set({ deletedAt: sql`now()` })
        .where(and(eq(serviceClients.id, id), isNull(serviceClients.deletedAt)))
        .returning({ id: serviceClients.id, deletedAt: serviceClients.deletedAt })
      return row === undefined ? undefined : { id: row.id, endedAt: row.deletedAt ?? new Date() }
    },

    async authenticate (id, secret) {
      const presented = Buffer.from(hashSecret(secret))
      // Not a UUID: no such client, and nothing to ask the database (which would refuse the comparison).
      const [row] = UUID.test(id)
        ? await db.select({ ...PUBLIC, secretHash: serviceClients.secretHash }).from(serviceClients)
          .where(and(eq(serviceClients.id, id), isNull(serviceClients.deletedAt))).limit(1)
        : []
      const matches = timingSafeEqual(presented, Buffer.from(row?.secretHash ?? DUMMY_HASH))
      if (row === undefined || !matches) return undefined
      const { secretHash: _, ...client } = row
      return client
    }
  }
}
