// What a RaftNode asks its shell to do (etcd raft's Ready). The node never does I/O itself: the
// shell takes a Ready after every input (tick, step, propose, readIndex, compact) and carries it
// out IN THIS ORDER, then calls advance().

import type { Entry, Envelope, HardState, Snapshot } from './messages';
import type { ReadState } from './read-index';

/**
 * The ordering rule. Steps 1-3 are persistence and must be durable (fsync) BEFORE step 4 sends
 * anything: a vote, or an acknowledgement of entries, that a crash could take back would let two
 * leaders be elected in one term, or a committed entry be lost (§5.2, Figure 2 "updated on
 * stable storage before responding to RPCs").
 *
 *   1. `snapshot` (if any): save it, and delete EVERY stored entry (the log restarts after it).
 *   2. `entries` (if any): delete every stored entry with index >= entries[0].index (a conflicting
 *      suffix the leader overwrote), then append `entries`. They follow the snapshot (or the
 *      entries kept) without a gap.
 *   3. `hardState` (if not null): save it. Steps 1-3 may be one atomic write; if they are not,
 *      write them in this order (a saved commit index never points past the saved log).
 *   4. send `messages` (any order; the network may reorder them anyway).
 *   5. if `snapshot`: replace the state machine with `snapshot.state`. Then apply `committed` in
 *      order (each entry's index is the last applied + 1; a null command is a leader's no-op and
 *      changes nothing but the applied index).
 *   6. `readStates`: each read may be served once the state machine has applied `index` (right
 *      away if it has; else after later Readies apply more). `readsFailed`: these reads were
 *      dropped (this node stopped being leader): answer them with a retry at the leader.
 *   7. advance().
 */
export interface Ready<C, S> {
  /** Term, vote, commit index: to save (step 3), or null if unchanged. */
  readonly hardState: HardState | null;
  /** Entries to save (step 2): they replace every stored entry from `entries[0].index` on. */
  readonly entries: readonly Entry<C>[];
  /** A snapshot received from the leader (InstallSnapshot, §7): save, drop the stored log. */
  readonly snapshot: Snapshot<S> | null;
  /** To send only after steps 1-3 are durable. */
  readonly messages: readonly Envelope<C, S>[];
  /** To apply to the state machine, in order, after the snapshot if any. */
  readonly committed: readonly Entry<C>[];
  /** Confirmed linearizable reads (§6.4): serve once applied >= index. */
  readonly readStates: readonly ReadState[];
  /** Reads that will never be confirmed here (this node lost leadership). */
  readonly readsFailed: readonly string[];
}
