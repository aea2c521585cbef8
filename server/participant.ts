// The two-phase-commit participant as a pure state machine: messages, views and time in,
// decisions and messages to send out. It never touches the network, the store or a clock; the
// server shell feeds it and executes what it returns. docs/design.md, "Two-phase commit", has
// the protocol and the safety argument.
//
//   (none) --prepare/yes--> PREPARED --decision learned (commit / abort)--> COMMITTED | ABORTED
//                             |  ^
//                             |  +-- accept / promise (Paxos acceptor: ballots, epochs)
//                             +-- timeout or new epoch: recover it (Paxos proposer)
//
// Who decides: the transaction's replicas, by single-decree Paxos whose value is the outcome.
// The coordinator owns ballot 0 (no first phase: it is the first proposer) and proposes commit
// only once every replica voted yes. A replica that times out, or sees a new epoch, runs a
// recovery ballot: it collects promises, proposes the highest-ballot outcome accepted among
// them (abort if none), and the outcome is chosen once a majority of the replicas in its view
// accept it. Nothing is applied before it is chosen, so no two replicas ever decide differently,
// whatever view each of them holds.
//
// Ballots carry an epoch, and a replica acts only on ballots of the epoch it is in: once it has
// moved on, the older epoch's ballots are dead to it. That is what lets the acceptor set shrink
// to the replicas still in the view (a dead replica no longer blocks anything once it left the
// view) without ever letting an old-epoch quorum decide behind the new one's back.

import { assert } from '../lib/assert';
import {
  compareBallots,
  coordinatorBallot,
  describeBallot,
  majority,
  promiseQuorum,
} from '../lib/ballot';
import { DhtError } from '../lib/errors';
import { REPLICATION_COUNT } from '../lib/limits';
import type {
  Accepted,
  Ballot,
  DecisionResponse,
  PrepareRequest,
  ServerRef,
  TxOutcome,
} from '../lib/messages';
import { copyOfWrite, type Copy } from './store';

export interface ParticipantConfig {
  readonly selfId: string;
  readonly prepareTimeoutMs: number;
  /** How long a recovery ballot may take before the next one starts. */
  readonly decisionRetryMs: number;
  /** Replica i waits i * this before recovering, so recoveries rarely duel. */
  readonly recoveryStaggerMs: number;
  readonly decisionsRememberedMax: number;
}

/** What the participant needs to know of the view it is in. */
export interface ViewContext {
  /** The epoch this server is in (NO_EPOCH, -1, when in no view). */
  readonly epoch: number;
  readonly viewIds: ReadonlySet<string>;
}

/** What the shell knows when a prepare arrives. */
export interface PrepareContext {
  readonly epoch: number;
  readonly rebalancing: boolean;
  /** The server is sure it is still in its view (server/view-tracker.ts, `holdsLease`). */
  readonly leased: boolean;
  readonly currentVersion: number;
}

export type Vote =
  | { readonly vote: 'yes'; readonly version: number }
  | { readonly vote: 'no'; readonly error: DhtError };

/** A committed write to store: a value, or for a delete a tombstone, at the commit's version. */
export type Apply = { readonly key: string } & Copy;

/** A decision this participant reached or learned by recovery (for the shell to apply and log). */
export interface Resolution {
  readonly txid: string;
  readonly key: string;
  readonly outcome: TxOutcome;
  readonly apply?: Apply;
  readonly why: string;
}

/** A message to another replica of a transaction, for the shell to send. */
export type PeerSend =
  /** Phase 1: answer with `onPromise`. */
  | {
      readonly type: 'promise';
      readonly txid: string;
      readonly key: string;
      readonly target: ServerRef;
      readonly ballot: Ballot;
    }
  /** Phase 2: answer with `onAccepted`. */
  | {
      readonly type: 'accept';
      readonly txid: string;
      readonly key: string;
      readonly target: ServerRef;
      readonly ballot: Ballot;
      readonly outcome: TxOutcome;
    }
  /** The chosen outcome (no answer needed: a lost one is learned by the target's own recovery). */
  | {
      readonly type: 'learn';
      readonly txid: string;
      readonly key: string;
      readonly target: ServerRef;
      readonly ballot: Ballot;
      readonly outcome: TxOutcome;
    };

