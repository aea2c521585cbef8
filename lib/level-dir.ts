// Opening a LevelDB data directory (classic-level) and reading it back, shared by the server's
// durable store (server/durable-store.ts), the view leader's state (viewleader/state-store.ts) and
// its Raft log (viewleader/raft-store.ts). It takes the directory or refuses it with a
// StoreOpenError that says which directory and why; it never starts empty over data it could not
// read (the contract's "Durability").
//
// - One process per directory: LevelDB takes an fcntl lock on DIR/LOCK (the kernel drops it when
//   the process dies, so a crash never leaves a stale lock); a second open, from another process
//   or this one, fails with 'locked'.
// - A missing directory is created; a file where the directory should be, or a directory that
//   cannot be read, is 'unreadable'; a directory of other files (no CURRENT) is 'not_a_store', and
//   nothing is created there.
// - Corruption: LevelDB skips log records that fail their checksum on recovery and only notes it
//   in DIR/LOG (classic-level does not expose paranoid_checks), then rewrites the log, so the
//   evidence is gone after that open. DIR/LOG is read after opening; if LevelDB dropped anything,
//   DIR/CORRUPTION records what it reported and the open is refused, now and on every later
//   attempt, until an operator removes that file (or opens with acceptDroppedRecords). A truncated
//   last record (a write cut short by a crash, never acknowledged) is not reported.
// - A format marker (FORMAT_KEY) says whose database it is: a server's store, a view leader's
//   state. A database with records but no marker, or another marker, is 'not_a_store'.

import fs from 'node:fs';
import path from 'node:path';
import type { ClassicLevel } from 'classic-level';

/**
 * classic-level (and its native addon) is loaded on the first open, not with this module: a
 * process run `--in-memory` (every test cluster, and the CLI) never pays its ~30 ms of CPU.
 */
function loadClassicLevel(): typeof ClassicLevel {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('classic-level') as typeof import('classic-level')).ClassicLevel;
}

/** The key of the format marker; every other key of a dht database has another prefix. */
export const FORMAT_KEY = 'm:format';
const CORRUPTION_FILE = 'CORRUPTION';
/** At most this many of LevelDB's corruption lines go into the error and DIR/CORRUPTION. */
const CORRUPTION_LINES_MAX = 20;

/** Entries read per step of a scan at open. */
const SCAN_CHUNK = 1_000;

/**
 * Every entry of an opened database but its format marker, in key order, read in chunks: how each
 * store loads itself at open (the whole database is read once, into memory).
 */
export async function scanRecords(
  db: ClassicLevel<string, string>,
  visit: (key: string, value: string) => void,
): Promise<void> {
  const iterator = db.iterator();
  try {
    for (;;) {
      const chunk = await iterator.nextv(SCAN_CHUNK);
      if (chunk.length === 0) break;
      for (const [key, value] of chunk) if (key !== FORMAT_KEY) visit(key, value);
    }
  } finally {
    await iterator.close();
  }
}

export type StoreOpenErrorCode = 'locked' | 'corrupt' | 'unreadable' | 'not_a_store';

