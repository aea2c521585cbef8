// The server's bucket. An interface so a durable engine can replace the in-memory map later;
// every value carries a per-key version so replicas and rebalancing keep the newest copy.

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
}
