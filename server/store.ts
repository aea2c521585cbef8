// The server's bucket and its small tables of protocol state. Two implementations: this in-memory
// one (`--in-memory`) and server/durable-store.ts (LevelDB, the default). Every value carries a
// per-key version so replicas and rebalancing keep the newest copy. Writes are visible at once;
// `flush()` resolves once they are durable, and the shell awaits it before answering a request
// whose answer depends on them.

export interface Versioned {
  readonly value: string;
  readonly version: number;
}

export interface Store {
  get(key: string): Versioned | undefined;
  /** Current version of a key, 0 when absent. */
  versionOf(key: string): number;
  /** Store unconditionally (local `set`, a decided commit). */
  put(key: string, value: string, version: number): void;
  /** Store only if `version` is newer than what is held; returns whether it stored. */
  putIfNewer(key: string, value: string, version: number): boolean;
  delete(key: string): void;
  keys(): IterableIterator<string>;
  entries(): IterableIterator<[string, Versioned]>;
  readonly size: number;

  /** Record tables: the 2PC participant's state (server/participant-records.ts). */
  getRecord(table: string, key: string): string | undefined;
  putRecord(table: string, key: string, value: string): void;
  deleteRecord(table: string, key: string): void;
  records(table: string): IterableIterator<[string, string]>;

  /** Resolves once every write made before the call is durable; rejects if one failed. */
  flush(): Promise<void>;
}

export class MemoryStore implements Store {
  private readonly map = new Map<string, Versioned>();

  get(key: string): Versioned | undefined {
    return this.map.get(key);
  }

  versionOf(key: string): number {
    return this.map.get(key)?.version ?? 0;
  }

  put(key: string, value: string, version: number): void {
    this.map.set(key, { value, version });
  }

  putIfNewer(key: string, value: string, version: number): boolean {
    if (version <= this.versionOf(key)) return false;
    this.map.set(key, { value, version });
    return true;
  }

  delete(key: string): void {
    this.map.delete(key);
  }

  keys(): IterableIterator<string> {
    return this.map.keys();
  }

  entries(): IterableIterator<[string, Versioned]> {
    return this.map.entries();
  }

  get size(): number {
    return this.map.size;
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
