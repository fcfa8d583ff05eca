// What a run must undo however it ends (servers, databases, a throwaway PostgreSQL), undone newest first.
export interface Cleanup { what: string, run: () => Promise<void> }

/** Newest first: servers stop before their database is dropped, the database before PostgreSQL stops; a failure is said and the rest still run. */
export async function runCleanups (cleanups: Cleanup[]): Promise<void> {
  for (const cleanup of [...cleanups].reverse()) {
    try {
      await cleanup.run()
    } catch (error) {
      console.error(`bench: could not ${cleanup.what}: ${(error as Error).message}`)
    }
  }
}
