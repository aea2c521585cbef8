// A durable Store on LevelDB (classic-level), with group commit: every server's store unless it
// runs --in-memory (server/startup.ts opens it).
// docs/libraries.md ("Storage engine: measured") has the measurements and why LevelDB.
//
// Design
// - Memory is the read path, LevelDB the record. The Store interface is synchronous and its
//   callers stay as they are, so the whole bucket (and every record table) is kept in memory, as
//   MemoryStore already does, and loaded by one scan at open (100,000 keys: well under a second).
// - Writes change memory at once and queue their LevelDB op; the writes of one turn (one step of
//   a request: a decision with its value and records) are one unit, synced whole, never split
//   across two syncs. They return without waiting and ask for no sync. One LevelDB batch with `sync: true` (log append + fdatasync) stores everything
//   queued while the previous sync ran (lib/group-commit.ts), so concurrent requests share one
//   sync; a sync starts once somebody awaits `flush()`, or STORE_LAZY_SYNC_MS after a write that
//   nobody awaits, which therefore costs no sync of its own.
// - Durability is awaited separately: `flush()` resolves once every write made before the call
//   is on disk. The shell's rule: a request that changed state answers only after
//   `await store.flush()` (a yes vote, a commit, a local set, a delete, a received transfer). A
//   read may see a write that is not durable yet: only a chosen commit or a received copy, whose
//   cause is durable elsewhere, so a crash cannot take back a value a reader saw (docs/design.md,
//   "Durability and recovery of a server"). The one commit whose cause may be in this process's
//   memory alone, a lone replica's recovery, is refused to readers until its sync
//   (server/participant.ts, `refusesReads`).
// - A failed sync is fatal (lib/group-commit.ts: after a failed fsync, retrying is unsafe): every
//   unsynced write's flush rejects, and every later write throws SyncFailedError: the requests
//   that needed them are refused, nothing more is acknowledged. Reads go on from memory (the
//   contract: a failed write keeps the process serving reads). Memory may hold writes the disk
//   does not; the server writes only chosen commits and received copies there, and whatever
//   decided them is on disk already, so a restart recovers them. Restart the process to write
//   again.
// - Opening (lib/level-dir.ts, shared with the view leader): one process per directory (LevelDB's
//   fcntl lock), a clear StoreOpenError for a locked, unreadable or corrupt directory, and
//   LevelDB's silently dropped log records turned into a refusal (DIR/CORRUPTION).
//
// On-disk format (LevelDB keys and values are UTF-8 strings):
//   m:format             FORMAT
//   b:<key>              <version>:<value>         bucket entries: a live value
//   b:<key>              <version>d                bucket entries: a tombstone (a delete)
//   r:<table>:<key>      <string>                  record tables (2PC participant, view leader)
// A key or value with a lone surrogate (valid in a JS string, not UTF-8) is stored JSON-escaped
// instead, as `B:<json key>` and `<version>j<json value>`, so it reads back exactly; a record key
// with one as `R:<table>:<json key>` (added to format 1 likewise: a build without it refuses such
// a directory as corrupt).
// Tombstones (docs/design.md, "Delete and tombstones") were added to format 1 without a new
// marker: a value never starts `<digits>d`, so every older directory reads the same, and a
// build without tombstones refuses a directory holding one as corrupt rather than lose it.

import type { ClassicLevel } from 'classic-level';
import { assert } from '../lib/assert';
import { GroupCommit, SyncFailedError } from '../lib/group-commit';
import { openLevelDir, scanRecords, StoreOpenError } from '../lib/level-dir';
import {
  STORE_BATCH_BYTES_MAX,
  STORE_BATCH_OPS_MAX,
  STORE_LAZY_SYNC_MS,
  STORE_QUEUE_BYTES_MAX,
  STORE_QUEUE_OPS_MAX,
} from '../lib/limits';
import { isTombstone, liveEntries, liveKeys, type Copy, type Store, type Versioned } from './store';

declare global {
  interface String {
    /** ES2024, in Node.js 20 (V8 11.3): true when the string has no lone surrogate. */
    isWellFormed(): boolean;
  }
}

// Opening errors are shared with the view leader (lib/level-dir.ts); exported here as before.
export { StoreOpenError, type StoreOpenErrorCode } from '../lib/level-dir';

const FORMAT = 'dht-store 1';
const TABLE_NAME = /^[a-z][a-z0-9-]*$/;

