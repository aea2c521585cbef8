// One Raft member as a pure state machine (etcd raft style): inputs are `tick` (logical time),
// `step` (a message from a peer), `propose`, `readIndex` and `compact`; every output is collected
// into the next `ready()` (ready.ts says in which order the shell carries it out). No I/O, no
// timers, no clock, no randomness: the shell supplies the election jitter.
//
// Roles (transitions go through becomeFollower / preCampaign / campaign / becomeLeader only):
//
//                 election timeout                 pre-votes from a majority
//   +----------+ ----------------> +---------------+ -----------------------> +-----------+
//   | follower |                   | pre_candidate |                          | candidate |
//   +----------+ <---------------- +---------------+ <--- election timeout -- +-----------+
//      ^   ^      a leader / higher term / refused by a majority                    |
//      |   +------------------------------------------------------------------+     | votes from
//      |                higher term, or no majority heard (check-quorum)       |     | a majority
//      |                                                                  +--------+ |
//      +------------------------------------------------------------------| leader |<+
//                                                                         +--------+
//
// Restart: a node constructed from what its shell persisted resumes as a follower with the same
// term, vote and log. Its state machine is NOT persisted by Raft: the shell rebuilds it from the
// snapshot, and the first Readies hand it the committed entries from snapshot.lastIndex + 1 on
// (up to the saved commit index; entries committed later come as the leader says so).

import { assert, assertNever } from '../../lib/assert';
import {
  APPEND_ENTRIES_MAX,
  APPENDS_IN_FLIGHT_MAX,
  MEMBERS_MAX,
  PROPOSALS_PENDING_MAX,
  READS_PENDING_MAX,
  READY_COMMITTED_MAX,
} from './limits';
import { RaftLog, type LogView } from './log';
import type {
  Entry,
  Envelope,
  HardState,
  NodeId,
  Persisted,
  RaftMessage,
  Snapshot,
} from './messages';
import { Progress, type ProgressState } from './progress';
import { ReadIndexQueue, type ReadState } from './read-index';
import type { Ready } from './ready';

// Module-scope aliases: a global lookup costs far more than a local one in vm contexts (Jest's).
const { max, min } = Math;

export interface RaftConfig {
  readonly id: NodeId;
  /** Every member, this one included: 3 or 5 (1 for tests). The same list on every member. */
  readonly peers: readonly NodeId[];
  /**
   * Ticks without hearing from a leader before a follower campaigns (plus jitter), and the
   * period of a leader's check-quorum. With a 100 ms tick, 10 ticks = 1 s.
   */
  readonly electionTicks: number;
  /** Ticks between a leader's heartbeats; well below electionTicks (e.g. 1). */
  readonly heartbeatTicks: number;
  /**
   * Extra ticks, an integer in [0, electionTicks), drawn anew at every election timer reset:
   * randomized timeouts make split votes rare (§5.2). The shell's randomness, not the core's.
   */
  readonly electionJitter: () => number;
  /**
   * Entries per AppendEntries message, in [1, APPEND_ENTRIES_MAX]; APPEND_ENTRIES_MAX if absent
   * (tests use small values so that a new leader's no-op travels apart from older entries).
   */
  readonly appendEntriesMax?: number;
}

export type Role = 'follower' | 'pre_candidate' | 'candidate' | 'leader';

/** Not done here: ask `leader` (the last leader heard of; null if none) or retry later. */
export interface Refusal {
  readonly ok: false;
  /** not_leader: this node is not the leader. busy: a bound is reached (limits.ts). */
  readonly reason: 'not_leader' | 'busy';
  readonly leader: NodeId | null;
}

export type ProposeResult =
  /** Appended at (index, term): done when an entry with this index AND term is committed. */
  { readonly ok: true; readonly index: number; readonly term: number } | Refusal;

export type ReadIndexResult = { readonly ok: true } | Refusal;

export interface PeerProgress {
  readonly matchIndex: number;
  readonly nextIndex: number;
  readonly state: ProgressState;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly votedFor: NodeId | null;
  readonly leader: NodeId | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  readonly snapshotIndex: number;
  /** The leader's view of each follower; null unless leader. */
  readonly progress: Readonly<Record<NodeId, PeerProgress>> | null;
}

const NO_HARD_STATE: HardState = { term: 0, votedFor: null, commitIndex: 0 };

