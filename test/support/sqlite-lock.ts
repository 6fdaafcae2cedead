import { DatabaseSync } from 'node:sqlite'

/** Takes the write lock on the database at `path` from another connection and gives it back after `ms`. */
export function holdWriteLock(path: string, ms: number): Promise<void> {
  const other = new DatabaseSync(path)
  other.exec('BEGIN IMMEDIATE')
  return new Promise((resolve) =>
    setTimeout(() => {
      other.exec('COMMIT')
      other.close()
      resolve()
    }, ms),
  )
}
