// The view leader's lock table, as in the classic assignment: a lock is granted if it is free or
// already held by the requester; otherwise the requester is queued (FIFO, once) and retries. A
// pure value: no I/O, no clock. It also finds deadlocks in the waits-for graph, where a waiter
// waits for the holder of the lock it is queued on.
//
// Durability: held locks and their queues survive a view leader restart. Every change is also
// appended to a change log that the shell drains after each call (`takeChanges`) and makes
// durable before it answers; `restore` rebuilds a table from what was saved. Each waiter carries
// a sequence number, so that a queue saved one entry at a time comes back in FIFO order.

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

/** A waiter with its queuing's sequence number (ascending along a queue). */
export interface SavedWaiter {
  readonly requester: string;
  readonly seq: number;
}

export interface SavedLock {
  readonly lock: string;
  readonly holder: string;
  /** FIFO: first in line first. */
  readonly waiters: readonly SavedWaiter[];
}

/** Everything a restart must restore: the held locks (sorted by name) and their queues. */
export interface LockTableSnapshot {
  readonly locks: readonly SavedLock[];
}

/**
 * One change to the saved state, in the order made: a lock's holder, and each waiter, is one
 * saved entry. Replayed in order over the previous saved state they give `snapshot()`.
 */
export type LockChange =
  | { readonly kind: 'held'; readonly lock: string; readonly holder: string }
  /** The lock has no holder (and no waiter) any more. */
  | { readonly kind: 'freed'; readonly lock: string }
  | { readonly kind: 'queued'; readonly lock: string; readonly waiter: SavedWaiter }
  | { readonly kind: 'dequeued'; readonly lock: string; readonly requester: string };

export interface ReleaseAllOutcome {
  readonly released: readonly LockHandover[];
  readonly dequeued: readonly { readonly lock: string; readonly requester: string }[];
  readonly newCycles: readonly Cycle[];
}

interface LockState {
  holder: string;
  /** Requester -> seq. FIFO without duplicates: a Map iterates in insertion order. */
  readonly waiters: Map<string, number>;
}

export class LockTable {
  /** Only held locks have an entry: releasing a lock hands it to its first waiter. */
  private readonly locks = new Map<string, LockState>();
  private entryCount = 0;
  private waiterSeqNext = 0;
  /** Changes to the saved state since the last `takeChanges`. */
  private changes: LockChange[] = [];

  constructor(private readonly entriesMax = LOCK_TABLE_ENTRIES_MAX) {
    assert(entriesMax >= 1, 'the table holds at least one entry');
  }

  /**
   * A table as saved in `snapshot`. Throws (an AssertionError) if the snapshot is inconsistent;
   * the shell then refuses to start rather than serve locks it could not read.
   */
  static restore(snapshot: LockTableSnapshot, entriesMax = LOCK_TABLE_ENTRIES_MAX): LockTable {
    const table = new LockTable(entriesMax);
    for (const { lock, holder, waiters } of snapshot.locks) {
      assert(!table.locks.has(lock), 'a lock is saved once');
      const state: LockState = { holder, waiters: new Map() };
      let seqPrevious = -1;
      for (const { requester, seq } of waiters) {
        assert(Number.isSafeInteger(seq) && seq > seqPrevious, 'a queue is saved in order');
        assert(requester !== holder && !state.waiters.has(requester), 'a waiter waits once');
        state.waiters.set(requester, seq);
        seqPrevious = seq;
        table.waiterSeqNext = Math.max(table.waiterSeqNext, seq + 1);
      }
      table.locks.set(lock, state);
      table.entryCount += 1 + waiters.length;
    }
    // Above the bound only if the bound was lowered: the table then just refuses new entries.
    return table;
  }

  /** The saved state: what `restore` takes back. */
  snapshot(): LockTableSnapshot {
    const locks = [...this.locks]
      .sort(([a], [b]) => compareStrings(a, b))
      .map(([lock, state]) => ({
        lock,
        holder: state.holder,
        waiters: [...state.waiters].map(([requester, seq]) => ({ requester, seq })),
      }));
    return { locks };
  }

  /** The changes to the saved state since the last call, oldest first; the log is emptied. */
  takeChanges(): LockChange[] {
    const changes = this.changes;
    this.changes = [];
    return changes;
  }

  get(lock: string, requester: string): LockGetOutcome {
    const state = this.locks.get(lock);
    if (state === undefined) {
      if (this.entryCount >= this.entriesMax) return { kind: 'table_full' };
      this.locks.set(lock, { holder: requester, waiters: new Map() });
      this.entryCount += 1;
      this.changes.push({ kind: 'held', lock, holder: requester });
      return { kind: 'granted' };
    }
    if (state.holder === requester) return { kind: 'granted' };
    if (state.waiters.has(requester)) {
      return { kind: 'queued', position: positionOf(state.waiters, requester), newCycles: [] };
    }
    if (this.entryCount >= this.entriesMax) return { kind: 'table_full' };
    const newCycles = this.cyclesCreatedBy(() => {
      const seq = this.waiterSeqNext++;
      state.waiters.set(requester, seq);
      this.entryCount += 1;
      this.changes.push({ kind: 'queued', lock, waiter: { requester, seq } });
    });
    return { kind: 'queued', position: state.waiters.size, newCycles };
  }

  release(lock: string, requester: string): LockReleaseOutcome {
    const state = this.locks.get(lock);
    if (state === undefined) return { kind: 'not_held' };
    if (state.waiters.delete(requester)) {
      this.entryCount -= 1;
      this.changes.push({ kind: 'dequeued', lock, requester });
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
        for (const waiter of state.waiters.keys()) {
          if (!requesters.has(waiter)) continue;
          state.waiters.delete(waiter);
          this.entryCount -= 1;
          this.changes.push({ kind: 'dequeued', lock, requester: waiter });
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
    return [...(this.locks.get(lock)?.waiters.keys() ?? [])];
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
      for (const waiter of state.waiters.keys()) {
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
    const first = state.waiters.keys().next();
    this.entryCount -= 1;
    if (first.done) {
      this.locks.delete(lock);
      this.changes.push({ kind: 'freed', lock });
      return undefined;
    }
    state.waiters.delete(first.value);
    state.holder = first.value;
    this.changes.push(
      { kind: 'dequeued', lock, requester: first.value },
      { kind: 'held', lock, holder: first.value },
    );
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

function positionOf(waiters: ReadonlyMap<string, number>, requester: string): number {
  return [...waiters.keys()].indexOf(requester) + 1;
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