export class RaftNode<C, S> {
  readonly id: NodeId;
  private readonly members: ReadonlySet<NodeId>;
  /** The other members. */
  private readonly others: readonly NodeId[];
  private readonly quorum: number;
  private readonly electionTicks: number;
  private readonly heartbeatTicks: number;
  private readonly electionJitter: () => number;
  private readonly appendEntriesMax: number;

  /** Figure 2's currentTerm. */
  private currentTerm: number;
  private votedFor: NodeId | null;
  private currentRole: Role = 'follower';
  /** The leader of the current term, once heard from (or this node if it leads). */
  private leaderId: NodeId | null = null;
  private readonly raftLog: RaftLog<C>;
  /** The latest snapshot (the shell's compaction or the leader's), sent to followers behind it. */
  private snapshot: Snapshot<S> | null;
  private commitIndex: number;
  /** Applied by the shell (confirmed by advance()). */
  private appliedIndex: number;
  /** Handed to the shell to apply (in a Ready's `committed`, or as its snapshot). */
  private handedIndex: number;

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTicks = 0;
  /** Pre-candidate or candidate: the answers so far, this node's own included. */
  private votes = new Map<NodeId, boolean>();
  /** Leader: one per other member. */
  private progress = new Map<NodeId, Progress>();
  /**
   * Leader: the round of the last heartbeat sent. A read is registered for the next round
   * (readRound + 1) and waits for replies of that round or later: heartbeats sent after it came.
   */
  private readRound = 0;
  private readonly reads = new ReadIndexQueue();
  /** Leader: reads that arrived before an entry of this term was committed (§6.4 step 1). */
  private readsAwaitingCommit: string[] = [];

  // Outputs, collected until the next ready().
  private outbox: Envelope<C, S>[] = [];
  private readStates: ReadState[] = [];
  private readsFailed: string[] = [];
  /** Entries from this index on changed since the last ready() (appended or rewritten). */
  private unstableFrom: number;
  private snapshotToSave: Snapshot<S> | null = null;
  private savedHardState: HardState;
  /** Between ready() and advance(): what the taken Ready handed the shell to apply. */
  private readyTaken: { readonly handedThrough: number } | null = null;

  constructor(config: RaftConfig, persisted: Persisted<C, S> | null) {
    const { id, peers, electionTicks, heartbeatTicks, electionJitter } = config;
    const appendEntriesMax = config.appendEntriesMax ?? APPEND_ENTRIES_MAX;
    assert(peers.length >= 1 && peers.length <= MEMBERS_MAX, `1 to ${MEMBERS_MAX} members`);
    assert(new Set(peers).size === peers.length, 'members are distinct');
    assert(peers.includes(id), 'this node is a member');
    assert(Number.isSafeInteger(electionTicks) && electionTicks >= 2, 'electionTicks >= 2');
    assert(
      Number.isSafeInteger(heartbeatTicks) && heartbeatTicks >= 1 && heartbeatTicks < electionTicks,
      'heartbeatTicks in [1, electionTicks)',
    );
    assert(
      Number.isSafeInteger(appendEntriesMax) &&
        appendEntriesMax >= 1 &&
        appendEntriesMax <= APPEND_ENTRIES_MAX,
      `appendEntriesMax in [1, ${APPEND_ENTRIES_MAX}]`,
    );
    this.id = id;
    this.members = new Set(peers);
    this.others = peers.filter((peer) => peer !== id);
    this.quorum = Math.floor(peers.length / 2) + 1;
    this.electionTicks = electionTicks;
    this.heartbeatTicks = heartbeatTicks;
    this.electionJitter = electionJitter;
    this.appendEntriesMax = appendEntriesMax;

    const hardState = persisted?.hardState ?? NO_HARD_STATE;
    const snapshot = persisted?.snapshot ?? null;
    assert(Number.isSafeInteger(hardState.term) && hardState.term >= 0, 'a saved term is >= 0');
    assert(
      hardState.votedFor === null || this.members.has(hardState.votedFor),
      'a saved vote names a member',
    );
    assert(snapshot === null || snapshot.lastIndex >= 1, 'a saved snapshot is not empty');
    const snapshotIndex = snapshot?.lastIndex ?? 0;
    this.raftLog = new RaftLog(
      snapshotIndex,
      snapshot?.lastTerm ?? 0,
      (persisted?.entries ?? []).filter((entry) => entry.index > snapshotIndex),
    );
    assert(this.raftLog.lastTerm <= hardState.term, 'no saved entry is from a future term');
    this.currentTerm = hardState.term;
    this.votedFor = hardState.votedFor;
    this.snapshot = snapshot;
    this.commitIndex = max(hardState.commitIndex, snapshotIndex);
    assert(this.commitIndex <= this.raftLog.lastIndex, 'the saved commit index is in the log');
    this.appliedIndex = snapshotIndex;
    this.handedIndex = snapshotIndex;
    this.savedHardState = this.hardState();
    this.unstableFrom = this.raftLog.lastIndex + 1;
    this.becomeFollower(this.currentTerm, null);
  }

