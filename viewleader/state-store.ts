// The view leader's data directory: a LevelDB database (lib/level-dir.ts: one process per
// directory, clear errors for a locked, unreadable or corrupt one) holding the records of
// viewleader/saved-state.ts. The shell's half of "durable before it answers":
//
// - `open` loads every record into a snapshot for the cores to restore from, or refuses the
//   directory (StoreOpenError); it never starts empty over data it could not read.
// - `write` queues one step's changes as one unit; units are synced in order by group commit
//   (lib/group-commit.ts), as one LevelDB batch with `sync: true` per group, so a step is on disk
//   entirely or not at all, and concurrent requests share a sync. `durable()` resolves once every
//   unit written so far is on disk: every answer waits for it (viewleader/routes.ts).
// - A failed sync is final: memory now holds changes the disk may not, and retrying an fsync is
//   unsafe (lib/group-commit.ts). `onFailure` runs once; the shell then serves reads of what is
//   on disk (`readBack`) and refuses every change until a restart, which recovers from the disk.
//   Nothing that depended on the failed write was answered.
// - `busy` bounds what waits for a sync (VIEWLEADER_SYNC_QUEUE_STEPS_MAX steps, or
//   VIEWLEADER_SYNC_QUEUE_BYTES_MAX bytes): the shell refuses requests while it is set, before
//   they change anything, so a write never finds the queue full.

import type { ClassicLevel } from 'classic-level';
import { assert } from '../lib/assert';
import { GroupCommit } from '../lib/group-commit';
import { openLevelDir, scanRecords, StoreOpenError } from '../lib/level-dir';
import {
  VIEWLEADER_SYNC_BATCH_BYTES_MAX,
  VIEWLEADER_SYNC_BATCH_STEPS_MAX,
  VIEWLEADER_SYNC_QUEUE_BYTES_MAX,
  VIEWLEADER_SYNC_QUEUE_STEPS_MAX,
} from '../lib/limits';
import {
  recordOps,
  SavedStateError,
  snapshotFromRecords,
  VIEWLEADER_FORMAT,
  type RecordOp,
  type StateLog,
  type ViewLeaderChanges,
  type ViewLeaderSnapshot,
} from './saved-state';

export interface StateStoreOptions {
  /** Runs once when a sync fails: the process must exit (its memory is ahead of its disk). */
  readonly onFailure: (err: Error) => void;
  /** Fault injection for tests: runs before each sync; a throw fails that sync. */
  readonly beforeSync?: (steps: number) => void;
}

export class StateStore implements StateLog {
  private readonly group: GroupCommit<readonly RecordOp[]>;
  private failureReported = false;
  private closed = false;

  private constructor(
    private readonly db: ClassicLevel<string, string>,
    readonly dir: string,
    private readonly options: StateStoreOptions,
  ) {
    this.group = new GroupCommit<readonly RecordOp[]>({
      sync: async (steps) => {
        options.beforeSync?.(steps.length);
        await db.batch(steps.flat() as RecordOp[], { sync: true });
      },
      // UTF-16 units: an estimate of bytes, enough for a bound.
      bytesOf: (ops) =>
        ops.reduce((sum, op) => sum + op.key.length + (op.type === 'put' ? op.value.length : 0), 0),
      batchOpsMax: VIEWLEADER_SYNC_BATCH_STEPS_MAX,
      batchBytesMax: VIEWLEADER_SYNC_BATCH_BYTES_MAX,
      // `busy` keeps the queue under its bounds before a step changes anything; one step may
      // still pass the byte bound by its own size (it is bounded by the tables), so the group
      // commit's own bound is only a backstop.
      queueOpsMax: VIEWLEADER_SYNC_QUEUE_STEPS_MAX,
      queueBytesMax: Number.MAX_SAFE_INTEGER,
    });
  }

  /**
   * Open (or create) the view leader's database in `dir` and read the saved state. Throws
   * StoreOpenError when the directory is locked, unreadable, corrupt or not a view leader's.
   */
  static async open(
    dir: string,
    options: StateStoreOptions,
  ): Promise<{ store: StateStore; snapshot: ViewLeaderSnapshot }> {
    const { db } = await openLevelDir(dir, { format: VIEWLEADER_FORMAT });
    try {
      return { store: new StateStore(db, dir, options), snapshot: await readSnapshot(db, dir) };
    } catch (err) {
      await db.close();
      throw err;
    }
  }

  /**
   * The state as it is on disk, read back after a failed sync: LevelDB applies a batch to what
   * it serves only once its log write succeeded, so this is exactly what was synced before.
   */
  readBack(): Promise<ViewLeaderSnapshot> {
    return readSnapshot(this.db, this.dir);
  }

  get busy(): boolean {
    const { queuedOps, queuedBytes } = this.group.stats;
    return (
      queuedOps >= VIEWLEADER_SYNC_QUEUE_STEPS_MAX || queuedBytes >= VIEWLEADER_SYNC_QUEUE_BYTES_MAX
    );
  }

  write(changes: ViewLeaderChanges): void {
    const ops = recordOps(changes);
    if (ops.length === 0) return; // a heartbeat that changed nothing costs no write and no sync
    assert(!this.closed, 'no step is saved after close');
    let durable: Promise<void>;
    try {
      durable = this.group.write(ops);
    } catch (err) {
      // Only after a failed sync (or a full queue, which `busy` rules out): memory is now ahead
      // of the disk for good.
      this.fail(err);
      return;
    }
    durable.catch((err: unknown) => this.fail(err));
  }

  durable(): Promise<void> {
    return this.group.flush();
  }

  /** Syncs so far (each made one group of steps durable), for tests and logs. */
  get syncs(): number {
    return this.group.stats.syncs;
  }

  /** Wait for queued steps to be durable, then release the directory and its lock. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.group.close();
    } finally {
      await this.db.close();
    }
  }

  private fail(err: unknown): void {
    if (this.failureReported) return;
    this.failureReported = true;
    this.options.onFailure(err instanceof Error ? err : new Error(String(err)));
  }
}

/** Every record but the format marker, as the snapshot the cores restore from. */
async function readSnapshot(
  db: ClassicLevel<string, string>,
  dir: string,
): Promise<ViewLeaderSnapshot> {
  try {
    const records: [string, string][] = [];
    await scanRecords(db, (key, value) => records.push([key, value]));
    try {
      return snapshotFromRecords(records);
    } catch (err) {
      if (!(err instanceof SavedStateError)) throw err;
      throw new StoreOpenError('corrupt', `${dir}: ${err.message}`, { cause: err });
    }
  } catch (err) {
    throw err instanceof StoreOpenError
      ? err
      : new StoreOpenError(
          'unreadable',
          `cannot read the view leader state in ${dir}: ${err instanceof Error ? err.message : String(err)}`,
          { cause: err },
        );
  }
}
