// The shell around the Raft core (viewleader/raft) for one member of a replicated view leader:
// a timer ticks it, /raft requests step it, and every Ready is carried out in the core's order
// (viewleader/raft/ready.ts): persisted and synced (viewleader/raft-store.ts), then sent to the
// other members, then applied. Ready handling is one loop at a time; inputs that arrive while it
// awaits the disk are taken by the next Ready, so one sync covers them all (group commit).
//
// The replicated state machine is the view leader's saved-state records (viewleader/saved-state
// .ts): an entry is the record operations of one step, applying it puts and deletes them in
// `records`. The leader's live cores (Membership, LockTable) are built from `records` once it
// has applied the no-op of its own term (everything committed before it is then applied), and
// are run ahead of the log by its steps: their changes are proposed as entries, and no answer
// leaves before they are committed (`whenCommitted`) and the leader knows it still leads
// (`confirmLeadership`, a read index: a deposed leader that does not know it yet cannot confirm,
// so it never answers with a stale view or a lock granted twice).

import { assert } from '../lib/assert';
import { DhtError, NotLeaderError } from '../lib/errors';
import { post } from '../lib/http-client';
import {
  RAFT_COMMIT_WAIT_MS_MAX,
  RAFT_ELECTION_TICKS,
  RAFT_HEARTBEAT_TICKS,
  RAFT_SEND_TIMEOUT_MS,
  RAFT_SENDS_IN_FLIGHT_MAX,
  RAFT_SNAPSHOT_ENTRIES,
  RAFT_TICK_MS,
} from '../lib/limits';
import type { Logger } from '../lib/logger';
import { ViewLeaderApi, type MemberStatus } from '../lib/messages';
import {
  RaftNode,
  type Entry,
  type Envelope,
  type Persisted,
  type RaftMessage,
  type Snapshot,
} from './raft';
import type { Command, RaftStore, SnapshotState } from './raft-store';
import type { RecordOp } from './saved-state';

type Message = RaftMessage<Command, SnapshotState>;

const MESSAGE_KINDS: ReadonlySet<string> = new Set<Message['kind']>([
  'pre_vote',
  'pre_vote_reply',
  'vote',
  'vote_reply',
  'append',
  'append_reply',
  'append_reject',
  'heartbeat',
  'heartbeat_reply',
  'snapshot',
  'higher_term',
]);

interface CommitWaiter {
  readonly index: number;
  readonly term: number;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

interface ReadWaiter {
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
  /** Set once the leader confirmed it: serve once applied >= index. */
  index?: number;
}

export interface ReplicationEvents {
  /** This member leads and has applied everything committed before its term: build the cores. */
  readonly onLead: (records: ReadonlyMap<string, string>) => void;
  /** This member stopped leading (or its cores can no longer be trusted): drop them. */
  readonly onFollow: () => void;
  /** Saving failed: memory is ahead of the disk, the process must exit. */
  readonly onFailure: (err: Error) => void;
}

export class Replication {
  private readonly node: RaftNode<Command, SnapshotState>;
  /** The applied state machine: the view leader's saved-state records. */
  private readonly records = new Map<string, string>();
  private applied = 0;
  private appliedTerm = 0;
  private snapshotIndex = 0;
  private processing = false;
  private stopped = false;
  private readonly commitWaiters: CommitWaiter[] = [];
  private readonly readWaiters = new Map<string, ReadWaiter>();
  private readSeq = 0;
  private readonly sendsInFlight = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  /** The term this member leads in, and the last index when it became leader (its no-op). */
  private leading: { term: number; noopIndex: number; serving: boolean } | undefined;

  constructor(
    readonly self: string,
    readonly peers: readonly string[],
    private readonly store: RaftStore,
    persisted: Persisted<Command, SnapshotState> | null,
    private readonly events: ReplicationEvents,
    private readonly logger: Logger,
  ) {
    assert(peers.includes(self), 'a member is one of its peers');
    this.node = new RaftNode<Command, SnapshotState>(
      {
        id: self,
        peers,
        electionTicks: RAFT_ELECTION_TICKS,
        heartbeatTicks: RAFT_HEARTBEAT_TICKS,
        electionJitter: () => Math.floor(Math.random() * RAFT_ELECTION_TICKS),
      },
      persisted,
    );
    // A restart rebuilds the state machine from the snapshot; the committed entries after it
    // come back through Readies as the commit index is learned again.
    const snapshot = persisted?.snapshot ?? null;
    if (snapshot !== null) this.installSnapshot(snapshot);
  }