  // ---- inputs -------------------------------------------------------------------------------------

  /** One unit of logical time (the shell's timer: e.g. every 100 ms). */
  tick(): void {
    switch (this.currentRole) {
      case 'follower':
      case 'pre_candidate':
      case 'candidate':
        this.electionElapsed++;
        if (this.electionElapsed >= this.randomizedElectionTicks) this.preCampaign();
        return;
      case 'leader':
        this.tickLeader();
        return;
      default:
        assertNever(this.currentRole, 'role');
    }
  }

  /**
   * A message from a peer. Any message may come late, twice, or out of order: stale ones are
   * dropped (or answered with this node's newer term), never trusted.
   */
  step(m: RaftMessage<C, S>): void {
    assert(m.from !== this.id, 'a node never messages itself');
    assert(this.members.has(m.from), `a message from a member, not ${m.from}`);
    if (m.term > this.currentTerm) {
      if ((m.kind === 'pre_vote' || m.kind === 'vote') && this.inLease()) {
        // Check-quorum's other half (thesis §6.2, §9.6): while this node hears from a leader, it
        // ignores elections, so a member that merely lost touch cannot depose a working leader.
        return;
      }
      if (m.kind === 'pre_vote' || (m.kind === 'pre_vote_reply' && m.granted)) {
        // About a term nobody has entered yet (§9.6): no term change.
      } else {
        const fromLeader = m.kind === 'append' || m.kind === 'heartbeat' || m.kind === 'snapshot';
        this.becomeFollower(m.term, fromLeader ? m.from : null);
      }
    } else if (m.term < this.currentTerm) {
      if (m.kind === 'append' || m.kind === 'heartbeat' || m.kind === 'snapshot') {
        // A deposed leader (e.g. paused, then resumed): tell it the newer term so it steps down
        // and stops accepting proposals and reads (messages.ts, 'higher_term').
        this.send(m.from, { kind: 'higher_term', term: this.currentTerm, from: this.id });
      } else if (m.kind === 'pre_vote') {
        this.send(m.from, {
          kind: 'pre_vote_reply',
          term: this.currentTerm,
          from: this.id,
          granted: false,
        });
      }
      return; // §5.1: a stale term's message is rejected
    }

    switch (m.kind) {
      case 'pre_vote':
      case 'vote':
        this.handleVoteRequest(m);
        return;
      case 'pre_vote_reply':
        if (this.currentRole === 'pre_candidate' && m.term === this.currentTerm + 1) {
          this.tally(m.from, m.granted);
        }
        return;
      case 'vote_reply':
        if (this.currentRole === 'candidate' && m.term === this.currentTerm) {
          this.tally(m.from, m.granted);
        }
        return;
      case 'append':
        this.acceptLeader(m.from);
        this.handleAppend(m);
        return;
      case 'heartbeat':
        this.acceptLeader(m.from);
        this.handleHeartbeat(m);
        return;
      case 'snapshot':
        this.acceptLeader(m.from);
        this.handleSnapshot(m.from, m.snapshot);
        return;
      case 'append_reply':
        if (this.currentRole === 'leader') this.handleAppendReply(m.from, m.matchIndex);
        return;
      case 'append_reject':
        if (this.currentRole === 'leader') this.handleAppendReject(m);
        return;
      case 'heartbeat_reply':
        if (this.currentRole === 'leader') this.handleHeartbeatReply(m.from, m.round);
        return;
      case 'higher_term':
        return; // its term was all it had to say
      default:
        assertNever(m, 'message');
    }
  }

  /** Appends a command if this node leads and the pending bound allows. */
  propose(command: C): ProposeResult {
    if (this.currentRole !== 'leader') return this.refuse('not_leader');
    if (this.raftLog.lastIndex - this.commitIndex >= PROPOSALS_PENDING_MAX) {
      return this.refuse('busy');
    }
    const entry = this.appendEntry(command);
    this.broadcastAppend(false);
    this.maybeCommit();
    return { ok: true, index: entry.index, term: entry.term };
  }