/** The data directory cannot be used; the message says which directory and why. */
export class StoreOpenError extends Error {
  override name = 'StoreOpenError';
  constructor(
    readonly code: StoreOpenErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface LevelDirOptions {
  /** The format marker this database must carry (written into a new, empty database). */
  readonly format: string;
  /** Open even though LevelDB dropped corrupt log records (and remove DIR/CORRUPTION). */
  readonly acceptDroppedRecords?: boolean;
}

export interface OpenedLevelDir {
  readonly db: ClassicLevel<string, string>;
  /** LevelDB's lines about dropped records, when opened with acceptDroppedRecords. */
  readonly droppedRecords: readonly string[];
}

/**
 * Open (or create) the LevelDB database in `dir` with string keys and values, take its lock and
 * check its format marker. Throws StoreOpenError when the directory is locked, unreadable,
 * corrupt, or holds something else; the database is closed again then.
 */
export async function openLevelDir(dir: string, options: LevelDirOptions): Promise<OpenedLevelDir> {
  prepareDirectory(dir, options);
  const db = new (loadClassicLevel())<string, string>(dir, { valueEncoding: 'utf8' });
  try {
    await db.open();
  } catch (err) {
    throw openError(dir, err);
  }
  try {
    const droppedRecords = checkRecoveryLog(dir, options);
    const format = await db.get(FORMAT_KEY);
    if (format === undefined) {
      if ((await db.keys({ limit: 1 }).all()).length > 0) {
        throw new StoreOpenError(
          'not_a_store',
          `${dir} is a LevelDB database without a dht format marker; refusing to use it`,
        );
      }
      await db.put(FORMAT_KEY, options.format, { sync: true });
    } else if (format !== options.format) {
      throw new StoreOpenError(
        'not_a_store',
        `${dir} has format "${format}", not "${options.format}"`,
      );
    }
    return { db, droppedRecords };
  } catch (err) {
    await db.close();
    throw err;
  }
}

/** Create `dir` if missing; refuse a file, a directory of other things, or a marked corruption. */
function prepareDirectory(dir: string, options: LevelDirOptions): void {
  let names: string[];
  try {
    fs.mkdirSync(dir, { recursive: true });
    names = fs.readdirSync(dir);
  } catch (err) {
    throw new StoreOpenError(
      'unreadable',
      `cannot use ${dir} as a data directory: ${message(err)}`,
      {
        cause: err,
      },
    );
  }
  if (names.includes(CORRUPTION_FILE)) {
    const marker = path.join(dir, CORRUPTION_FILE);
    if (options.acceptDroppedRecords === true) {
      fs.rmSync(marker);
    } else {
      throw new StoreOpenError(
        'corrupt',
        `${dir}: LevelDB dropped corrupt records at an earlier open (${marker} says what); ` +
          `remove that file to accept the loss and start`,
      );
    }
  }
  if (names.length > 0 && !names.includes('CURRENT')) {
    throw new StoreOpenError(
      'not_a_store',
      `${dir} holds files but no LevelDB database (no CURRENT file); refusing to create one there`,
    );
  }
}

function openError(dir: string, err: unknown): StoreOpenError {
  const cause = (err as { cause?: unknown }).cause ?? err;
  const code = (cause as { code?: unknown }).code;
  if (code === 'LEVEL_LOCKED') {
    return new StoreOpenError(
      'locked',
      `${dir} is in use by another process or another open store (LevelDB's LOCK is held)`,
      { cause: err },
    );
  }
  const kind = code === 'LEVEL_CORRUPTION' || code === 'LEVEL_IO_ERROR' ? 'corrupt' : 'unreadable';
  return new StoreOpenError(kind, `cannot open the LevelDB database in ${dir}: ${message(cause)}`, {
    cause: err,
  });
}

/**
 * LevelDB logs the recovery of this open to DIR/LOG; a "Corruption" line there means it skipped
 * records. Returns those lines when accepted; otherwise records them in DIR/CORRUPTION and throws.
 */
function checkRecoveryLog(dir: string, options: LevelDirOptions): string[] {
  let log: string;
  try {
    log = fs.readFileSync(path.join(dir, 'LOG'), 'utf8');
  } catch {
    return []; // no info log: nothing was reported
  }
  const dropped = log
    .split('\n')
    .filter((line) => /corruption/i.test(line))
    .slice(0, CORRUPTION_LINES_MAX);
  if (dropped.length === 0 || options.acceptDroppedRecords === true) return dropped;
  fs.writeFileSync(path.join(dir, CORRUPTION_FILE), `${dropped.join('\n')}\n`);
  throw new StoreOpenError(
    'corrupt',
    `${dir}: LevelDB dropped corrupt log records while recovering ` +
      `(${dropped.length} report(s), first: ${dropped[0].trim()}); ` +
      `refusing to start until ${path.join(dir, CORRUPTION_FILE)} is removed`,
  );
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Fault injection for tests (docs/testing.md): while the file named by DHT_FAULT_SYNC_FAIL_FILE
 * exists, every sync of a data directory fails, as on a full disk. Unset, it costs nothing.
 */
export function injectedSyncFailure(): ((ops: number) => void) | undefined {
  const file = process.env.DHT_FAULT_SYNC_FAIL_FILE;
  if (file === undefined || file === '') return undefined;
  return () => {
    if (fs.existsSync(file)) throw new Error(`injected sync failure (${file} exists)`);
  };
}