  start(): void {
    this.timer = setInterval(() => {
      this.node.tick();
      this.afterInput();
    }, RAFT_TICK_MS);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    const stopping = new Error('the view leader is stopping');
    for (const w of this.commitWaiters.splice(0)) w.reject(stopping);
    for (const w of this.readWaiters.values()) w.reject(stopping);
    this.readWaiters.clear();
    while (this.processing) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  /**
   * Messages from another member (POST /raft). The core treats a message from a non-member as a
   * bug, so messages from unknown senders, or claiming another sender than the request's, or of
   * an unknown kind, are dropped here. (Members trust each other's messages otherwise: see
   * docs/security.md.)
   */
  receive(from: string, messages: readonly { kind: string; from: string }[]): void {
    if (!this.peers.includes(from) || from === this.self) return;
    for (const message of messages) {
      if (message.from !== from || !MESSAGE_KINDS.has(message.kind)) continue;
      this.node.step(message as unknown as Message);
    }
    this.afterInput();
  }

  /** True when this member leads and serves: its cores are built from everything committed. */
  get serving(): boolean {
    return this.leading?.serving === true;
  }

  /** Who leads, as far as this member knows (null: nobody known). */
  get leader(): string | null {
    return this.node.status().leader;
  }

  /** The refusal a member that does not serve gives: ask the leader. */
  notLeader(): NotLeaderError {
    const leader = this.leader;
    return new NotLeaderError(leader === this.self ? null : leader);
  }

  /**
   * Append one step's record operations to the log. The returned promise resolves once they are
   * committed and applied here; it rejects with not_leader if they never will be (another
   * leader's entry took their place), and with `unknown` if that is not known within
   * RAFT_COMMIT_WAIT_MS_MAX (they may still commit). Throws at once if this member cannot propose.
   */
  propose(ops: readonly RecordOp[]): Promise<void> {
    const result = this.node.propose(ops);
    if (!result.ok) {
      throw result.reason === 'busy'
        ? new NotLeaderError(null, 'the view leader has too many changes in flight; try again')
        : this.notLeader();
    }
    this.afterInput();
    return this.whenCommitted(result.index, result.term);
  }

  /**
   * Resolves once this member is known to still lead (a majority answered a heartbeat sent after
   * the call) and has applied everything committed at that point (§6.4 read index). Rejects
   * with not_leader otherwise.
   */
  confirmLeadership(): Promise<void> {
    const requestId = `r${++this.readSeq}`;
    const result = this.node.readIndex(requestId);
    if (!result.ok) return Promise.reject(this.notLeader());
    return this.bounded(
      new Promise<void>((resolve, reject) => {
        this.readWaiters.set(requestId, { resolve, reject });
        this.afterInput();
      }),
      () => {
        this.readWaiters.delete(requestId);
        return new NotLeaderError(
          null,
          'the view leader members did not confirm in time; try again',
        );
      },
    );
  }

  /** Whether the log has entries this leader proposed that are not applied yet. */
  get pendingProposals(): number {
    return this.commitWaiters.length;
  }

  status(epoch: number): MemberStatus {
    const s = this.node.status();
    return {
      address: this.self,
      role: s.role === 'pre_candidate' ? 'candidate' : s.role,
      term: s.term,
      leader: s.leader,
      commitIndex: s.commitIndex,
      appliedIndex: this.applied,
      lastIndex: s.lastIndex,
      snapshotIndex: s.snapshotIndex,
      epoch,
      replicated: true,
    };
  }

  /** The applied records (for the status's epoch on a follower). */
  get appliedRecords(): ReadonlyMap<string, string> {
    return this.records;
  }

  // ---- carrying out Readies -------------------------------------------------------------------

  private afterInput(): void {
    this.noticeRole();
    if (!this.processing && !this.stopped && this.node.hasReady()) void this.drain();
  }

  private async drain(): Promise<void> {
    this.processing = true;
    try {
      while (!this.stopped && this.node.hasReady()) {
        const ready = this.node.ready();
        await this.store.save(ready); // steps 1-3, one synced batch
        this.send(ready.messages);
        if (ready.snapshot !== null) this.installSnapshot(ready.snapshot);
        for (const entry of ready.committed) this.apply(entry);
        for (const read of ready.readStates) {
          const waiter = this.readWaiters.get(read.requestId);
          if (waiter !== undefined) waiter.index = read.index;
        }
        for (const id of ready.readsFailed) {
          this.readWaiters.get(id)?.reject(this.notLeader());
          this.readWaiters.delete(id);
        }
        this.node.advance();
        this.settleReads();
        this.noticeRole();
        await this.maybeCompact();
      }
    } catch (err) {
      if (!this.stopped) this.events.onFailure(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.processing = false;
    }
  }

  private apply(entry: Entry<Command>): void {
    assert(entry.index === this.applied + 1, 'entries are applied in order, once');
    if (entry.command !== null) {
      for (const op of entry.command) {
        if (op.type === 'put') this.records.set(op.key, op.value);
        else this.records.delete(op.key);
      }
    }
    this.applied = entry.index;
    this.appliedTerm = entry.term;
    // Waiters for this index: theirs was applied, or another leader's entry took its place.
    while (this.commitWaiters.length > 0 && this.commitWaiters[0].index <= entry.index) {
      const waiter = this.commitWaiters.shift()!;
      if (waiter.index === entry.index && waiter.term === entry.term) waiter.resolve();
      else
        waiter.reject(
          new NotLeaderError(null, 'the change was lost in a leader change; try again'),
        );
    }
  }

  private installSnapshot(snapshot: Snapshot<SnapshotState>): void {
    this.records.clear();
    for (const [key, value] of snapshot.state) this.records.set(key, value);
    this.applied = snapshot.lastIndex;
    this.appliedTerm = snapshot.lastTerm;
    this.snapshotIndex = snapshot.lastIndex;
    // The snapshot may hold their entries, committed by the leader that sent it, or not.
    for (const waiter of this.commitWaiters.splice(0)) {
      waiter.reject(changeOutcomeUnknown('a snapshot from the leader replaced the log'));
    }
  }

  private settleReads(): void {
    for (const [id, waiter] of this.readWaiters) {
      if (waiter.index !== undefined && waiter.index <= this.applied) {
        this.readWaiters.delete(id);
        waiter.resolve();
      }
    }
  }

  /** Leadership won (serve once the term's no-op is applied) or lost (drop the cores). */
  private noticeRole(): void {
    const s = this.node.status();
    if (s.role === 'leader') {
      if (this.leading?.term !== s.term) {
        if (this.leading?.serving === true) this.events.onFollow();
        this.leading = { term: s.term, noopIndex: s.lastIndex, serving: false };
        this.logger.info({ term: s.term }, 'view leader member elected leader');
      }
      if (!this.leading.serving && this.applied >= this.leading.noopIndex) {
        this.leading.serving = true;
        this.events.onLead(this.records);
      }
    } else if (this.leading !== undefined) {
      const wasServing = this.leading.serving;
      this.leading = undefined;
      if (wasServing) this.events.onFollow();
      this.logger.info({ term: s.term, leader: s.leader }, 'view leader member no longer leads');
    }
  }

  /**
   * The leader's cores can no longer be trusted (a change of theirs could not be proposed):
   * rebuild them once everything proposed so far is applied.
   */
  rebuildCores(): void {
    if (this.leading === undefined || !this.leading.serving) return;
    this.leading.serving = false;
    this.leading.noopIndex = this.node.status().lastIndex;
    this.events.onFollow();
    this.noticeRole();
  }

  private async maybeCompact(): Promise<void> {
    if (this.applied - this.snapshotIndex < RAFT_SNAPSHOT_ENTRIES) return;
    const snapshot: Snapshot<SnapshotState> = {
      lastIndex: this.applied,
      lastTerm: this.appliedTerm,
      state: [...this.records],
    };
    await this.store.saveSnapshot(snapshot);
    this.node.compact(snapshot);
    this.snapshotIndex = snapshot.lastIndex;
  }

  private whenCommitted(index: number, term: number): Promise<void> {
    return this.bounded(
      new Promise<void>((resolve, reject) => {
        this.commitWaiters.push({ index, term, resolve, reject });
        this.commitWaiters.sort((a, b) => a.index - b.index);
      }),
      // The entry stays in this member's log, and may yet commit (a majority lost for now).
      () => changeOutcomeUnknown('a majority of the view leader members did not confirm in time'),
    );
  }

  /**
   * `promise`, or the error `onTimeout` gives after RAFT_COMMIT_WAIT_MS_MAX (a majority lost:
   * the caller asks again).
   */
  private bounded(promise: Promise<void>, onTimeout: () => Error): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((_, reject) => {
      timer = setTimeout(() => reject(onTimeout()), RAFT_COMMIT_WAIT_MS_MAX);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  /**
   * Fire and forget, one request per member per Ready: Raft resends what is lost. A member that
   * does not answer (stopped) gets at most RAFT_SENDS_IN_FLIGHT_MAX requests; the rest is dropped.
   */
  private send(envelopes: readonly Envelope<Command, SnapshotState>[]): void {
    const byMember = new Map<string, Message[]>();
    for (const { to, message } of envelopes) {
      let list = byMember.get(to);
      if (list === undefined) byMember.set(to, (list = []));
      list.push(message);
    }
    for (const [to, messages] of byMember) {
      const inFlight = this.sendsInFlight.get(to) ?? 0;
      if (inFlight >= RAFT_SENDS_IN_FLIGHT_MAX) continue;
      this.sendsInFlight.set(to, inFlight + 1);
      post(to, ViewLeaderApi.raft.path, { from: this.self, messages }, RAFT_SEND_TIMEOUT_MS)
        .catch(() => undefined)
        .finally(() => this.sendsInFlight.set(to, (this.sendsInFlight.get(to) ?? 1) - 1));
    }
  }
}

/** A change in the log whose fate this member cannot tell: it may or may not take effect. */
function changeOutcomeUnknown(why: string): DhtError {
  return new DhtError('unknown', `${why}: the change may or may not take effect`);
}