  /**
   * A linearizable read (§6.4 read index). `ok` means the read is registered: it comes back in a
   * later Ready's `readStates` (serve it once applied >= its index) or `readsFailed`. The shell
   * should also time it out (a lost majority leaves it waiting until check-quorum steps down).
   * A follower refuses with the leader's address: the client asks the leader.
   */
  readIndex(requestId: string): ReadIndexResult {
    if (this.currentRole !== 'leader') return this.refuse('not_leader');
    if (this.reads.length + this.readsAwaitingCommit.length >= READS_PENDING_MAX) {
      return this.refuse('busy');
    }
    if (this.raftLog.term(this.commitIndex) !== this.currentTerm) {
      // §6.4 step 1: until an entry of its own term (the no-op) is committed, a new leader's
      // commit index may be behind what earlier leaders committed.
      this.readsAwaitingCommit.push(requestId);
      return { ok: true };
    }
    this.registerReads([requestId]);
    return { ok: true };
  }

  /**
   * The shell took `snapshot` of its state machine at `snapshot.lastIndex` (<= applied, after
   * advance()) and saved it: the log up to it is dropped here; the shell may delete the stored
   * entries up to it. Ignored if a newer snapshot already covers it (one from the leader).
   */
  compact(snapshot: Snapshot<S>): void {
    if (snapshot.lastIndex <= this.raftLog.snapshotIndex) return;
    assert(snapshot.lastIndex <= this.appliedIndex, 'only applied state is compacted');
    assert(
      this.raftLog.term(snapshot.lastIndex) === snapshot.lastTerm,
      'a snapshot has the term of its last entry',
    );
    this.raftLog.compact(snapshot.lastIndex);
    this.snapshot = snapshot;
  }

  // ---- outputs ------------------------------------------------------------------------------------

  hasReady(): boolean {
    return (
      !sameHardState(this.hardState(), this.savedHardState) ||
      this.unstableFrom <= this.raftLog.lastIndex ||
      this.snapshotToSave !== null ||
      this.outbox.length > 0 ||
      this.handedIndex < this.commitIndex ||
      this.readStates.length > 0 ||
      this.readsFailed.length > 0
    );
  }

  /** What to do now (ready.ts); call advance() once done. Takes the outputs out of the node. */
  ready(): Ready<C, S> {
    assert(this.readyTaken === null, 'advance() comes between two ready() calls');
    const hardState = this.hardState();
    const entriesFrom = max(this.unstableFrom, this.raftLog.firstIndex);
    const committed =
      this.handedIndex < this.commitIndex
        ? this.raftLog.slice(this.handedIndex + 1, this.commitIndex + 1, READY_COMMITTED_MAX)
        : [];
    const ready: Ready<C, S> = {
      hardState: sameHardState(hardState, this.savedHardState) ? null : hardState,
      entries:
        entriesFrom <= this.raftLog.lastIndex
          ? this.raftLog.slice(entriesFrom, this.raftLog.lastIndex + 1)
          : [],
      snapshot: this.snapshotToSave,
      messages: this.outbox,
      committed,
      readStates: this.readStates,
      readsFailed: this.readsFailed,
    };
    this.handedIndex += committed.length;
    this.readyTaken = { handedThrough: this.handedIndex };
    this.savedHardState = hardState;
    this.unstableFrom = this.raftLog.lastIndex + 1;
    this.snapshotToSave = null;
    this.outbox = [];
    this.readStates = [];
    this.readsFailed = [];
    return ready;
  }

  /** The shell carried out the last ready(): its committed entries (and snapshot) are applied. */
  advance(): void {
    assert(this.readyTaken !== null, 'advance() follows ready()');
    assert(this.readyTaken.handedThrough >= this.appliedIndex, 'applied never goes back');
    this.appliedIndex = this.readyTaken.handedThrough;
    this.readyTaken = null;
  }

  status(): RaftStatus {
    let progress: Record<NodeId, PeerProgress> | null = null;
    if (this.currentRole === 'leader') {
      progress = {};
      for (const [peer, pr] of this.progress) {
        progress[peer] = { matchIndex: pr.matchIndex, nextIndex: pr.nextIndex, state: pr.state };
      }
    }
    return {
      id: this.id,
      role: this.currentRole,
      term: this.currentTerm,
      votedFor: this.votedFor,
      leader: this.leaderId,
      commitIndex: this.commitIndex,
      appliedIndex: this.appliedIndex,
      lastIndex: this.raftLog.lastIndex,
      snapshotIndex: this.raftLog.snapshotIndex,
      progress,
    };
  }