export interface Step {
  readonly sends: PeerSend[];
  readonly resolutions: Resolution[];
}

/** How an acceptor answered a phase-2 request. */
export type AcceptAnswer = 'accepted' | 'refused' | 'unreachable';

interface Proposal {
  readonly ballot: Ballot;
  /** The transaction's replicas in the proposer's view: this epoch's acceptors. */
  readonly acceptors: readonly ServerRef[];
  /** Phase 1 answers by server ID: what each had accepted (null: nothing). */
  readonly promises: Map<string, Accepted | null>;
  /** Set once phase 2 starts. */
  value: TxOutcome | undefined;
  readonly accepts: Set<string>;
}

interface PreparedTx {
  readonly txid: string;
  readonly key: string;
  /** What the commit writes: the value of a set, or `deleted` for a delete (exactly one). */
  readonly value?: string;
  readonly deleted?: true;
  readonly replicas: readonly ServerRef[];
  /** 1 + this participant's index among the replicas: its ballot slot. */
  readonly slot: number;
  /** This participant's version of the key when it voted. */
  readonly votedVersion: number;
  /** Acceptor state. */
  promised: Ballot;
  accepted: Accepted | undefined;
  /**
   * The shell synced a record holding `accepted.outcome` (see `acceptSynced`). Stays true while
   * later acceptances keep that outcome: any of those records on disk says the same.
   */
  acceptedOutcomeSynced: boolean;
  /** The highest ballot heard of (a superseding promise elsewhere): the next round goes above. */
  highestSeen: Ballot;
  /** Proposer state. */
  nextRecoveryAtMs: number;
  proposal: Proposal | undefined;
}

/**
 * What a participant must remember across a restart, as records (server/participant-records.ts
 * encodes them; the shell writes and syncs them before it answers): the acceptor state of each
 * prepared transaction, the decisions and fences it remembers, and the last commit of each key.
 * Proposer state (a ballot under way) is not durable: a restarted replica starts a new ballot.
 */
export interface PreparedRecord {
  readonly key: string;
  /** The value of a set, or `deleted` for a delete (exactly one). */
  readonly value?: string;
  readonly deleted?: true;
  readonly replicas: readonly ServerRef[];
  readonly votedVersion: number;
  readonly promised: Ballot;
  readonly accepted?: Accepted;
}

export interface DecisionRecord {
  readonly outcome: TxOutcome;
  /** A fence: aborted here without ever being prepared here. */
  readonly fenced: boolean;
  /** Order of remembering, so the oldest is forgotten first after a restart too. */
  readonly seq: number;
}

export interface LastCommitRecord {
  readonly txid: string;
  readonly version: number;
}

export type ParticipantChange =
  | { readonly table: 'prepared'; readonly key: string; readonly record?: PreparedRecord }
  | { readonly table: 'decided'; readonly key: string; readonly record?: DecisionRecord }
  | { readonly table: 'last-commit'; readonly key: string; readonly record?: LastCommitRecord };

export interface ParticipantState {
  readonly prepared: Iterable<[string, PreparedRecord]>;
  readonly decided: Iterable<[string, DecisionRecord]>;
  readonly lastCommits: Iterable<[string, LastCommitRecord]>;
}

export class Participant {
  private readonly pendingByKey = new Map<string, PreparedTx>();
  private readonly pendingByTxid = new Map<string, PreparedTx>();
  /** Decided transactions, oldest first, bounded by decisionsRememberedMax. */
  private readonly decisions = new Map<string, TxOutcome>();
  /**
   * Transactions aborted here without ever being prepared here (an abort or a recovery query for
   * an unknown txid), so a late prepare is refused. Bounded on their own: anyone can make these
   * up, and they must never push real decisions out.
   */
  private readonly fenced = new Set<string>();
  /**
   * The last transaction committed on each key. While any replica holds a transaction prepared,
   * no newer one can commit on that key (that replica votes no), so a replica can still answer
   * "committed" after its decision log has forgotten the transaction.
   */
  private readonly lastCommitByKey = new Map<string, { txid: string; version: number }>();
  /** Sequence numbers of remembered decisions and fences (their order of forgetting). */
  private readonly rememberedSeq = new Map<string, number>();
  private nextSeq = 1;
  /**
   * Keys decided by a recovery here (a Step's resolutions) whose records the shell has not yet
   * reported synced, with how many such decisions each: their reads wait (`refusesReads`).
   */
  private readonly resolvedUnsynced = new Map<string, number>();
  /** Durable state changed since the last takeChanges, as "table\0key". */
  private readonly changed = new Set<string>();

