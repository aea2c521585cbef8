// A replicated view leader member's disk: Raft's term and vote, its log and its snapshot, in a
// LevelDB data directory (lib/level-dir.ts: one process per directory, a format marker, corrupt
// or foreign directories refused). What a Ready asks to persist is written as ONE atomic batch
// with `sync: true`, so a crash never leaves half of it (viewleader/raft/ready.ts, steps 1-3).
//
// Records:
//   r:peers          the members this directory was created with (JSON list): a member never
//                    starts with other peers than the ones its votes and log were given among
//   r:hard           {"term","votedFor","commitIndex"}
//   r:snapshot       {"lastIndex","lastTerm","state":[[key,value]...]}  (the applied records)
//   e:<index, 16 digits>   {"term","index","command"}  (command: the records a step changed)
//
// The view leader's state machine is its saved-state records (viewleader/saved-state.ts): a log
// entry is one step's record operations, and applying it is putting and deleting them.

import type { ClassicLevel } from 'classic-level';
import { openLevelDir, scanRecords, StoreOpenError } from '../lib/level-dir';
import type { Entry, HardState, Persisted, Ready, Snapshot } from './raft';
import type { RecordOp } from './saved-state';

/** A replicated member's database; a lone view leader's (`dht-viewleader 1`) is refused. */
export const RAFT_FORMAT = 'dht-viewleader-raft 1';

/** One log entry's command: the record operations of one step of the view leader. */
export type Command = readonly RecordOp[];
/** The snapshot's state: every applied record, as [key, value] pairs. */
export type SnapshotState = readonly (readonly [string, string])[];

const PEERS_KEY = 'r:peers';
const HARD_KEY = 'r:hard';
const SNAPSHOT_KEY = 'r:snapshot';
const ENTRY = 'e:';
const INDEX_DIGITS = 16;

type BatchOp = { type: 'put'; key: string; value: string } | { type: 'del'; key: string };

export class RaftStore {
  /** Indexes of the entries on disk, first to last (contiguous). */
  private first = 1;
  private last = 0;

  private constructor(
    private readonly db: ClassicLevel<string, string>,
    readonly dir: string,
  ) {}

  /**
   * Open `dir` for the member set `peers` (sorted), creating it if new. Refuses (StoreOpenError)
   * a directory created for other peers: the votes and entries in it were given among those, and
   * counting them among others could elect two leaders in one term.
   */
  static async open(
    dir: string,
    peers: readonly string[],
  ): Promise<{ store: RaftStore; persisted: Persisted<Command, SnapshotState> | null }> {
    const { db } = await openLevelDir(dir, { format: RAFT_FORMAT });
    const store = new RaftStore(db, dir);
    try {
      const saved = await db.get(PEERS_KEY);
      const wanted = JSON.stringify([...peers].sort());
      if (saved === undefined) {
        await db.put(PEERS_KEY, wanted, { sync: true });
      } else if (saved !== wanted) {
        throw new StoreOpenError(
          'not_a_store',
          `${dir} belongs to a view leader of members ${saved}, not ${wanted}: ` +
            `refusing to vote among other members with its log (see docs/operations.md)`,
        );
      }
      return { store, persisted: await store.load() };
    } catch (err) {
      await db.close();
      throw err;
    }
  }

  /** Steps 1-3 of a Ready (snapshot, entries, hard state) in one synced batch. */
  async save(ready: Pick<Ready<Command, SnapshotState>, 'snapshot' | 'entries' | 'hardState'>) {
    const ops: BatchOp[] = [];
    let first = this.first;
    let last = this.last;
    if (ready.snapshot !== null) {
      ops.push({ type: 'put', key: SNAPSHOT_KEY, value: JSON.stringify(ready.snapshot) });
      for (let i = first; i <= last; i++) ops.push({ type: 'del', key: entryKey(i) });
      first = ready.snapshot.lastIndex + 1;
      last = ready.snapshot.lastIndex;
    }
    if (ready.entries.length > 0) {
      const from = ready.entries[0].index;
      for (let i = Math.max(from, first); i <= last; i++) {
        ops.push({ type: 'del', key: entryKey(i) });
      }
      for (const entry of ready.entries) {
        ops.push({ type: 'put', key: entryKey(entry.index), value: JSON.stringify(entry) });
      }
      if (last < first) first = from;
      last = ready.entries[ready.entries.length - 1].index;
    }
    if (ready.hardState !== null) {
      ops.push({ type: 'put', key: HARD_KEY, value: JSON.stringify(ready.hardState) });
    }
    if (ops.length === 0) return;
    await this.db.batch(ops, { sync: true });
    this.first = first;
    this.last = last;
  }

  /**
   * The member took a snapshot of its applied state (RaftNode.compact): save it and delete the
   * entries it covers, in one synced batch.
   */
  async saveSnapshot(snapshot: Snapshot<SnapshotState>): Promise<void> {
    const ops: BatchOp[] = [{ type: 'put', key: SNAPSHOT_KEY, value: JSON.stringify(snapshot) }];
    const through = Math.min(snapshot.lastIndex, this.last);
    for (let i = this.first; i <= through; i++) ops.push({ type: 'del', key: entryKey(i) });
    await this.db.batch(ops, { sync: true });
    if (through >= this.first) this.first = through + 1;
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  private async load(): Promise<Persisted<Command, SnapshotState> | null> {
    let hardState: HardState | undefined;
    // Assigned in the scan's callback, which control-flow narrowing does not follow.
    let snapshot = null as Snapshot<SnapshotState> | null;
    const entries: Entry<Command>[] = [];
    await scanRecords(this.db, (key, value) => {
      if (key === PEERS_KEY) return;
      const parsed = parse(this.dir, key, value);
      if (key === HARD_KEY) hardState = parsed as HardState;
      else if (key === SNAPSHOT_KEY) snapshot = parsed as Snapshot<SnapshotState>;
      else if (key.startsWith(ENTRY)) entries.push(parsed as Entry<Command>);
      else throw new StoreOpenError('corrupt', `${this.dir}: unknown record ${key}`);
    });
    // Keys sort by their zero-padded index: `entries` is in log order.
    const kept = entries.filter((e) => snapshot === null || e.index > snapshot.lastIndex);
    for (let i = 1; i < kept.length; i++) {
      if (kept[i].index !== kept[i - 1].index + 1) {
        throw new StoreOpenError(
          'corrupt',
          `${this.dir}: the Raft log has a gap at ${kept[i].index}`,
        );
      }
    }
    if (entries.length > 0) {
      this.first = entries[0].index;
      this.last = entries[entries.length - 1].index;
    } else {
      this.first = (snapshot?.lastIndex ?? 0) + 1;
      this.last = snapshot?.lastIndex ?? 0;
    }
    if (hardState === undefined && snapshot === null && kept.length === 0) return null;
    return {
      hardState: hardState ?? { term: 0, votedFor: null, commitIndex: 0 },
      snapshot,
      entries: kept,
    };
  }
}

function entryKey(index: number): string {
  return ENTRY + String(index).padStart(INDEX_DIGITS, '0');
}

function parse(dir: string, key: string, value: string): unknown {
  try {
    return JSON.parse(value) as unknown;
  } catch {
    throw new StoreOpenError('corrupt', `${dir}: unreadable record ${key}`);
  }
}