  get term(): number {
    return this.currentTerm;
  }

  get role(): Role {
    return this.currentRole;
  }

  /** The leader of the current term as far as this node knows; null if none heard of. */
  get leader(): NodeId | null {
    return this.leaderId;
  }

  /** The in-memory log, read-only (tests and diagnostics). */
  get log(): LogView<C> {
    return this.raftLog;
  }

  // ---- roles --------------------------------------------------------------------------------------

  private becomeFollower(term: number, leader: NodeId | null): void {
    assert(term >= this.currentTerm, 'the term never goes back');
    if (term > this.currentTerm) {
      this.currentTerm = term;
      this.votedFor = null;
    }
    if (this.currentRole === 'leader') {
      this.progress = new Map();
      this.readsFailed.push(...this.readsAwaitingCommit, ...this.reads.takeAll());
      this.readsAwaitingCommit = [];
    }
    this.currentRole = 'follower';
    this.leaderId = leader;
    this.votes = new Map();
    this.resetElectionTimer();
  }

  /** §9.6: ask before campaigning; the term moves only if a majority would vote. */
  private preCampaign(): void {
    assert(this.currentRole !== 'leader', 'a leader does not campaign');
    this.currentRole = 'pre_candidate';
    this.leaderId = null;
    this.votes = new Map([[this.id, true]]);
    this.resetElectionTimer();
    if (this.votes.size >= this.quorum) {
      this.campaign();
      return;
    }
    for (const peer of this.others) {
      this.send(peer, {
        kind: 'pre_vote',
        term: this.currentTerm + 1,
        from: this.id,
        lastIndex: this.raftLog.lastIndex,
        lastTerm: this.raftLog.lastTerm,
      });
    }
  }

  /** §5.2: a new term, a vote for itself, and RequestVote to everyone. */
  private campaign(): void {
    assert(this.currentRole === 'pre_candidate', 'a real election follows a pre-vote');
    this.currentTerm += 1;
    this.votedFor = this.id;
    this.currentRole = 'candidate';
    this.leaderId = null;
    this.votes = new Map([[this.id, true]]);
    this.resetElectionTimer();
    if (this.votes.size >= this.quorum) {
      this.becomeLeader();
      return;
    }
    for (const peer of this.others) {
      this.send(peer, {
        kind: 'vote',
        term: this.currentTerm,
        from: this.id,
        lastIndex: this.raftLog.lastIndex,
        lastTerm: this.raftLog.lastTerm,
      });
    }
  }

  private becomeLeader(): void {
    assert(this.currentRole === 'candidate', 'only a candidate becomes leader');
    assert(this.votedFor === this.id, 'a leader voted for itself');
    this.currentRole = 'leader';
    this.leaderId = this.id;
    this.votes = new Map();
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.progress = new Map(
      this.others.map((peer) => [peer, new Progress(this.raftLog.lastIndex + 1)]),
    );
    // §5.4.2 / §8: entries of earlier terms commit only together with one of this term: the
    // no-op makes that happen at once, and lets reads be served (§6.4).
    this.appendEntry(null);
    this.broadcastAppend(false);
    this.maybeCommit();
  }

  /**
   * Another member leads this term (its AppendEntries, heartbeat or snapshot). Election safety
   * (§5.2): it is the only one.
   */
  private acceptLeader(from: NodeId): void {
    assert(
      this.currentRole !== 'leader',
      `two leaders in term ${this.currentTerm}: ${this.id} and ${from}`,
    );
    if (this.currentRole !== 'follower') {
      this.becomeFollower(this.currentTerm, from);
    } else {
      assert(
        this.leaderId === null || this.leaderId === from,
        `two leaders in term ${this.currentTerm}: ${this.leaderId} and ${from}`,
      );
      this.leaderId = from;
    }
    this.electionElapsed = 0;
  }

  private resetElectionTimer(): void {
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    const jitter = this.electionJitter();
    assert(
      Number.isSafeInteger(jitter) && jitter >= 0 && jitter < this.electionTicks,
      `election jitter ${jitter} is an integer in [0, electionTicks)`,
    );
    this.randomizedElectionTicks = this.electionTicks + jitter;
  }

  /** Heard from a leader within the election timeout (the leader itself always is). */
  private inLease(): boolean {
    return this.leaderId !== null && this.electionElapsed < this.electionTicks;
  }

