// drizzle-orm, loaded through its CommonJS build. Node 22's ES module loader parses drizzle-orm's package.json (178 KB
// of "exports") again for each of the few hundred files it loads: about 570 ms of every start on the benchmark box,
// against about 100 ms for the same code as CommonJS (docs/performance.md, "Start-up"). Every drizzle value the
// service uses comes from here, so that the process holds one copy of drizzle; types may still be imported from
// 'drizzle-orm' (they are erased).
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

const orm = require('drizzle-orm') as typeof import('drizzle-orm')
export const { and, asc, desc, eq, gt, gte, inArray, is, isNotNull, isNull, lte, ne, or, sql } = orm

export const pgCore = require('drizzle-orm/pg-core') as typeof import('drizzle-orm/pg-core')

/** The drivers and their migrators, loaded when a database of their kind is opened. */
export const drivers = {
  postgresJs: () => require('drizzle-orm/postgres-js') as typeof import('drizzle-orm/postgres-js'),
  postgresJsMigrator: () => require('drizzle-orm/postgres-js/migrator') as typeof import('drizzle-orm/postgres-js/migrator'),
  pglite: () => require('drizzle-orm/pglite') as typeof import('drizzle-orm/pglite'),
  pgliteMigrator: () => require('drizzle-orm/pglite/migrator') as typeof import('drizzle-orm/pglite/migrator')
}
