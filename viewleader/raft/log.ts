// The in-memory replicated log: a snapshot (everything up to `snapshotIndex`, compacted away)
// followed by the entries after it. Indexes start at 1; index 0 with term 0 is the empty log's
// sentinel, so (prevIndex 0, prevTerm 0) always matches (§5.3).
//
//   snapshotIndex  firstIndex                 lastIndex
//        |             |                          |
//   [ compacted ...  ] [ entries[0] ... entries[n-1] ]

import { assert } from '../../lib/assert';
import type { Entry } from './messages';

// Module-scope aliases: a global lookup costs far more than a local one in vm contexts (Jest's).
const { min } = Math;
const ENTRIES_ALL = Number.POSITIVE_INFINITY;

/** The log as others may read it (tests, status). */
export interface LogView<C> {
  readonly snapshotIndex: number;
  readonly snapshotTerm: number;
  readonly lastIndex: number;
  readonly lastTerm: number;
  /** The term at `index`, or undefined where compacted (below the snapshot) or beyond the end. */
  term(index: number): number | undefined;
  /** Entries [from, to), at most `countMax`; all must be present. */
  slice(from: number, to: number, countMax?: number): Entry<C>[];
}

export class RaftLog<C> implements LogView<C> {
  private entries: Entry<C>[];
  private snapshotIndexValue: number;
  private snapshotTermValue: number;

  constructor(snapshotIndex: number, snapshotTerm: number, entries: readonly Entry<C>[]) {
    assert(Number.isSafeInteger(snapshotIndex) && snapshotIndex >= 0, 'snapshot index >= 0');
    assert(Number.isSafeInteger(snapshotTerm) && snapshotTerm >= 0, 'snapshot term >= 0');
    assert((snapshotIndex === 0) === (snapshotTerm === 0), 'only the empty snapshot has term 0');
    this.snapshotIndexValue = snapshotIndex;
    this.snapshotTermValue = snapshotTerm;
    this.entries = [];
    for (const entry of entries) this.push(entry);
  }

  get snapshotIndex(): number {
    return this.snapshotIndexValue;
  }

  get snapshotTerm(): number {
    return this.snapshotTermValue;
  }

  get firstIndex(): number {
    return this.snapshotIndexValue + 1;
  }

  get lastIndex(): number {
    return this.snapshotIndexValue + this.entries.length;
  }

  get lastTerm(): number {
    const last = this.entries[this.entries.length - 1];
    return last === undefined ? this.snapshotTermValue : last.term;
  }

  term(index: number): number | undefined {
    if (index === this.snapshotIndexValue) return this.snapshotTermValue;
    if (index < this.snapshotIndexValue || index > this.lastIndex) return undefined;
    return this.entries[index - this.firstIndex].term;
  }

  entry(index: number): Entry<C> {
    assert(index >= this.firstIndex && index <= this.lastIndex, `entry ${index} is in the log`);
    return this.entries[index - this.firstIndex];
  }

  slice(from: number, to: number, countMax = ENTRIES_ALL): Entry<C>[] {
    assert(from >= this.firstIndex, `entries from ${from} are not compacted`);
    assert(to <= this.lastIndex + 1, `entries up to ${to} exist`);
    assert(countMax >= 1, 'a slice may hold something');
    const end = min(to, from + countMax);
    if (end <= from) return [];
    return this.entries.slice(from - this.firstIndex, end - this.firstIndex);
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /**
   * §5.4.1: a voter refuses a candidate whose log is less up-to-date than its own: compare the
   * last terms, then (equal terms) the lengths.
   */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    return lastTerm > this.lastTerm || (lastTerm === this.lastTerm && lastIndex >= this.lastIndex);
  }

  /**
   * The first of `entries` that this log lacks or holds with another term; 0 if it holds them
   * all. Entries the log already holds are never rewritten: a delayed, duplicated AppendEntries
   * must not cut off entries that came after it (§5.3 "if an existing entry conflicts").
   */
  findConflict(entries: readonly Entry<C>[]): number {
    for (const entry of entries) {
      if (!this.matchTerm(entry.index, entry.term)) return entry.index;
    }
    return 0;
  }

  /**
   * The last index at or below `index` whose term is at most `term`, with that term; term 0
   * when the term there is unknown (compacted). This is how both sides of a rejected append skip
   * a whole conflicting term at once (the fast backtracking of §5.3, as etcd raft does it).
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    assert(index <= this.lastIndex, 'the conflict search starts inside the log');
    for (let at = index; at > 0; at--) {
      const held = this.term(at);
      if (held === undefined) return { index: at, term: 0 };
      if (held <= term) return { index: at, term: held };
    }
    return { index: 0, term: 0 };
  }

  /** Appends a leader's new entry at the end. */
  appendNew(term: number, command: C | null): Entry<C> {
    assert(term >= this.lastTerm, 'a new entry has the newest term');
    const entry: Entry<C> = { term, index: this.lastIndex + 1, command };
    this.entries.push(entry);
    return entry;
  }

  /**
   * Replaces everything from `entries[0].index` on with `entries` (a follower's conflicting
   * suffix is cut off, §5.3). The entries must follow a held entry.
   */
  appendFrom(entries: readonly Entry<C>[]): void {
    assert(entries.length > 0, 'something to append');
    const from = entries[0].index;
    assert(from > this.snapshotIndexValue, 'a compacted entry is never rewritten');
    assert(from <= this.lastIndex + 1, 'appended entries leave no gap');
    this.entries.length = from - this.firstIndex;
    for (const entry of entries) this.push(entry);
  }

  /** Drops every entry up to and including `index` (§7); the shell keeps a snapshot of them. */
  compact(index: number): void {
    assert(index > this.snapshotIndexValue, 'compaction moves forward');
    assert(index <= this.lastIndex, 'compaction stays inside the log');
    const term = this.term(index);
    assert(term !== undefined, 'the new snapshot term is known');
    this.entries = this.entries.slice(index - this.snapshotIndexValue);
    this.snapshotIndexValue = index;
    this.snapshotTermValue = term;
  }

  /** Discards the whole log in favour of a snapshot from the leader (§7). */
  restore(index: number, term: number): void {
    assert(index > this.snapshotIndexValue, 'a restored snapshot moves forward');
    assert(term >= 1, 'a real snapshot has a term');
    this.entries = [];
    this.snapshotIndexValue = index;
    this.snapshotTermValue = term;
  }

  /** Log matching on append (§5.3): indexes are contiguous and terms never decrease. */
  private push(entry: Entry<C>): void {
    assert(entry.index === this.lastIndex + 1, `entry ${entry.index} follows ${this.lastIndex}`);
    assert(entry.term >= this.lastTerm, `entry ${entry.index}'s term does not go back`);
    assert(entry.term >= 1, 'an entry has a term');
    this.entries.push(entry);
  }
}