  constructor(private readonly config: ParticipantConfig) {
    assert(config.prepareTimeoutMs > 0, 'prepare timeout is positive');
    assert(config.decisionRetryMs > 0, 'decision retry interval is positive');
    assert(config.recoveryStaggerMs >= 0, 'recovery stagger is not negative');
    assert(config.decisionsRememberedMax > 0, 'some decisions are remembered');
  }

  get pendingCount(): number {
    return this.pendingByKey.size;
  }

  /**
   * Transactions undecided here, or decided by a recovery whose records are not yet synced: what
   * a copy phase waits for before keys move (`refusesReads` says why for reads; a transfer is a
   * read by another server).
   */
  get unsettledCount(): number {
    return this.pendingByKey.size + this.resolvedUnsynced.size;
  }

  /** `txid` is prepared here and undecided (its commit or abort completes admitted work). */
  holdsPrepared(txid: string): boolean {
    return this.pendingByTxid.has(txid);
  }

  isPending(key: string): boolean {
    return this.pendingByKey.has(key);
  }

  /**
   * Must a replicated read of `key` be refused? While a transaction on it is undecided here (it
   * may be committing at this moment), and while a recovery's decision on it is not yet synced:
   * a recovery whose quorum is this replica alone decides from its own acceptance, which may be
   * in memory only (the coordinator's accept, its sync in flight as the prepare timeout fired);
   * a crash before the sync undoes the decision, and no read may have shown it.
   */
  refusesReads(key: string): boolean {
    return this.pendingByKey.has(key) || this.resolvedUnsynced.has(key);
  }

  /** The shell synced the records of these resolutions (a Step's, once its persist is done). */
  resolutionsSynced(resolutions: readonly Resolution[]): void {
    for (const { key } of resolutions) {
      const count = this.resolvedUnsynced.get(key) ?? 0;
      if (count <= 1) this.resolvedUnsynced.delete(key);
      else this.resolvedUnsynced.set(key, count - 1);
    }
  }

  outcomeOf(txid: string): TxOutcome | undefined {
    return this.decisions.get(txid) ?? (this.fenced.has(txid) ? ABORTED : undefined);
  }

  // ---- the coordinator's messages -------------------------------------------------------------

  prepare(request: PrepareRequest, context: PrepareContext, nowMs: number): Vote {
    const decided = this.outcomeOf(request.txid);
    if (decided !== undefined) {
      return no('aborted', `transaction already ${decided.state}`, 'transaction_unknown');
    }
    const duplicate = this.pendingByTxid.get(request.txid);
    if (duplicate !== undefined) return { vote: 'yes', version: duplicate.votedVersion };

    if (request.serverId !== this.config.selfId) {
      return no('retry', 'server ID differs from the coordinator view', 'server_id_mismatch');
    }
    if (request.epoch !== context.epoch) {
      return no(
        'retry',
        `epoch ${context.epoch} here, ${request.epoch} in request`,
        'epoch_mismatch',
      );
    }
    if (context.rebalancing) return no('retry', 'rebalancing under way', 'rebalancing');
    if (!context.leased) {
      return no(
        'retry',
        'no heartbeat acknowledged lately: maybe out of the view',
        'lease_expired',
      );
    }
    if (this.pendingByKey.has(request.key)) {
      return no('aborted', 'another transaction on this key is pending', 'key_busy');
    }
    const index = request.replicas.findIndex((r) => r.id === this.config.selfId);
    if (index < 0) {
      throw new DhtError('invalid', 'this server is not among the replicas named', 'bad_request');
    }
    if (
      request.replicas.length > REPLICATION_COUNT ||
      new Set(request.replicas.map((r) => r.id)).size !== request.replicas.length
    ) {
      throw new DhtError(
        'invalid',
        `the replicas named must be at most ${REPLICATION_COUNT} distinct servers`,
        'bad_request',
      );
    }

    assert(
      (request.value === undefined) !== (request.deleted === undefined),
      'a prepare carries a value or a delete, not both (checked at the edge)',
    );
    const slot = index + 1;
    const ballotZero = coordinatorBallot(request.epoch);
    const tx: PreparedTx = {
      txid: request.txid,
      key: request.key,
      value: request.value,
      deleted: request.deleted,
      replicas: request.replicas,
      slot,
      votedVersion: context.currentVersion,
      promised: ballotZero,
      accepted: undefined,
      acceptedOutcomeSynced: false,
      highestSeen: ballotZero,
      nextRecoveryAtMs: nowMs + this.config.prepareTimeoutMs + this.stagger(slot),
      proposal: undefined,
    };
    this.pendingByKey.set(tx.key, tx);
    this.pendingByTxid.set(tx.txid, tx);
    this.markChanged('prepared', tx.txid);
    return { vote: 'yes', version: context.currentVersion };
  }