  // ---- elections ----------------------------------------------------------------------------------

  private handleVoteRequest(m: Extract<RaftMessage<C, S>, { kind: 'pre_vote' | 'vote' }>): void {
    const pre = m.kind === 'pre_vote';
    // §5.2: one vote per term, first come first served (a repeated request gets the same answer);
    // a node that knows this term's leader votes for nobody else. A pre-vote for a later term
    // promises nothing, so it is answered on the log alone.
    const canVote =
      this.votedFor === m.from ||
      (this.votedFor === null && this.leaderId === null) ||
      (pre && m.term > this.currentTerm);
    const granted = canVote && this.raftLog.isUpToDate(m.lastIndex, m.lastTerm); // §5.4.1
    if (pre) {
      this.send(m.from, {
        kind: 'pre_vote_reply',
        term: granted ? m.term : this.currentTerm,
        from: this.id,
        granted,
      });
      return;
    }
    assert(m.term === this.currentTerm, 'a vote request is answered in its own term');
    if (granted) {
      assert(this.votedFor === null || this.votedFor === m.from, 'one vote per term');
      this.votedFor = m.from;
      this.electionElapsed = 0; // §5.2: granting a vote resets the election timer
    }
    this.send(m.from, { kind: 'vote_reply', term: this.currentTerm, from: this.id, granted });
  }

  private tally(from: NodeId, granted: boolean): void {
    this.votes.set(from, granted); // by member: a duplicated reply counts once
    let yes = 0;
    let no = 0;
    for (const vote of this.votes.values()) {
      if (vote) yes++;
      else no++;
    }
    if (yes >= this.quorum) {
      if (this.currentRole === 'pre_candidate') this.campaign();
      else this.becomeLeader();
    } else if (no >= this.quorum) {
      this.becomeFollower(this.currentTerm, null);
    }
  }

