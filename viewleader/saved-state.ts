// What the view leader saves, and how: the cores' change logs (Membership, LockTable) become
// records of a LevelDB database, and the records become a snapshot the cores restore from. Pure:
// no I/O, so a test can replay changes over a Map and restore from it
// (viewleader/state-store.ts does the I/O).
//
// Records (keys and values are strings; JSON.stringify escapes lone surrogates, so every key and
// value is well-formed UTF-8 and reads back exactly):
//
//   epoch                              N                      absent: 0
//   placement                          {"epoch":N,"servers":[{"id","address"}...]}
//   member:<json id>                   {"address","copiedEpoch","doneEpoch"}   (null: none yet)
//   expired:<json id>                  SEQ                    the lowest is forgotten first
//   holder:<json lock>                 <json requester>
//   waiter:<json [lock, requester]>    SEQ                    a queue's order: ascending SEQ
//
// plus the format marker (lib/level-dir.ts). A member's last heartbeat is not saved
// (viewleader/membership.ts).

import * as z from 'zod/mini';
import { Placement } from '../lib/messages';
import type { LockChange, LockTableSnapshot, SavedLock, SavedWaiter } from './locks';
import type { DurableMember, ExpiredId, MembershipChange, MembershipSnapshot } from './membership';

/** The format marker of a view leader's database (a server's is another). */
export const VIEWLEADER_FORMAT = 'dht-viewleader 1';

/** One step's changes (a request, or a tick): saved together, as one atomic LevelDB batch. */
export interface ViewLeaderChanges {
  readonly membership: readonly MembershipChange[];
  readonly locks: readonly LockChange[];
}

export interface ViewLeaderSnapshot {
  readonly membership: MembershipSnapshot;
  readonly locks: LockTableSnapshot;
}

/**
 * Where the shell (viewleader/routes.ts) puts each step's changes: a data directory
 * (viewleader/state-store.ts), or nowhere (`--in-memory`, `IN_MEMORY`).
 */
export interface StateLog {
  /** True while a step's changes could not be queued: refuse requests before changing anything. */
  readonly busy: boolean;
  /** Queue one step's changes; they become durable together, after every earlier step's. */
  write(changes: ViewLeaderChanges): void;
  /** Resolves once every step written so far is durable; rejects if saving failed. */
  durable(): Promise<void>;
}

/** `--in-memory`: nothing is saved, a restart forgets everything (the servers' epochs aside). */
export const IN_MEMORY: StateLog = {
  busy: false,
  write: () => {},
  durable: () => Promise.resolve(),
};

export type RecordOp =
  | { readonly type: 'put'; readonly key: string; readonly value: string }
  | { readonly type: 'del'; readonly key: string };

/** A saved record could not be read: the data directory is corrupt. */
export class SavedStateError extends Error {
  override name = 'SavedStateError';
}

const EPOCH_KEY = 'epoch';
const PLACEMENT_KEY = 'placement';
const MEMBER = 'member:';
const EXPIRED = 'expired:';
const HOLDER = 'holder:';
const WAITER = 'waiter:';

export function recordOps(changes: ViewLeaderChanges): RecordOp[] {
  return [...changes.membership.map(membershipOp), ...changes.locks.map(lockOp)];
}

function membershipOp(change: MembershipChange): RecordOp {
  switch (change.kind) {
    case 'epoch':
      return put(EPOCH_KEY, change.epoch);
    case 'placement':
      return put(PLACEMENT_KEY, change.placement);
    case 'member': {
      const { id, address, copiedEpoch, doneEpoch } = change.member;
      return put(MEMBER + JSON.stringify(id), {
        address,
        copiedEpoch: copiedEpoch ?? null,
        doneEpoch: doneEpoch ?? null,
      });
    }
    case 'member_gone':
      return { type: 'del', key: MEMBER + JSON.stringify(change.id) };
    case 'expired':
      return put(EXPIRED + JSON.stringify(change.expired.id), change.expired.seq);
    case 'expired_forgotten':
      return { type: 'del', key: EXPIRED + JSON.stringify(change.id) };
  }
}

function lockOp(change: LockChange): RecordOp {
  switch (change.kind) {
    case 'held':
      return put(HOLDER + JSON.stringify(change.lock), change.holder);
    case 'freed':
      return { type: 'del', key: HOLDER + JSON.stringify(change.lock) };
    case 'queued':
      return put(waiterKey(change.lock, change.waiter.requester), change.waiter.seq);
    case 'dequeued':
      return { type: 'del', key: waiterKey(change.lock, change.requester) };
  }
}

