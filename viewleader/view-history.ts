// The view changes a view leader installed, with wall-clock times, for the page's history: a
// bounded list in memory (VIEW_HISTORY_MAX, the oldest forgotten first), never saved. A view
// leader that restarts, or a member that starts leading, begins a new history (the Raft log holds
// the view changes but not when they happened, and snapshots cut it; the page says since when it
// knows). Time comes in as an argument: the shell reads the clock.

import { assert } from '../lib/assert';
import { VIEW_HISTORY_MAX } from '../lib/limits';
import type { HistoryEntry } from '../lib/messages';
import type { ViewChange } from './membership';

export class ViewHistory {
  private readonly entries: HistoryEntry[] = [];

  constructor(private readonly entriesMax = VIEW_HISTORY_MAX) {
    assert(entriesMax >= 1, 'a history keeps at least one entry');
  }

  /** `change` was installed at `atMs` (wall clock, ms since 1970). */
  record(change: ViewChange, atMs: number): void {
    const last = this.entries[this.entries.length - 1];
    assert(last === undefined || change.epoch > last.epoch, 'the epoch only goes up');
    this.entries.push({
      epoch: change.epoch,
      atMs: Math.round(atMs),
      joined: change.joined.map(({ id, address }) => ({ id, address })),
      left: change.left.map(({ id, address, cause }) => ({ id, address, cause })),
    });
    if (this.entries.length > this.entriesMax) this.entries.shift();
  }

  /** Oldest first. */
  list(): readonly HistoryEntry[] {
    return this.entries;
  }
}