  // ---- acceptor: phase 1 and phase 2 of any ballot ---------------------------------------------

  /**
   * Phase 1 of a recovery ballot. A decided (or never prepared, hence fenced) transaction answers
   * its outcome in any epoch; otherwise only a ballot of this server's own epoch is answered.
   */
  promise(txid: string, key: string, ballot: Ballot, view: ViewContext): DecisionResponse {
    const known = this.knownOutcome(txid, key);
    if (known !== undefined) return known;
    const tx = this.pendingByTxid.get(txid);
    if (tx === undefined) {
      // Never prepared here, so the coordinator cannot have collected every yes and no commit can
      // ever be proposed: abort is the only possible outcome, and fencing refuses a late prepare.
      this.fence(txid);
      return ABORTED;
    }
    this.checkKey(tx, key);
    this.checkEpoch(ballot, view);
    if (compareBallots(ballot, tx.promised) < 0) {
      return { state: 'superseded', promised: tx.promised };
    }
    this.promiseTo(tx, ballot);
    return tx.accepted === undefined
      ? { state: 'promised' }
      : { state: 'promised', accepted: tx.accepted };
  }

  /** Phase 2: accept `outcome` at `ballot` (the coordinator's ballot 0, or a recovery's). */
  accept(txid: string, key: string, ballot: Ballot, outcome: TxOutcome, view: ViewContext): void {
    const decided = this.outcomeOf(txid);
    if (decided !== undefined) {
      if (sameOutcome(decided, outcome)) return;
      throw new DhtError('rejected', `transaction already ${decided.state}`, 'transaction_unknown');
    }
    const tx = this.pendingByTxid.get(txid);
    if (tx === undefined) {
      throw new DhtError('aborted', 'no such prepared transaction', 'transaction_unknown');
    }
    this.checkKey(tx, key);
    this.checkEpoch(ballot, view);
    if (compareBallots(ballot, tx.promised) < 0) {
      throw new DhtError(
        'rejected',
        `a higher ballot was promised (${describeBallot(tx.promised)})`,
        'ballot_superseded',
      );
    }
    this.checkVersion(tx, outcome);
    this.promiseTo(tx, ballot);
    setAccepted(tx, { ballot, outcome });
    this.markChanged('prepared', tx.txid);
  }

  /**
   * The shell synced this replica's acceptance of `outcome` for `txid` (the accept's answer may
   * leave). Ignored if the transaction moved on to another outcome meanwhile.
   */
  acceptSynced(txid: string, outcome: TxOutcome): void {
    const tx = this.pendingByTxid.get(txid);
    if (tx?.accepted !== undefined && sameOutcome(tx.accepted.outcome, outcome)) {
      tx.acceptedOutcomeSynced = true;
    }
  }

  /**
   * May the commit of `txid` at `version` be answered before its own records are synced? Yes
   * when this replica's acceptance of that very commit is on disk: the prepared record holds the
   * value and the acceptance holds the commit, so a restart finds the transaction undecided with
   * the commit accepted, refuses reads of the key until the termination protocol decides it, and
   * the protocol can only decide commit (it was chosen: that is why it is being applied). The
   * commit's records then ride on the next sync instead of adding a synced round to every setr.
   */
  commitSyncedAsAccepted(txid: string, version: number): boolean {
    const tx = this.pendingByTxid.get(txid);
    return (
      tx !== undefined &&
      tx.acceptedOutcomeSynced &&
      tx.accepted !== undefined &&
      sameOutcome(tx.accepted.outcome, { state: 'committed', version })
    );
  }

