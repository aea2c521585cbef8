// The view leader's lock table, as in the classic assignment: a lock is granted if it is free or
// already held by the requester; otherwise the requester is queued (FIFO, once) and retries. A
// pure value: no I/O, no clock. It also finds deadlocks in the waits-for graph, where a waiter
// waits for the holder of the lock it is queued on.

import { assert } from '../lib/assert';

/** Held locks plus queued waiters, over all locks: each costs memory, so the total is bounded. */
export const LOCK_TABLE_ENTRIES_MAX = 100_000;
/** Cycles reported by one deadlock search; a pathological graph has exponentially many. */
export const DEADLOCK_CYCLES_MAX = 100;
/** Edges followed by one deadlock search, for the same reason. */
export const DEADLOCK_SEARCH_STEPS_MAX = 1_000_000;

/** A deadlock: requesters each waiting for the next, the last for the first; smallest first. */
export type Cycle = readonly string[];

export type LockGetOutcome =
  | { readonly kind: 'granted' }
  /** `position`: 1 for the first waiter. `newCycles`: deadlocks this request created. */
  | { readonly kind: 'queued'; readonly position: number; readonly newCycles: readonly Cycle[] }
  | { readonly kind: 'table_full' };

export type LockReleaseOutcome =
  /** `nextHolder`: the first waiter, now the holder. Promotion can close new cycles. */
  | {
      readonly kind: 'released';
      readonly nextHolder: string | undefined;
      readonly newCycles: readonly Cycle[];
    }
  | { readonly kind: 'dequeued' }
  | { readonly kind: 'not_held' };

export interface LockHandover {
  readonly lock: string;
  readonly requester: string;
  readonly nextHolder: string | undefined;
}

export interface ReleaseAllOutcome {
  readonly released: readonly LockHandover[];
  readonly dequeued: readonly { readonly lock: string; readonly requester: string }[];
  readonly newCycles: readonly Cycle[];
}

interface LockState {
  holder: string;
  /** FIFO without duplicates: a Set iterates in insertion order. */
  readonly waiters: Set<string>;
}

export class LockTable {
  /** Only held locks have an entry: releasing a lock hands it to its first waiter. */
  private readonly locks = new Map<string, LockState>();
  private entryCount = 0;

  constructor(private readonly entriesMax = LOCK_TABLE_ENTRIES_MAX) {
    assert(entriesMax >= 1, 'the table holds at least one entry');
  }

  get(lock: string, requester: string): LockGetOutcome {
    const state = this.locks.get(lock);
    if (state === undefined) {
      if (this.entryCount >= this.entriesMax) return { kind: 'table_full' };
      this.locks.set(lock, { holder: requester, waiters: new Set() });
      this.entryCount += 1;
      return { kind: 'granted' };
    }
    if (state.holder === requester) return { kind: 'granted' };
    if (state.waiters.has(requester)) {
      return { kind: 'queued', position: positionOf(state.waiters, requester), newCycles: [] };
    }
    if (this.entryCount >= this.entriesMax) return { kind: 'table_full' };
    const newCycles = this.cyclesCreatedBy(() => {
      state.waiters.add(requester);
      this.entryCount += 1;
    });
    return { kind: 'queued', position: state.waiters.size, newCycles };
  }

  release(lock: string, requester: string): LockReleaseOutcome {
    const state = this.locks.get(lock);
    if (state === undefined) return { kind: 'not_held' };
    if (state.waiters.delete(requester)) {
      this.entryCount -= 1;
      return { kind: 'dequeued' };
    }
    if (state.holder !== requester) return { kind: 'not_held' };
    let nextHolder: string | undefined;
    const newCycles = this.cyclesCreatedBy(() => {
      nextHolder = this.handOver(lock, state);
    });
    return { kind: 'released', nextHolder, newCycles };
  }