function put(key: string, value: unknown): RecordOp {
  return { type: 'put', key, value: JSON.stringify(value) };
}

function waiterKey(lock: string, requester: string): string {
  return WAITER + JSON.stringify([lock, requester]);
}

// ---- reading ---------------------------------------------------------------------------------------

const Seq = z.number().check(z.int(), z.minimum(0), z.maximum(Number.MAX_SAFE_INTEGER));
const EpochValue = z.number().check(z.int(), z.minimum(0), z.maximum(Number.MAX_SAFE_INTEGER));
const Text = z.string().check(z.minLength(1));
const MemberValue = z.strictObject({
  address: Text,
  copiedEpoch: z.nullable(EpochValue),
  doneEpoch: z.nullable(EpochValue),
});
const WaiterKey = z.tuple([Text, Text]);

/**
 * The saved state, from every record but the format marker (in any order). Throws
 * SavedStateError, naming the record, if one cannot be read; whether the records are consistent
 * with each other is for `Membership.restore` and `LockTable.restore` to check.
 */
export function snapshotFromRecords(
  records: Iterable<readonly [string, string]>,
): ViewLeaderSnapshot {
  let epoch = 0;
  let placement: Placement = { epoch: 0, servers: [] };
  const members: DurableMember[] = [];
  const expired: ExpiredId[] = [];
  const holders = new Map<string, string>();
  const waiters = new Map<string, (SavedWaiter & { readonly lock: string })[]>();
  for (const [key, value] of records) {
    const read = <T>(schema: z.ZodMiniType<T>, text: string, what: string): T => {
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new SavedStateError(`unreadable ${what} in record ${JSON.stringify(key)}`);
      }
      const parsed = schema.safeParse(json);
      if (!parsed.success) {
        throw new SavedStateError(
          `unreadable ${what} in record ${JSON.stringify(key)}: ${parsed.error.issues[0]?.message}`,
        );
      }
      return parsed.data;
    };
    if (key === EPOCH_KEY) {
      epoch = read(EpochValue, value, 'epoch');
    } else if (key === PLACEMENT_KEY) {
      placement = read(Placement, value, 'placement');
    } else if (key.startsWith(MEMBER)) {
      const id = read(Text, key.slice(MEMBER.length), 'server ID');
      const { address, copiedEpoch, doneEpoch } = read(MemberValue, value, 'member');
      members.push({
        id,
        address,
        copiedEpoch: copiedEpoch ?? undefined,
        doneEpoch: doneEpoch ?? undefined,
      });
    } else if (key.startsWith(EXPIRED)) {
      const id = read(Text, key.slice(EXPIRED.length), 'server ID');
      expired.push({ id, seq: read(Seq, value, 'sequence number') });
    } else if (key.startsWith(HOLDER)) {
      const lock = read(Text, key.slice(HOLDER.length), 'lock name');
      holders.set(lock, read(Text, value, 'holder'));
    } else if (key.startsWith(WAITER)) {
      const [lock, requester] = read(WaiterKey, key.slice(WAITER.length), 'waiter');
      const seq = read(Seq, value, 'sequence number');
      let queue = waiters.get(lock);
      if (queue === undefined) waiters.set(lock, (queue = []));
      queue.push({ lock, requester, seq });
    } else {
      throw new SavedStateError(`unknown record ${JSON.stringify(key)}`);
    }
  }
  const locks: SavedLock[] = [];
  for (const [lock, holder] of holders) {
    const queue = (waiters.get(lock) ?? []).sort((a, b) => a.seq - b.seq);
    waiters.delete(lock);
    locks.push({ lock, holder, waiters: queue.map(({ requester, seq }) => ({ requester, seq })) });
  }
  const orphan = waiters.keys().next();
  if (!orphan.done) {
    throw new SavedStateError(`waiters saved for lock ${JSON.stringify(orphan.value)}, no holder`);
  }
  return {
    membership: {
      epoch,
      members: members.sort((a, b) => compareStrings(a.id, b.id)),
      expired: expired.sort((a, b) => a.seq - b.seq),
      placement,
    },
    locks: { locks: locks.sort((a, b) => compareStrings(a.lock, b.lock)) },
  };
}

/** The epoch in a set of records (0 when none was saved yet): cheaper than a whole snapshot. */
export function epochOfRecords(records: ReadonlyMap<string, string>): number {
  const saved = records.get(EPOCH_KEY);
  const epoch = saved === undefined ? 0 : Number(saved);
  return Number.isSafeInteger(epoch) && epoch >= 0 ? epoch : 0;
}

/** Code-unit order, independent of the process locale. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