  // ---- learning a decision ----------------------------------------------------------------------

  /** The decision commit (chosen). Returns the value to apply, or nothing for a repeat. */
  commit(txid: string, key: string, version: number): Apply | undefined {
    const decided = this.outcomeOf(txid);
    if (decided?.state === 'committed') return undefined;
    if (decided?.state === 'aborted') {
      throw new DhtError('aborted', 'transaction was aborted', 'transaction_unknown');
    }
    const tx = this.pendingByTxid.get(txid);
    if (tx === undefined || tx.key !== key) {
      throw new DhtError('aborted', 'no such prepared transaction', 'transaction_unknown');
    }
    const outcome: TxOutcome = { state: 'committed', version };
    this.checkVersion(tx, outcome);
    return this.decide(tx, outcome);
  }

  /**
   * The decision abort: idempotent; fences a transaction never prepared here. Without a ballot it
   * is the coordinator's, which proposes commit or abort, never both: refused where a commit was
   * accepted (that commit may be chosen). With a ballot, abort was chosen there, which supersedes
   * any commit accepted at a lower ballot.
   */
  abort(txid: string, key: string, ballot?: Ballot): void {
    const decided = this.knownOutcome(txid, key);
    if (decided?.state === 'committed') {
      throw new DhtError('rejected', 'transaction already committed', 'transaction_unknown');
    }
    if (decided !== undefined) return;
    const tx = this.pendingByTxid.get(txid);
    if (tx === undefined) {
      this.fence(txid);
      return;
    }
    this.checkKey(tx, key);
    const accepted = tx.accepted;
    if (
      accepted?.outcome.state === 'committed' &&
      (ballot === undefined || compareBallots(ballot, accepted.ballot) <= 0)
    ) {
      throw new DhtError(
        'rejected',
        'a commit of this transaction was accepted here and may be chosen',
        'commit_accepted',
      );
    }
    this.decide(tx, ABORTED);
  }

  // ---- proposer: recovery ---------------------------------------------------------------------

  /**
   * The passage of time: a transaction undecided past its prepare timeout (or since a new epoch)
   * gets a recovery ballot, and another every decisionRetryMs until it is decided.
   */
  tick(nowMs: number, view: ViewContext): Step {
    const step: Step = { sends: [], resolutions: [] };
    for (const tx of [...this.pendingByTxid.values()]) {
      if (nowMs < tx.nextRecoveryAtMs) continue;
      tx.nextRecoveryAtMs = nowMs + this.config.decisionRetryMs + this.stagger(tx.slot);
      this.startBallot(tx, view, step);
    }
    return step;
  }

  /**
   * A new view was installed: ballots of the old epoch are dead here, and keys must not move
   * while a transaction on them is undecided, so recover every pending one now (staggered).
   */
  epochChanged(nowMs: number): void {
    for (const tx of this.pendingByTxid.values()) {
      tx.proposal = undefined;
      tx.nextRecoveryAtMs = nowMs + this.stagger(tx.slot);
    }
  }

  /** An answer to a `promise` send (`unreachable`: no answer, or a refusal). */
  onPromise(
    txid: string,
    from: ServerRef,
    ballot: Ballot,
    answer: DecisionResponse | 'unreachable',
  ): Step {
    const step: Step = { sends: [], resolutions: [] };
    const tx = this.pendingByTxid.get(txid);
    if (tx === undefined || answer === 'unreachable') return step;
    switch (answer.state) {
      case 'committed':
      case 'aborted':
        step.resolutions.push(this.resolve(tx, answer, `${from.id} had decided`));
        return step;
      case 'superseded':
        if (compareBallots(answer.promised, tx.highestSeen) > 0) tx.highestSeen = answer.promised;
        return step;
      case 'promised': {
        const proposal = tx.proposal;
        if (proposal === undefined || compareBallots(proposal.ballot, ballot) !== 0) return step;
        if (proposal.value !== undefined) return step; // phase 2 already under way
        proposal.promises.set(from.id, answer.accepted ?? null);
        this.afterPromises(tx, proposal, step);
        return step;
      }
    }
  }

