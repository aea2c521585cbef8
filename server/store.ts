// The server's bucket and its small tables of protocol state. Two implementations: this in-memory
// one (`--in-memory`) and server/durable-store.ts (LevelDB, the default). Every copy carries a
// per-key version so replicas and rebalancing keep the newest. Writes are visible at once;
// `flush()` resolves once they are durable, and the shell awaits it before answering a request
// whose answer depends on them.
//
// A delete is a copy too: a *tombstone*, held at its version exactly like a value, so that the
// same version order that makes the newest value win everywhere (commits, transfers, offers, a
// replica that was away) makes the delete win, and an older value never comes back. Reads see
// tombstones as absent. docs/design.md, "Delete and tombstones", has the argument and why
// tombstones are kept.

import { assert } from '../lib/assert';

/** A live value at its version. */
export interface Versioned {
  readonly value: string;
  readonly version: number;
  readonly deleted?: undefined;
}

/** A delete at its version: held, ordered and moved like a value; read as absent. */
export interface Tombstone {
  readonly deleted: true;
  readonly version: number;
  readonly value?: undefined;
}

/** What a server holds of a key: the unit of replication. */
export type Copy = Versioned | Tombstone;

export interface Store {
  /** The live value of a key: undefined when absent or deleted. What reads see. */
  get(key: string): Versioned | undefined;
  /** What is held of a key, a tombstone included: what replication and rebalancing see. */
  copyOf(key: string): Copy | undefined;
  /** Version of the copy held (a tombstone's too), 0 when none. */
  versionOf(key: string): number;
  /** Store a value unconditionally (local `set`). */
  put(key: string, value: string, version: number): void;
  /** Store a value only if `version` is newer than the copy held; returns whether it stored. */
  putIfNewer(key: string, value: string, version: number): boolean;
  /** Store a tombstone only if `version` is newer than the copy held; returns whether it stored. */
  putTombstoneIfNewer(key: string, version: number): boolean;
  /**
   * Forget a key altogether, a tombstone included. Only for a copy this server no longer
   * replicates, once every next replica holds it (the rebalancing cleanup): a delete is a
   * tombstone, never this.
   */
  delete(key: string): void;
  /** The keys with a live value (what `query_all_keys` lists). */
  keys(): IterableIterator<string>;
  /** Every key held, tombstones included (what rebalancing moves). */
  copyKeys(): IterableIterator<string>;
  /** The live values. */
  entries(): IterableIterator<[string, Versioned]>;
  /** How many keys have a live value. */
  readonly size: number;

  /** Record tables: the 2PC participant's state (server/participant-records.ts). */
  getRecord(table: string, key: string): string | undefined;
  putRecord(table: string, key: string, value: string): void;
  deleteRecord(table: string, key: string): void;
  records(table: string): IterableIterator<[string, string]>;

  /** Resolves once every write made before the call is durable; rejects if one failed. */
  flush(): Promise<void>;

  /** How many tombstones are held. */
  readonly tombstones: number;

  /** Set once a write to disk failed: changes are refused from then on, reads go on. */
  readonly failed: Error | undefined;

  /**
   * The writes waiting for a sync reached their bound (a stalled disk): the shell admits no new
   * work until syncs drain them (server/admission.ts, `refuseNewWork`). Writes themselves are
   * never refused for room, only by a failed disk: what admitted work still has to write (a
   * decision, its value and its records) is always written whole, never refused half-way.
   */
  readonly busy: boolean;
}

export function isTombstone(copy: Copy): copy is Tombstone {
  return copy.deleted === true;
}

/** Store `copy` (a committed write, a transferred entry) only if it is newer than the copy held. */
export function putCopyIfNewer(store: Store, key: string, copy: Copy): boolean {
  return isTombstone(copy)
    ? store.putTombstoneIfNewer(key, copy.version)
    : store.putIfNewer(key, copy.value, copy.version);
}