export interface DurableStoreOptions {
  /** Open even though LevelDB dropped corrupt log records (and remove DIR/CORRUPTION). */
  readonly acceptDroppedRecords?: boolean;
  /** Fault injection for tests: runs before each sync; a throw fails that sync. */
  readonly beforeSync?: (ops: number) => void;
}

export interface Recovery {
  /** Bucket entries loaded, tombstones included. */
  readonly bucketKeys: number;
  readonly tombstones: number;
  readonly records: number;
  readonly openMs: number;
  /** LevelDB's lines about dropped records, when opened with acceptDroppedRecords. */
  readonly droppedRecords: readonly string[];
}

type Op =
  | { readonly type: 'put'; readonly key: string; readonly value: string }
  | { readonly type: 'del'; readonly key: string };

export class DurableStore implements Store {
  private readonly bucket = new Map<string, Copy>();
  private tombstoneCount = 0;
  private readonly tables = new Map<string, Map<string, string>>();
  /** Units of writes (one turn's each, see `seal`), synced in groups. */
  private readonly group: GroupCommit<Op[]>;
  /** This turn's writes, queued as one unit once the turn is over (`seal`). */
  private unit: Op[] = [];
  private closed = false;

  private constructor(
    private readonly db: ClassicLevel<string, string>,
    readonly dir: string,
    options: DurableStoreOptions,
  ) {
    const { beforeSync } = options;
    this.group = new GroupCommit<Op[]>({
      sync: async (units) => {
        const ops = units.flat();
        beforeSync?.(ops.length);
        // A chained batch, not `db.batch(array)`: abstract-level clones and re-validates every
        // op of an array batch, which measured 9 us per op on this thread against under 4 here
        // (docs/performance.md, "Durability"). The ops are ours and already well-formed.
        const batch = db.batch();
        for (const op of ops) {
          if (op.type === 'put') batch.put(op.key, op.value);
          else batch.del(op.key);
        }
        await batch.write({ sync: true });
      },
      // UTF-16 units: an estimate of bytes, enough for a bound.
      bytesOf: (unit) =>
        unit.reduce(
          (sum, op) => sum + op.key.length + (op.type === 'put' ? op.value.length : 0),
          0,
        ),
      writesOf: (unit) => unit.length,
      batchOpsMax: STORE_BATCH_OPS_MAX,
      batchBytesMax: STORE_BATCH_BYTES_MAX,
      // No bound here: `busy` bounds the queue where work is admitted, and a write never fails
      // for room (a decision refused half-way, after memory changed, would reach the disk in
      // part: its records without its value, or some of its records).
      queueOpsMax: Number.MAX_SAFE_INTEGER,
      queueBytesMax: Number.MAX_SAFE_INTEGER,
      lazySyncMs: STORE_LAZY_SYNC_MS,
    });
  }

  /** How the last open went: what it loaded and how long it took. */
  recovery: Recovery = {
    bucketKeys: 0,
    tombstones: 0,
    records: 0,
    openMs: 0,
    droppedRecords: [],
  };

  /**
   * Open (or create) the store in `dir`, take its lock and load it into memory. Throws
   * StoreOpenError when the directory is locked, unreadable, corrupt, or holds something else.
   */
  static async open(dir: string, options: DurableStoreOptions = {}): Promise<DurableStore> {
    const t0 = performance.now();
    const { db, droppedRecords } = await openLevelDir(dir, {
      format: FORMAT,
      acceptDroppedRecords: options.acceptDroppedRecords,
    });
    const store = new DurableStore(db, dir, options);
    try {
      const entries = await store.load();
      store.recovery = {
        bucketKeys: store.bucket.size,
        tombstones: store.tombstoneCount,
        records: entries - store.bucket.size,
        openMs: performance.now() - t0,
        droppedRecords,
      };
      return store;
    } catch (err) {
      await db.close();
      throw err;
    }
  }

  // ---- Store: memory reads -------------------------------------------------------------------

  get(key: string): Versioned | undefined {
    this.checkOpen();
    const copy = this.bucket.get(key);
    return copy === undefined || isTombstone(copy) ? undefined : copy;
  }

  copyOf(key: string): Copy | undefined {
    this.checkOpen();
    return this.bucket.get(key);
  }

  versionOf(key: string): number {
    this.checkOpen();
    return this.bucket.get(key)?.version ?? 0;
  }

  keys(): IterableIterator<string> {
    this.checkOpen();
    return liveKeys(this.bucket);
  }