  /** An answer to an `accept` send. */
  onAccepted(txid: string, from: ServerRef, ballot: Ballot, answer: AcceptAnswer): Step {
    const step: Step = { sends: [], resolutions: [] };
    const tx = this.pendingByTxid.get(txid);
    const proposal = tx?.proposal;
    if (tx === undefined || proposal === undefined || answer !== 'accepted') return step;
    if (compareBallots(proposal.ballot, ballot) !== 0 || proposal.value === undefined) return step;
    proposal.accepts.add(from.id);
    this.afterAccepts(tx, proposal, step);
    return step;
  }

  private startBallot(tx: PreparedTx, view: ViewContext, step: Step): void {
    tx.proposal = undefined;
    // An expelled server (in no view) proposes nothing: its epoch is over.
    if (!view.viewIds.has(this.config.selfId)) return;
    const acceptors = tx.replicas.filter((r) => view.viewIds.has(r.id));
    // Fewer than half of the replicas left in the view (two of three gone at once): an outcome
    // may have been chosen by the absent ones. Waiting is the only safe answer.
    if (acceptors.length < promiseQuorum(tx.replicas.length)) return;
    const above = compareBallots(tx.highestSeen, tx.promised) > 0 ? tx.highestSeen : tx.promised;
    const ballot: Ballot = {
      epoch: view.epoch,
      round: above.epoch === view.epoch ? above.round + 1 : 1,
      slot: tx.slot,
    };
    if (compareBallots(ballot, tx.promised) <= 0) return; // an older epoch: nothing to do here
    this.promiseTo(tx, ballot);
    const proposal: Proposal = {
      ballot,
      acceptors,
      promises: new Map([[this.config.selfId, tx.accepted ?? null]]),
      value: undefined,
      accepts: new Set(),
    };
    tx.proposal = proposal;
    for (const target of acceptors) {
      if (target.id === this.config.selfId) continue;
      step.sends.push({ type: 'promise', txid: tx.txid, key: tx.key, target, ballot });
    }
    this.afterPromises(tx, proposal, step);
  }

  private afterPromises(tx: PreparedTx, proposal: Proposal, step: Step): void {
    if (proposal.promises.size < promiseQuorum(tx.replicas.length)) return;
    // The outcome accepted at the highest ballot among the promises may have been chosen: keep
    // it. None accepted: nothing was chosen, and abort is always a safe choice.
    let highest: Accepted | undefined;
    for (const accepted of proposal.promises.values()) {
      if (
        accepted !== null &&
        (highest === undefined || compareBallots(accepted.ballot, highest.ballot) > 0)
      ) {
        highest = accepted;
      }
    }
    const value = highest?.outcome ?? ABORTED;
    proposal.value = value;
    if (compareBallots(tx.promised, proposal.ballot) !== 0) return; // promised higher meanwhile
    setAccepted(tx, { ballot: proposal.ballot, outcome: value });
    this.markChanged('prepared', tx.txid);
    proposal.accepts.add(this.config.selfId);
    for (const target of proposal.acceptors) {
      if (target.id === this.config.selfId) continue;
      step.sends.push({
        type: 'accept',
        txid: tx.txid,
        key: tx.key,
        target,
        ballot: proposal.ballot,
        outcome: value,
      });
    }
    this.afterAccepts(tx, proposal, step);
  }

  private afterAccepts(tx: PreparedTx, proposal: Proposal, step: Step): void {
    if (proposal.accepts.size < majority(proposal.acceptors.length)) return;
    const outcome = proposal.value;
    assert(outcome !== undefined, 'accepts count only in phase 2');
    step.resolutions.push(
      this.resolve(tx, outcome, `recovered at ballot ${describeBallot(proposal.ballot)}`),
    );
    for (const target of tx.replicas) {
      if (target.id === this.config.selfId) continue;
      step.sends.push({
        type: 'learn',
        txid: tx.txid,
        key: tx.key,
        target,
        ballot: proposal.ballot,
        outcome,
      });
    }
  }

  // ---- helpers ----------------------------------------------------------------------------------