  /**
   * Forget every requester of `requesters` (a server that left the view, by ID and by address):
   * out of every queue first, so that none of them is promoted, then out of every lock it holds.
   */
  releaseAll(requesters: ReadonlySet<string>): ReleaseAllOutcome {
    const released: LockHandover[] = [];
    const dequeued: { lock: string; requester: string }[] = [];
    const newCycles = this.cyclesCreatedBy(() => {
      for (const [lock, state] of this.locks) {
        for (const waiter of state.waiters) {
          if (!requesters.has(waiter)) continue;
          state.waiters.delete(waiter);
          this.entryCount -= 1;
          dequeued.push({ lock, requester: waiter });
        }
      }
      // Handing over deletes entries of this.locks: iterate over a copy.
      for (const [lock, state] of [...this.locks]) {
        if (!requesters.has(state.holder)) continue;
        const requester = state.holder;
        released.push({ lock, requester, nextHolder: this.handOver(lock, state) });
      }
    });
    return { released, dequeued, newCycles };
  }

  holderOf(lock: string): string | undefined {
    return this.locks.get(lock)?.holder;
  }

  waitersOf(lock: string): string[] {
    return [...(this.locks.get(lock)?.waiters ?? [])];
  }

  /** Held locks plus queued waiters. */
  get size(): number {
    return this.entryCount;
  }

  /**
   * Every elementary cycle of the waits-for graph, each once, starting at its smallest name, in
   * lexicographic order (bounded by DEADLOCK_CYCLES_MAX and DEADLOCK_SEARCH_STEPS_MAX). Each cycle
   * is found by a depth-first search from its smallest member through larger members only.
   */
  deadlocks(): Cycle[] {
    const graph = this.waitsForGraph();
    const cycles: Cycle[] = [];
    let steps = 0;
    for (const start of [...graph.keys()].sort(compareStrings)) {
      const path = [start];
      const onPath = new Set(path);
      const pending = [successorsOf(graph, start)];
      while (pending.length > 0) {
        const next = pending[pending.length - 1].shift();
        if (next === undefined) {
          pending.pop();
          onPath.delete(path.pop() as string);
          continue;
        }
        steps += 1;
        if (steps > DEADLOCK_SEARCH_STEPS_MAX) return cycles;
        if (next === start) {
          cycles.push([...path]);
          if (cycles.length >= DEADLOCK_CYCLES_MAX) return cycles;
        } else if (next > start && !onPath.has(next)) {
          path.push(next);
          onPath.add(next);
          pending.push(successorsOf(graph, next));
        }
      }
    }
    return cycles;
  }

  /** Edges waiter -> holder; a waiter queued on several locks waits for each holder. */
  private waitsForGraph(): Map<string, Set<string>> {
    const graph = new Map<string, Set<string>>();
    for (const state of this.locks.values()) {
      for (const waiter of state.waiters) {
        assert(waiter !== state.holder, 'a holder never waits for its own lock');
        let holders = graph.get(waiter);
        if (holders === undefined) graph.set(waiter, (holders = new Set()));
        holders.add(state.holder);
      }
    }
    return graph;
  }

  /** The first waiter becomes the holder, or the lock becomes free. */
  private handOver(lock: string, state: LockState): string | undefined {
    const first = state.waiters.values().next();
    this.entryCount -= 1;
    if (first.done) {
      this.locks.delete(lock);
      return undefined;
    }
    state.waiters.delete(first.value);
    state.holder = first.value;
    assert(this.entryCount >= 0, 'the entry count never goes negative');
    return first.value;
  }

  /** Runs `mutate` and returns the deadlocks that exist after it and did not before. */
  private cyclesCreatedBy(mutate: () => void): Cycle[] {
    const before = new Set(this.deadlocks().map(cycleKey));
    mutate();
    return this.deadlocks().filter((cycle) => !before.has(cycleKey(cycle)));
  }
}

function positionOf(waiters: ReadonlySet<string>, requester: string): number {
  return [...waiters].indexOf(requester) + 1;
}

function successorsOf(graph: ReadonlyMap<string, ReadonlySet<string>>, node: string): string[] {
  return [...(graph.get(node) ?? [])].sort(compareStrings);
}

function cycleKey(cycle: Cycle): string {
  return JSON.stringify(cycle);
}

/** Code-unit order, independent of the process locale. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