  // ---- the leader -------------------------------------------------------------------------------

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0;
      // Check-quorum (thesis §6.2): a leader that has not heard from a majority within an
      // election timeout steps down. A leader cut off (or paused and resumed) stops taking
      // proposals and reads instead of leading a term the others have left.
      let active = 1;
      for (const pr of this.progress.values()) {
        if (pr.recentActive) active++;
        pr.recentActive = false;
      }
      if (active < this.quorum) {
        this.becomeFollower(this.currentTerm, null);
        return;
      }
    }
    for (const pr of this.progress.values()) {
      // An InstallSnapshot unanswered for an election timeout was probably lost: probe again,
      // which sends it again.
      if (pr.state === 'snapshot' && ++pr.snapshotWaitTicks >= this.electionTicks) {
        pr.becomeProbe();
      }
    }
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
    }
  }

  private appendEntry(command: C | null): Entry<C> {
    assert(this.currentRole === 'leader', 'only a leader appends new entries');
    const entry = this.raftLog.appendNew(this.currentTerm, command);
    this.unstableFrom = min(this.unstableFrom, entry.index);
    return entry;
  }

  private broadcastAppend(sendIfEmpty: boolean): void {
    for (const peer of this.others) this.sendAppend(peer, sendIfEmpty);
  }

  /** A heartbeat to every other member: of the next round if a read waits for one. */
  private broadcastHeartbeat(): void {
    if (this.reads.waitingForNextRound(this.readRound)) this.readRound += 1;
    for (const peer of this.others) {
      const pr = this.progressOf(peer);
      this.send(peer, {
        kind: 'heartbeat',
        term: this.currentTerm,
        from: this.id,
        // Never past what the follower is known to hold: it may lack or hold other entries.
        commitIndex: min(pr.matchIndex, this.commitIndex),
        round: this.readRound,
      });
    }
  }

  /** Sends `peer` what it lacks, if its progress allows; true if something was sent. */
  private sendAppend(peer: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.progressOf(peer);
    if (pr.paused) return false;
    const prevIndex = pr.nextIndex - 1;
    const prevTerm = this.raftLog.term(prevIndex);
    if (prevTerm === undefined) {
      // The entries it needs are compacted away: InstallSnapshot (§7).
      assert(prevIndex < this.raftLog.snapshotIndex, 'only compacted entries have no term');
      assert(this.snapshot !== null, 'a compacted log has a snapshot');
      this.send(peer, {
        kind: 'snapshot',
        term: this.currentTerm,
        from: this.id,
        snapshot: this.snapshot,
      });
      pr.becomeSnapshot(this.snapshot.lastIndex);
      return true;
    }
    const entries = this.raftLog.slice(
      pr.nextIndex,
      this.raftLog.lastIndex + 1,
      this.appendEntriesMax,
    );
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send(peer, {
      kind: 'append',
      term: this.currentTerm,
      from: this.id,
      prevIndex,
      prevTerm,
      entries,
      commitIndex: this.commitIndex,
    });
    pr.sent(prevIndex + entries.length, entries.length);
    return true;
  }

  /** Sends as much as the progress allows (pipelining in replicate state). */
  private sendMore(peer: NodeId): void {
    for (let i = 0; i < APPENDS_IN_FLIGHT_MAX; i++) {
      if (!this.sendAppend(peer, false)) return;
    }
  }

  private handleAppendReply(from: NodeId, matchIndex: number): void {
    const pr = this.progressOf(from);
    pr.recentActive = true;
    assert(matchIndex <= this.raftLog.lastIndex, 'a follower matches no more than the leader has');
    if (pr.acknowledged(matchIndex)) {
      if (pr.state === 'probe') pr.becomeReplicate();
      else if (pr.state === 'snapshot' && pr.matchIndex >= pr.snapshotIndex) pr.becomeReplicate();
      if (this.maybeCommit()) this.broadcastAppend(true); // followers learn the commit sooner
    }
    this.sendMore(from);
  }

  private handleAppendReject(m: Extract<RaftMessage<C, S>, { kind: 'append_reject' }>): void {
    const pr = this.progressOf(m.from);
    pr.recentActive = true;
    // §5.3 fast backtracking: skip the follower's whole conflicting term at once. The hint
    // names the follower's last entry whose term is <= the rejected prevTerm; the leader goes
    // back to its own last entry whose term is <= that one.
    let probeFrom = m.hintIndex;
    if (m.hintTerm > 0 && m.hintIndex <= this.raftLog.lastIndex) {
      probeFrom = this.raftLog.findConflictByTerm(m.hintIndex, m.hintTerm).index;
    }
    if (pr.rejected(m.rejectedIndex, probeFrom)) this.sendAppend(m.from, true);
  }

  private handleHeartbeatReply(from: NodeId, round: number): void {
    const pr = this.progressOf(from);
    pr.recentActive = true;
    pr.heartbeatAcknowledged();
    if (pr.matchIndex < this.raftLog.lastIndex || pr.state === 'probe') this.sendAppend(from, true);
    this.reads.acknowledge(from, round);
    this.readStates.push(...this.reads.takeConfirmed(this.quorum));
    // The round in flight is confirmed: the reads that came meanwhile go out in the next one.
    if (!this.reads.inFlight(this.readRound) && this.reads.waitingForNextRound(this.readRound)) {
      this.broadcastHeartbeat();
    }
  }

  /**
   * Commits the highest index a majority holds, if it is of this term. §5.4.2 (Figure 8): an
   * entry of an earlier term is never committed by counting its replicas: a leader of a later
   * term could still overwrite it. It commits when an entry of this term after it does.
   */
  private maybeCommit(): boolean {
    const matches = [this.raftLog.lastIndex];
    for (const pr of this.progress.values()) matches.push(pr.matchIndex);
    matches.sort((a, b) => b - a);
    const index = matches[this.quorum - 1];
    if (index <= this.commitIndex || this.raftLog.term(index) !== this.currentTerm) return false;
    this.commitTo(index);
    if (this.readsAwaitingCommit.length > 0) {
      const waiting = this.readsAwaitingCommit;
      this.readsAwaitingCommit = [];
      this.registerReads(waiting);
    }
    return true;
  }

  /**
   * §6.4 steps 2-3: record the commit index, then confirm leadership with a heartbeat round: the
   * next one. It goes out now if no round is in flight; otherwise once that one is confirmed (or
   * with the next periodic heartbeat), for every read that came in the meantime (read-index.ts).
   */
  private registerReads(requestIds: readonly string[]): void {
    assert(this.currentRole === 'leader', 'only a leader serves reads');
    assert(
      this.raftLog.term(this.commitIndex) === this.currentTerm,
      'reads wait for a commit in term',
    );
    for (const requestId of requestIds) {
      this.reads.add(requestId, this.commitIndex, this.readRound + 1, this.id);
    }
    if (this.quorum === 1) this.readStates.push(...this.reads.takeConfirmed(this.quorum));
    else if (!this.reads.inFlight(this.readRound)) this.broadcastHeartbeat();
  }

  // ---- the follower -------------------------------------------------------------------------------

  private handleAppend(m: Extract<RaftMessage<C, S>, { kind: 'append' }>): void {
    if (m.prevIndex < this.commitIndex) {
      // Everything up to the commit index is in every later leader's log (§5.4 leader
      // completeness): say so, and the leader continues from there.
      this.sendAppendReply(m.from, this.commitIndex);
      return;
    }
    if (!this.raftLog.matchTerm(m.prevIndex, m.prevTerm)) {
      // §5.3 consistency check failed: reject, with a hint to skip the conflicting term.
      const hint = this.raftLog.findConflictByTerm(
        min(m.prevIndex, this.raftLog.lastIndex),
        m.prevTerm,
      );
      this.send(m.from, {
        kind: 'append_reject',
        term: this.currentTerm,
        from: this.id,
        rejectedIndex: m.prevIndex,
        hintIndex: hint.index,
        hintTerm: hint.term,
      });
      return;
    }
    let previous = { index: m.prevIndex, term: m.prevTerm };
    for (const entry of m.entries) {
      assert(entry.index === previous.index + 1, 'appended entries are contiguous');
      assert(entry.term >= previous.term && entry.term <= m.term, 'appended terms are ordered');
      previous = entry;
    }
    const conflict = this.raftLog.findConflict(m.entries);
    if (conflict !== 0) {
      assert(conflict > this.commitIndex, 'a committed entry is never overwritten (§5.3)');
      this.raftLog.appendFrom(m.entries.slice(conflict - m.prevIndex - 1));
      this.unstableFrom = min(this.unstableFrom, conflict);
    }
    const lastNew = m.prevIndex + m.entries.length;
    // Only up to the last entry this message vouches for: entries after it may be another term's.
    this.commitTo(min(m.commitIndex, lastNew));
    this.sendAppendReply(m.from, lastNew);
  }

  private handleHeartbeat(m: Extract<RaftMessage<C, S>, { kind: 'heartbeat' }>): void {
    this.commitTo(m.commitIndex);
    this.send(m.from, {
      kind: 'heartbeat_reply',
      term: this.currentTerm,
      from: this.id,
      round: m.round,
    });
  }

  private handleSnapshot(from: NodeId, snapshot: Snapshot<S>): void {
    if (snapshot.lastIndex <= this.commitIndex) {
      this.sendAppendReply(from, this.commitIndex); // nothing new in it
      return;
    }
    if (this.raftLog.matchTerm(snapshot.lastIndex, snapshot.lastTerm)) {
      // The log already holds it: it is all committed (it is the leader's applied state).
      this.commitTo(snapshot.lastIndex);
      this.sendAppendReply(from, snapshot.lastIndex);
      return;
    }
    // §7: the snapshot has what the log lacks or contradicts: discard the whole log.
    assert(snapshot.lastTerm <= this.currentTerm, 'a snapshot holds no future term');
    this.raftLog.restore(snapshot.lastIndex, snapshot.lastTerm);
    this.snapshot = snapshot;
    this.snapshotToSave = snapshot;
    this.commitIndex = snapshot.lastIndex;
    this.handedIndex = snapshot.lastIndex;
    this.unstableFrom = this.raftLog.lastIndex + 1;
    this.sendAppendReply(from, snapshot.lastIndex);
  }

  private sendAppendReply(to: NodeId, matchIndex: number): void {
    this.send(to, { kind: 'append_reply', term: this.currentTerm, from: this.id, matchIndex });
  }

  // ---- helpers ------------------------------------------------------------------------------------

  private commitTo(index: number): void {
    if (index <= this.commitIndex) return; // the commit index never goes back
    assert(index <= this.raftLog.lastIndex, `commit ${index} is inside the log`);
    this.commitIndex = index;
  }

  private progressOf(peer: NodeId): Progress {
    const pr = this.progress.get(peer);
    assert(pr !== undefined, `a leader tracks ${peer}`);
    return pr;
  }

  private send(to: NodeId, message: RaftMessage<C, S>): void {
    assert(to !== this.id, 'a node never messages itself');
    this.outbox.push({ to, message });
  }

  private refuse(reason: Refusal['reason']): Refusal {
    return { ok: false, reason, leader: this.leaderId };
  }

  private hardState(): HardState {
    return { term: this.currentTerm, votedFor: this.votedFor, commitIndex: this.commitIndex };
  }
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.votedFor === b.votedFor && a.commitIndex === b.commitIndex;
}