  private knownOutcome(txid: string, key: string): TxOutcome | undefined {
    const decided = this.outcomeOf(txid);
    if (decided !== undefined) return decided;
    const last = this.lastCommitByKey.get(key);
    if (last?.txid === txid) return { state: 'committed', version: last.version };
    return undefined;
  }

  private promiseTo(tx: PreparedTx, ballot: Ballot): void {
    tx.promised = ballot;
    this.markChanged('prepared', tx.txid);
    if (compareBallots(ballot, tx.highestSeen) > 0) tx.highestSeen = ballot;
  }

  private checkKey(tx: PreparedTx, key: string): void {
    if (tx.key !== key) {
      throw new DhtError('invalid', 'the transaction is prepared for another key', 'bad_request');
    }
  }

  /** Ballots of another epoch than this server's are dead (older) or premature (newer). */
  private checkEpoch(ballot: Ballot, view: ViewContext): void {
    if (ballot.epoch !== view.epoch) {
      throw new DhtError(
        'retry',
        `epoch ${view.epoch} here, ${ballot.epoch} in the ballot`,
        'epoch_mismatch',
      );
    }
  }

  private checkVersion(tx: PreparedTx, outcome: TxOutcome): void {
    // A coordinator chooses 1 + the highest vote; anything else is a malformed commit.
    if (outcome.state === 'committed' && outcome.version <= tx.votedVersion) {
      throw new DhtError(
        'invalid',
        `commit version ${outcome.version} must exceed ${tx.votedVersion}`,
        'bad_request',
      );
    }
  }

  private stagger(slot: number): number {
    return (slot - 1) * this.config.recoveryStaggerMs;
  }

  private resolve(tx: PreparedTx, outcome: TxOutcome, why: string): Resolution {
    const apply = this.decide(tx, outcome);
    this.resolvedUnsynced.set(tx.key, (this.resolvedUnsynced.get(tx.key) ?? 0) + 1);
    return apply === undefined
      ? { txid: tx.txid, key: tx.key, outcome, why }
      : { txid: tx.txid, key: tx.key, outcome, apply, why };
  }

  private decide(tx: PreparedTx, outcome: TxOutcome): Apply | undefined {
    assert(
      this.pendingByKey.get(tx.key) === tx,
      'a prepared key has exactly one pending transaction',
    );
    this.pendingByKey.delete(tx.key);
    this.pendingByTxid.delete(tx.txid);
    this.markChanged('prepared', tx.txid);
    this.remember(tx.txid, outcome);
    if (outcome.state === 'committed') {
      this.lastCommitByKey.set(tx.key, { txid: tx.txid, version: outcome.version });
      this.markChanged('last-commit', tx.key);
    }
    return outcome.state === 'committed'
      ? { key: tx.key, ...copyOfWrite({ ...tx, version: outcome.version }) }
      : undefined;
  }

  private remember(txid: string, outcome: TxOutcome, seq = this.nextSeq++): void {
    assert(!this.decisions.has(txid) && !this.fenced.has(txid), 'a transaction is decided once');
    this.decisions.set(txid, outcome);
    this.noteRemembered(txid, seq);
    if (this.decisions.size > this.config.decisionsRememberedMax) {
      this.forget(this.decisions.keys().next().value as string);
    }
  }

  private fence(txid: string, seq = this.nextSeq++): void {
    this.fenced.add(txid);
    this.noteRemembered(txid, seq);
    if (this.fenced.size > this.config.decisionsRememberedMax) {
      this.forget(this.fenced.values().next().value as string);
    }
  }

  private noteRemembered(txid: string, seq: number): void {
    this.rememberedSeq.set(txid, seq);
    if (seq >= this.nextSeq) this.nextSeq = seq + 1;
    this.markChanged('decided', txid);
  }

  private forget(txid: string): void {
    this.decisions.delete(txid);
    this.fenced.delete(txid);
    this.rememberedSeq.delete(txid);
    this.markChanged('decided', txid);
  }

  private markChanged(table: ParticipantChange['table'], key: string): void {
    this.changed.add(`${table}\0${key}`);
  }

  // ---- durability -------------------------------------------------------------------------------