  copyKeys(): IterableIterator<string> {
    this.checkOpen();
    return this.bucket.keys();
  }

  entries(): IterableIterator<[string, Versioned]> {
    this.checkOpen();
    return liveEntries(this.bucket);
  }

  get size(): number {
    this.checkOpen();
    return this.bucket.size - this.tombstoneCount;
  }

  get tombstones(): number {
    this.checkOpen();
    return this.tombstoneCount;
  }

  // ---- Store: writes (visible at once, durable after flush) -----------------------------------

  put(key: string, value: string, version: number): void {
    assert(Number.isSafeInteger(version) && version >= 1, 'a stored version is a positive integer');
    this.enqueue({ type: 'put', key: bucketKey(key), value: bucketValue(value, version) });
    this.setCopy(key, { value, version });
  }

  putIfNewer(key: string, value: string, version: number): boolean {
    if (version <= this.versionOf(key)) return false;
    this.put(key, value, version);
    return true;
  }

  putTombstoneIfNewer(key: string, version: number): boolean {
    if (version <= this.versionOf(key)) return false;
    assert(Number.isSafeInteger(version) && version >= 1, 'a stored version is a positive integer');
    this.enqueue({ type: 'put', key: bucketKey(key), value: tombstoneValue(version) });
    this.setCopy(key, { deleted: true, version });
    return true;
  }

  delete(key: string): void {
    this.checkUsable();
    const held = this.bucket.get(key);
    if (held === undefined) return; // absent in memory means absent on disk, once flushed
    this.enqueue({ type: 'del', key: bucketKey(key) });
    if (isTombstone(held)) this.tombstoneCount--;
    this.bucket.delete(key);
  }

  // ---- record tables (2PC participant state, view leader state) --------------------------------

  getRecord(table: string, key: string): string | undefined {
    this.checkOpen();
    return this.tables.get(table)?.get(key);
  }

  putRecord(table: string, key: string, value: string): void {
    assert(value.isWellFormed(), 'a record is well-formed text (JSON.stringify output is)');
    this.enqueue({ type: 'put', key: recordKey(table, key), value });
    let rows = this.tables.get(table);
    if (rows === undefined) this.tables.set(table, (rows = new Map()));
    rows.set(key, value);
  }

  deleteRecord(table: string, key: string): void {
    this.checkUsable();
    const rows = this.tables.get(table);
    if (rows === undefined || !rows.has(key)) return;
    this.enqueue({ type: 'del', key: recordKey(table, key) });
    rows.delete(key);
  }

  records(table: string): IterableIterator<[string, string]> {
    this.checkOpen();
    return (this.tables.get(table) ?? new Map<string, string>()).entries();
  }

  // ---- durability ------------------------------------------------------------------------------

  /** Resolves once every write made before this call is on disk; rejects if a sync failed. */
  flush(): Promise<void> {
    this.seal();
    return this.group.flush();
  }

  /** Writes visible in memory but not yet known to be on disk. */
  get unsyncedWrites(): number {
    return this.group.unsyncedOps + this.unit.length;
  }

  /** Syncs so far (each made one group of writes durable), for tests and metrics. */
  get syncs(): number {
    return this.group.stats.syncs;
  }

  /**
   * At the bound of writes waiting for a sync (STORE_QUEUE_OPS_MAX, STORE_QUEUE_BYTES_MAX): new
   * work is refused until syncs drain them (server/store.ts, `busy`).
   */
  get busy(): boolean {
    const { queuedOps, queuedBytes } = this.group.stats;
    return (
      queuedOps + this.unit.length >= STORE_QUEUE_OPS_MAX || queuedBytes >= STORE_QUEUE_BYTES_MAX
    );
  }

  /** Set once a sync failed: the store is unusable and the process should exit. */
  get failed(): SyncFailedError | undefined {
    return this.group.failed;
  }

  /** Wait for queued writes (throws if one failed), then release the directory and its lock. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.seal();
    try {
      await this.group.close();
    } finally {
      await this.db.close();
    }
  }

  // ---- internals -------------------------------------------------------------------------------

  /** Reads go on after a failed sync: the process keeps serving what it holds. */
  private checkOpen(): void {
    assert(!this.closed, 'the store is open');
  }

  private checkUsable(): void {
    const failure = this.group.failed;
    if (failure !== undefined) throw failure;
    assert(!this.closed, 'the store is open');
  }

