import { Type } from '@sinclair/typebox'

/**
 * A UUID as PostgreSQL takes it, and nothing else: the `uuid` format alone also passes `urn:uuid:...`, which the
 * database then refuses (a 500). Every id in a path or body uses this.
 */
export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'

export const uuid = (options: { description?: string } = {}) => Type.String({ format: 'uuid', pattern: UUID_PATTERN, 'x-error-message': 'must be a UUID', ...options })