  /**
   * The durable state changed since the last call: a record to write, or none to delete. The
   * shell writes them and syncs before it answers anything the change made possible (a vote, a
   * promise, an accept, a decision).
   */
  takeChanges(): ParticipantChange[] {
    const out: ParticipantChange[] = [];
    for (const entry of this.changed) {
      const split = entry.indexOf('\0');
      const table = entry.slice(0, split) as ParticipantChange['table'];
      const key = entry.slice(split + 1);
      out.push(this.recordOf(table, key));
    }
    this.changed.clear();
    return out;
  }

  /** Changes taken but not written (the store refused them): they are taken again next time. */
  keepChanges(changes: readonly ParticipantChange[]): void {
    for (const change of changes) this.markChanged(change.table, change.key);
  }

  /**
   * A restarted participant takes back what it had synced: its prepared transactions (recovered
   * at once, staggered: their coordinator may be gone), its decisions and fences (in the order
   * they were remembered), and the last commit of each key.
   */
  restore(state: ParticipantState, nowMs: number): void {
    assert(
      this.pendingByTxid.size === 0 && this.decisions.size === 0 && this.fenced.size === 0,
      'only a new participant is restored',
    );
    for (const [txid, r] of state.prepared) {
      const index = r.replicas.findIndex((s) => s.id === this.config.selfId);
      assert(index >= 0, 'a prepared transaction names this server among its replicas');
      assert(!this.pendingByKey.has(r.key), 'a prepared key has one pending transaction');
      const slot = index + 1;
      const tx: PreparedTx = {
        txid,
        key: r.key,
        ...(r.deleted === true ? { deleted: true as const } : { value: r.value }),
        replicas: r.replicas,
        slot,
        votedVersion: r.votedVersion,
        promised: r.promised,
        accepted: r.accepted,
        // What was read back from disk is synced.
        acceptedOutcomeSynced: r.accepted !== undefined,
        highestSeen: r.promised,
        nextRecoveryAtMs: nowMs + this.stagger(slot),
        proposal: undefined,
      };
      this.pendingByKey.set(tx.key, tx);
      this.pendingByTxid.set(txid, tx);
    }
    const decided = [...state.decided].sort(([, a], [, b]) => a.seq - b.seq);
    for (const [txid, r] of decided) {
      if (r.fenced) this.fence(txid, r.seq);
      else this.remember(txid, r.outcome, r.seq);
    }
    for (const [key, r] of state.lastCommits) this.lastCommitByKey.set(key, r);
    this.changed.clear();
  }

  private recordOf(table: ParticipantChange['table'], key: string): ParticipantChange {
    switch (table) {
      case 'prepared': {
        const tx = this.pendingByTxid.get(key);
        if (tx === undefined) return { table, key };
        const record: PreparedRecord = {
          key: tx.key,
          ...(tx.deleted === true ? { deleted: true as const } : { value: tx.value }),
          replicas: tx.replicas,
          votedVersion: tx.votedVersion,
          promised: tx.promised,
          ...(tx.accepted === undefined ? {} : { accepted: tx.accepted }),
        };
        return { table, key, record };
      }
      case 'decided': {
        const seq = this.rememberedSeq.get(key);
        const outcome = this.outcomeOf(key);
        if (seq === undefined || outcome === undefined) return { table, key };
        return { table, key, record: { outcome, fenced: this.fenced.has(key), seq } };
      }
      case 'last-commit': {
        const record = this.lastCommitByKey.get(key);
        return record === undefined ? { table, key } : { table, key, record };
      }
    }
  }
}

const ABORTED: TxOutcome = { state: 'aborted' };

function sameOutcome(a: TxOutcome, b: TxOutcome): boolean {
  return a.state === 'aborted'
    ? b.state === 'aborted'
    : b.state === 'committed' && a.version === b.version;
}

function no(kind: 'aborted' | 'retry', message: string, reason: DhtError['reason']): Vote {
  return { vote: 'no', error: new DhtError(kind, message, reason) };
}

/** Accept `accepted`; the synced flag survives only if the outcome is the one synced. */
function setAccepted(tx: PreparedTx, accepted: Accepted): void {
  tx.acceptedOutcomeSynced =
    tx.acceptedOutcomeSynced &&
    tx.accepted !== undefined &&
    sameOutcome(tx.accepted.outcome, accepted.outcome);
  tx.accepted = accepted;
}