  /** The in-memory side of a bucket write, keeping the tombstone count. */
  private setCopy(key: string, copy: Copy): void {
    const held = this.bucket.get(key);
    if (held !== undefined && isTombstone(held)) this.tombstoneCount--;
    if (isTombstone(copy)) this.tombstoneCount++;
    this.bucket.set(key, copy);
  }

  /**
   * Queue `op` for a sync; throws (and nothing changes) only when a sync failed, which is set
   * between turns: the writes of one synchronous step are queued all or none. It asks for no
   * sync: whoever needs it durable awaits `flush()`, which does (lib/group-commit.ts).
   */
  private enqueue(op: Op): void {
    this.checkUsable();
    if (this.unit.length === 0) queueMicrotask(() => this.seal());
    this.unit.push(op);
  }

  /**
   * Queue the writes made since the last seal as one unit, which group commit syncs whole: what
   * one step wrote in one turn (a decision: its value, the prepared record's deletion, the
   * decision and the key's last commit) is never split across two syncs, so a crash between
   * them cannot leave half of it on disk. Runs when the turn is over, and before a flush.
   */
  private seal(): void {
    if (this.unit.length === 0) return;
    const unit = this.unit;
    this.unit = [];
    try {
      this.group.queue(unit);
    } catch {
      // A sync failed since these writes were made: none of them reaches the disk, and every
      // flush and later write reports the failure.
    }
  }

  /** Read every entry but the format marker into memory; returns how many. */
  private async load(): Promise<number> {
    let entries = 0;
    await scanRecords(this.db, (key, value) => {
      entries++;
      this.loadEntry(key, value);
    });
    return entries;
  }

  private loadEntry(stored: string, value: string): void {
    const corrupt = (why: string): StoreOpenError =>
      new StoreOpenError('corrupt', `${this.dir}: ${why} (key ${JSON.stringify(stored)})`);
    if (stored.startsWith('b:') || stored.startsWith('B:')) {
      const key = stored[0] === 'b' ? stored.slice(2) : parseJsonString(stored.slice(2));
      const copy = parseBucketValue(value);
      if (key === undefined || copy === undefined) throw corrupt('unreadable bucket entry');
      this.setCopy(key, copy);
    } else if (stored.startsWith('r:') || stored.startsWith('R:')) {
      const colon = stored.indexOf(':', 2);
      const table = stored.slice(2, colon);
      const rest = stored.slice(colon + 1);
      const key = stored[0] === 'r' ? rest : parseJsonString(rest);
      if (colon < 0 || !TABLE_NAME.test(table) || key === undefined) {
        throw corrupt('unreadable record key');
      }
      let rows = this.tables.get(table);
      if (rows === undefined) this.tables.set(table, (rows = new Map()));
      rows.set(key, value);
    } else {
      throw corrupt('unknown key prefix');
    }
  }
}

// ---- encoding ------------------------------------------------------------------------------------

function bucketKey(key: string): string {
  return key.isWellFormed() ? `b:${key}` : `B:${JSON.stringify(key)}`;
}

function bucketValue(value: string, version: number): string {
  return value.isWellFormed() ? `${version}:${value}` : `${version}j${JSON.stringify(value)}`;
}

function tombstoneValue(version: number): string {
  return `${version}d`;
}

function recordKey(table: string, key: string): string {
  assert(TABLE_NAME.test(table), `a table name is lowercase letters, digits and dashes: ${table}`);
  // Record keys come from requests too (a key's last commit, a txid): a lone surrogate is valid
  // there and must be stored, not refused half-way through a decision's records.
  return key.isWellFormed() ? `r:${table}:${key}` : `R:${table}:${JSON.stringify(key)}`;
}

function parseBucketValue(stored: string): Copy | undefined {
  let i = 0;
  while (i < stored.length && stored.charCodeAt(i) >= 48 && stored.charCodeAt(i) <= 57) i++;
  const version = Number(stored.slice(0, i));
  if (i === 0 || !Number.isSafeInteger(version) || version < 1) return undefined;
  if (stored[i] === ':') return { value: stored.slice(i + 1), version };
  if (stored[i] === 'd') return i + 1 === stored.length ? { deleted: true, version } : undefined;
  if (stored[i] !== 'j') return undefined;
  const value = parseJsonString(stored.slice(i + 1));
  return value === undefined ? undefined : { value, version };
}

function parseJsonString(text: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === 'string' ? parsed : undefined;
  } catch {
    return undefined;
  }
}