/** The same copy: the same version, and both the same value or both tombstones. */
export function sameCopy(a: Copy, b: Copy): boolean {
  return a.version === b.version && a.deleted === b.deleted && a.value === b.value;
}

/**
 * The copy a validated wire entry or prepare carries: a `value`, or `deleted: true`, exactly one
 * (lib/messages.ts checks it at the edge).
 */
export function copyOfWrite(write: {
  readonly value?: string;
  readonly deleted?: true;
  readonly version: number;
}): Copy {
  if (write.deleted === true) {
    assert(write.value === undefined, 'a delete carries no value');
    return { deleted: true, version: write.version };
  }
  assert(write.value !== undefined, 'a write carries a value or a delete');
  return { value: write.value, version: write.version };
}

/** The keys of `copies` that hold a live value. */
export function* liveKeys(copies: ReadonlyMap<string, Copy>): IterableIterator<string> {
  for (const [key, copy] of copies) if (!isTombstone(copy)) yield key;
}

/** The live values of `copies`. */
export function* liveEntries(
  copies: ReadonlyMap<string, Copy>,
): IterableIterator<[string, Versioned]> {
  for (const [key, copy] of copies) if (!isTombstone(copy)) yield [key, copy];
}

export class MemoryStore implements Store {
  private readonly map = new Map<string, Copy>();
  private tombstoneCount = 0;

  get(key: string): Versioned | undefined {
    const copy = this.map.get(key);
    return copy === undefined || isTombstone(copy) ? undefined : copy;
  }

  copyOf(key: string): Copy | undefined {
    return this.map.get(key);
  }

  versionOf(key: string): number {
    return this.map.get(key)?.version ?? 0;
  }

  put(key: string, value: string, version: number): void {
    this.set(key, { value, version });
  }

  putIfNewer(key: string, value: string, version: number): boolean {
    if (version <= this.versionOf(key)) return false;
    this.set(key, { value, version });
    return true;
  }

  putTombstoneIfNewer(key: string, version: number): boolean {
    if (version <= this.versionOf(key)) return false;
    this.set(key, { deleted: true, version });
    return true;
  }

  delete(key: string): void {
    const held = this.map.get(key);
    if (held === undefined) return;
    if (isTombstone(held)) this.tombstoneCount--;
    this.map.delete(key);
  }

  keys(): IterableIterator<string> {
    return liveKeys(this.map);
  }

  copyKeys(): IterableIterator<string> {
    return this.map.keys();
  }

  entries(): IterableIterator<[string, Versioned]> {
    return liveEntries(this.map);
  }

  get size(): number {
    return this.map.size - this.tombstoneCount;
  }

  get tombstones(): number {
    return this.tombstoneCount;
  }

  /** Memory does not fail a write. */
  get failed(): undefined {
    return undefined;
  }

  /** Nothing waits for a sync. */
  get busy(): false {
    return false;
  }

  private set(key: string, copy: Copy): void {
    const held = this.map.get(key);
    this.tombstoneCount +=
      Number(isTombstone(copy)) - Number(held !== undefined && isTombstone(held));
    this.map.set(key, copy);
    assert(this.tombstoneCount >= 0 && this.tombstoneCount <= this.map.size, 'tombstones counted');
  }

  private readonly tables = new Map<string, Map<string, string>>();

  getRecord(table: string, key: string): string | undefined {
    return this.tables.get(table)?.get(key);
  }

  putRecord(table: string, key: string, value: string): void {
    let rows = this.tables.get(table);
    if (rows === undefined) this.tables.set(table, (rows = new Map()));
    rows.set(key, value);
  }

  deleteRecord(table: string, key: string): void {
    this.tables.get(table)?.delete(key);
  }

  records(table: string): IterableIterator<[string, string]> {
    return (this.tables.get(table) ?? new Map<string, string>()).entries();
  }

  /** Nothing to wait for: this store keeps nothing on disk. */
  flush(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
