// The values Raft nodes exchange and persist. Plain data (JSON-serializable as long as the
// command C and the snapshot state S are), so the shell can put them on the wire and on disk as
// they are. Every message carries its sender's term: the receiver's first decision is always by
// term (§5.1: a higher term makes the receiver a follower, a lower one marks the message stale).

/** A member's address, "HOST:PORT"; members are fixed at start (`--peers`). */
export type NodeId = string;

/**
 * One slot of the replicated log. `command` is null for the no-op a leader appends when elected:
 * committing an entry of its own term is what lets it commit (and read at) everything before it
 * (§5.4.2, §8).
 */
export interface Entry<C> {
  readonly term: number;
  readonly index: number;
  readonly command: C | null;
}

/** What must survive a crash besides the log (Figure 2's "persistent state"). */
export interface HardState {
  readonly term: number;
  /** The candidate voted for in `term`; one vote per term (§5.2). */
  readonly votedFor: NodeId | null;
  /**
   * Saved only to re-apply faster after a restart: safety never depends on it (a restarted node
   * would learn the commit index again from the leader).
   */
  readonly commitIndex: number;
}

/** The state machine as of `lastIndex` (§7): replaces the log up to and including it. */
export interface Snapshot<S> {
  readonly lastIndex: number;
  readonly lastTerm: number;
  readonly state: S;
}

/**
 * What the shell saved, handed back at a restart. `entries` follow the snapshot: entries at or
 * before `snapshot.lastIndex` (left over if a crash came between saving a snapshot and deleting
 * the entries it covers) are ignored; the rest must be contiguous from `snapshot.lastIndex + 1`.
 */
export interface Persisted<C, S> {
  readonly hardState: HardState;
  readonly snapshot: Snapshot<S> | null;
  readonly entries: readonly Entry<C>[];
}

export type RaftMessage<C, S> =
  /**
   * Would you vote for me in `term` (= the sender's term + 1)? Asked before a real election, so
   * that a node that cannot win (partitioned, or behind) never raises the cluster's term and
   * never disrupts a working leader (thesis §9.6). Nobody changes state to answer it.
   */
  | {
      readonly kind: 'pre_vote';
      readonly term: number;
      readonly from: NodeId;
      readonly lastIndex: number;
      readonly lastTerm: number;
    }
  /** Granted: `term` is the term asked about. Refused: `term` is the refuser's own term. */
  | {
      readonly kind: 'pre_vote_reply';
      readonly term: number;
      readonly from: NodeId;
      readonly granted: boolean;
    }
  /** RequestVote (§5.2, §5.4.1). */
  | {
      readonly kind: 'vote';
      readonly term: number;
      readonly from: NodeId;
      readonly lastIndex: number;
      readonly lastTerm: number;
    }
  | {
      readonly kind: 'vote_reply';
      readonly term: number;
      readonly from: NodeId;
      readonly granted: boolean;
    }
  /** AppendEntries (§5.3): at most APPEND_ENTRIES_MAX entries following (prevIndex, prevTerm). */
  | {
      readonly kind: 'append';
      readonly term: number;
      readonly from: NodeId;
      readonly prevIndex: number;
      readonly prevTerm: number;
      readonly entries: readonly Entry<C>[];
      readonly commitIndex: number;
    }
  /** The follower's log matches the leader's up to and including `matchIndex`. */
  | {
      readonly kind: 'append_reply';
      readonly term: number;
      readonly from: NodeId;
      readonly matchIndex: number;
    }
  /**
   * The follower has no entry (prevIndex = `rejectedIndex`, prevTerm). Conflict hint for fast
   * backtracking (§5.3, "the follower can include the term of the conflicting entry"): the
   * follower's last index at or below `rejectedIndex` whose term is at most prevTerm, and that
   * term (0 if unknown). The leader skips every index in between in one round trip.
   */
  | {
      readonly kind: 'append_reject';
      readonly term: number;
      readonly from: NodeId;
      readonly rejectedIndex: number;
      readonly hintIndex: number;
      readonly hintTerm: number;
    }
  /**
   * Leadership assertion (§5.2) without entries. `commitIndex` is min(the follower's match, the
   * leader's commit), so the follower never commits past what it is known to hold. `round`
   * numbers the leader's read-index confirmations (§6.4): a reply for round r confirms every
   * read registered at round <= r.
   */
  | {
      readonly kind: 'heartbeat';
      readonly term: number;
      readonly from: NodeId;
      readonly commitIndex: number;
      readonly round: number;
    }
  | {
      readonly kind: 'heartbeat_reply';
      readonly term: number;
      readonly from: NodeId;
      readonly round: number;
    }
  /** InstallSnapshot (§7), for a follower that needs entries the leader has compacted away. */
  | {
      readonly kind: 'snapshot';
      readonly term: number;
      readonly from: NodeId;
      readonly snapshot: Snapshot<S>;
    }
  /**
   * The answer to a leader's message from an older term. Without it, a deposed leader that the
   * others ignore (their check-quorum lease makes them ignore elections, thesis §6.2 / §9.6)
   * would never learn the newer term; with it the old leader steps down at once (etcd raft
   * does the same when check-quorum or pre-vote is on).
   */
  | { readonly kind: 'higher_term'; readonly term: number; readonly from: NodeId };

export type RaftMessageKind = RaftMessage<unknown, unknown>['kind'];

/** A message and the member it goes to. */
export interface Envelope<C, S> {
  readonly to: NodeId;
  readonly message: RaftMessage<C, S>;
}
