// The two-phase-commit participant as a pure state machine: messages and time in, decisions out.
// It never touches the network, the store or a clock; the server shell feeds it and executes the
// effects it returns. docs/design.md has the protocol and its state diagram:
//
//   (none) --prepare/yes--> PREPARED --commit--> COMMITTED (value applied)
//                              |  \--abort-----> ABORTED
//                              \--timeout: ask the decision point (the primary), then peers
//
// The primary (replicas[0]) is the decision point: the coordinator commits there first, so the
// primary's record is the transaction's outcome. A primary whose prepared transaction times out
// undecided aborts it; a server asked about a transaction it never prepared records an abort, so
// a late prepare can never revive it.

import { assert } from '../lib/assert';
import { DhtError } from '../lib/errors';
import type { DecisionResponse, PrepareRequest, ServerRef } from '../lib/messages';

export interface ParticipantConfig {
  readonly selfId: string;
  readonly prepareTimeoutMs: number;
  readonly decisionRetryMs: number;
  readonly decisionsRememberedMax: number;
}

type Outcome =
  { readonly state: 'committed'; readonly version: number } | { readonly state: 'aborted' };

interface PreparedTx {
  readonly txid: string;
  readonly key: string;
  readonly value: string;
  readonly replicas: readonly ServerRef[];
  /** This participant's version of the key when it voted (peers' are in their answers). */
  readonly votedVersion: number;
  readonly preparedAtMs: number;
  nextAskAtMs: number;
  /** Answers to the current round of termination queries, by server ID. */
  answers: Map<string, DecisionResponse | 'unreachable'>;
}

/** What the shell knows when a prepare arrives. */
export interface PrepareContext {
  readonly epoch: number;
  readonly rebalancing: boolean;
  readonly currentVersion: number;
}

export type Vote =
  | { readonly vote: 'yes'; readonly version: number }
  | { readonly vote: 'no'; readonly error: DhtError };

/** A committed value to write to the store. */
export interface Apply {
  readonly key: string;
  readonly value: string;
  readonly version: number;
}

/** A termination query the shell must send, then report with `onAnswer`. */
export interface Ask {
  readonly txid: string;
  readonly key: string;
  readonly target: ServerRef;
}

/** Something the participant decided on its own (for the shell to log). */
export interface Resolution {
  readonly txid: string;
  readonly key: string;
  readonly outcome: Outcome;
  readonly apply?: Apply;
  readonly why: string;
}

export class Participant {
  private readonly pendingByKey = new Map<string, PreparedTx>();
  private readonly pendingByTxid = new Map<string, PreparedTx>();
  /** Decided transactions, oldest first, bounded by decisionsRememberedMax. */
  private readonly decisions = new Map<string, Outcome>();
  /**
   * Transactions aborted here without ever being prepared here (an abort or a termination query
   * for an unknown txid), so a late prepare is refused. Bounded on their own: anyone can make
   * these up, and they must never push real decisions out.
   */
  private readonly fenced = new Set<string>();
  /**
   * The last transaction committed on each key. While any replica holds a transaction prepared,
   * no newer one can commit on that key (that replica votes no), so the decision point can still
   * answer "committed" after its decision log has forgotten the transaction.
   */
  private readonly lastCommitByKey = new Map<string, { txid: string; version: number }>();

  constructor(private readonly config: ParticipantConfig) {
    assert(config.prepareTimeoutMs > 0, 'prepare timeout is positive');
    assert(config.decisionsRememberedMax > 0, 'some decisions are remembered');
  }

  get pendingCount(): number {
    return this.pendingByKey.size;
  }

  isPending(key: string): boolean {
    return this.pendingByKey.has(key);
  }

  outcomeOf(txid: string): Outcome | undefined {
    return this.decisions.get(txid) ?? (this.fenced.has(txid) ? ABORTED : undefined);
  }

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
    if (this.pendingByKey.has(request.key)) {
      return no('aborted', 'another transaction on this key is pending', 'key_busy');
    }
    if (!request.replicas.some((r) => r.id === this.config.selfId)) {
      throw new DhtError('invalid', 'this server is not among the replicas named', 'bad_request');
    }

    const tx: PreparedTx = {
      txid: request.txid,
      key: request.key,
      value: request.value,
      replicas: request.replicas,
      votedVersion: context.currentVersion,
      preparedAtMs: nowMs,
      nextAskAtMs: nowMs + this.config.prepareTimeoutMs,
      answers: new Map(),
    };
    this.pendingByKey.set(tx.key, tx);
    this.pendingByTxid.set(tx.txid, tx);
    return { vote: 'yes', version: context.currentVersion };
  }

  /** The coordinator's commit. Returns the value to apply, or nothing for a repeat. */
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
    if (version <= tx.votedVersion) {
      // A coordinator chooses 1 + the highest vote; anything else is a malformed commit.
      throw new DhtError(
        'invalid',
        `commit version ${version} must exceed ${tx.votedVersion}`,
        'bad_request',
      );
    }
    return this.decide(tx, { state: 'committed', version });
  }

  /**
   * The coordinator's abort: idempotent; also fences a transaction never prepared here. Once the
   * transaction's primary has left `viewIds`, the survivors decide among themselves (onAnswer) and
   * may already be committing: the coordinator no longer gets a say, and learns "rejected" (its
   * outcome becomes unknown) rather than splitting the replicas.
   */
  abort(txid: string, key: string, viewIds?: ReadonlySet<string>): void {
    const decided = this.outcomeOf(txid);
    if (decided?.state === 'committed') {
      throw new DhtError('rejected', 'transaction already committed', 'transaction_unknown');
    }
    const tx = this.pendingByTxid.get(txid);
    if (tx !== undefined && tx.key !== key) {
      throw new DhtError('invalid', 'the transaction is prepared for another key', 'bad_request');
    }
    if (tx !== undefined) {
      const primary = tx.replicas[0].id;
      if (viewIds !== undefined && primary !== this.config.selfId && !viewIds.has(primary)) {
        throw new DhtError(
          'rejected',
          'the primary left the view; the replicas decide',
          'decided_by_peers',
        );
      }
      this.decide(tx, ABORTED);
    } else if (decided === undefined) {
      this.fence(txid);
    }
  }

  /** Answer a termination query from another participant about `txid` on `key`. */
  answer(txid: string, nowMs: number, key?: string): DecisionResponse {
    const decided = this.outcomeOf(txid);
    if (decided !== undefined) return decided;
    const last = key === undefined ? undefined : this.lastCommitByKey.get(key);
    if (last?.txid === txid) return { state: 'committed', version: last.version };
    const tx = this.pendingByTxid.get(txid);
    if (tx === undefined) {
      // Never prepared here, so the coordinator cannot have collected every yes: abort is safe,
      // and fencing it refuses a late prepare of the same transaction.
      this.fence(txid);
      return ABORTED;
    }
    if (this.isDecisionPoint(tx) && nowMs >= tx.preparedAtMs + this.config.prepareTimeoutMs) {
      this.decide(tx, { state: 'aborted' });
      return { state: 'aborted' };
    }
    return { state: 'prepared', current: tx.votedVersion };
  }

  /**
   * The passage of time. A decision point aborts what timed out undecided; any other participant
   * sends a round of queries: the primary and its peers.
   */
  tick(nowMs: number): { asks: Ask[]; resolutions: Resolution[] } {
    const asks: Ask[] = [];
    const resolutions: Resolution[] = [];
    for (const tx of [...this.pendingByTxid.values()]) {
      if (nowMs < tx.nextAskAtMs) continue;
      if (this.isDecisionPoint(tx)) {
        resolutions.push(this.resolve(tx, { state: 'aborted' }, 'timed out at the decision point'));
        continue;
      }
      tx.nextAskAtMs = nowMs + this.config.decisionRetryMs;
      tx.answers = new Map();
      for (const target of tx.replicas) {
        if (target.id !== this.config.selfId) asks.push({ txid: tx.txid, key: tx.key, target });
      }
    }
    return { asks, resolutions };
  }

  /**
   * A new view was installed. Keys must not move while a transaction on them is undecided, and
   * a commit must not straddle two epochs: the decision point aborts what it has not committed
   * (a commit arriving later is refused, so the coordinator aborts everywhere); every other
   * participant asks for the outcome at the next tick instead of waiting out the prepare timeout.
   */
  epochChanged(nowMs: number): Resolution[] {
    const resolutions: Resolution[] = [];
    for (const tx of [...this.pendingByTxid.values()]) {
      if (this.isDecisionPoint(tx)) {
        resolutions.push(this.resolve(tx, { state: 'aborted' }, 'epoch changed before commit'));
      } else {
        tx.nextAskAtMs = nowMs;
      }
    }
    return resolutions;
  }

  /**
   * An answer to a termination query (`unreachable` when the target could not be asked).
   * `viewIds` is the current view: a primary that has left it will never answer.
   */
  onAnswer(
    txid: string,
    from: ServerRef,
    answer: DecisionResponse | 'unreachable',
    viewIds: ReadonlySet<string>,
  ): Resolution | undefined {
    const tx = this.pendingByTxid.get(txid);
    if (tx === undefined) return undefined; // decided meanwhile: a late answer
    tx.answers.set(from.id, answer);

    if (answer !== 'unreachable' && answer.state === 'committed') {
      return this.resolve(
        tx,
        { state: 'committed', version: answer.version },
        `${from.id} committed`,
      );
    }
    if (answer !== 'unreachable' && answer.state === 'aborted') {
      return this.resolve(tx, { state: 'aborted' }, `${from.id} aborted`);
    }

    // Primary and coordinator both gone (a double failure). Every peer still in the view voted yes
    // and holds the transaction prepared, so commit was a possible decision, and the primary may
    // have committed and served the value: commit, with the version the coordinator would have
    // chosen (one more than every vote), so all survivors agree.
    const primary = tx.replicas[0];
    if (primary.id === this.config.selfId || viewIds.has(primary.id)) return undefined;
    // A server that is not in the view itself (expelled) sees no peers "in the view" and must not
    // take the vacuous "all of them prepared" for a decision.
    if (!viewIds.has(this.config.selfId)) return undefined;
    if (tx.answers.get(primary.id) !== 'unreachable') return undefined;
    let version = tx.votedVersion;
    for (const peer of tx.replicas.slice(1)) {
      if (peer.id === this.config.selfId || !viewIds.has(peer.id)) continue;
      const a = tx.answers.get(peer.id);
      if (a === undefined || a === 'unreachable' || a.state !== 'prepared') return undefined;
      version = Math.max(version, a.current);
    }
    return this.resolve(
      tx,
      { state: 'committed', version: version + 1 },
      'primary left the view; all peers prepared',
    );
  }

  private resolve(tx: PreparedTx, outcome: Outcome, why: string): Resolution {
    const apply = this.decide(tx, outcome);
    return apply === undefined
      ? { txid: tx.txid, key: tx.key, outcome, why }
      : { txid: tx.txid, key: tx.key, outcome, apply, why };
  }

  private isDecisionPoint(tx: PreparedTx): boolean {
    return tx.replicas[0].id === this.config.selfId;
  }

  private decide(tx: PreparedTx, outcome: Outcome): Apply | undefined {
    assert(
      this.pendingByKey.get(tx.key) === tx,
      'a prepared key has exactly one pending transaction',
    );
    this.pendingByKey.delete(tx.key);
    this.pendingByTxid.delete(tx.txid);
    this.remember(tx.txid, outcome);
    if (outcome.state === 'committed') {
      this.lastCommitByKey.set(tx.key, { txid: tx.txid, version: outcome.version });
    }
    return outcome.state === 'committed'
      ? { key: tx.key, value: tx.value, version: outcome.version }
      : undefined;
  }

  private remember(txid: string, outcome: Outcome): void {
    assert(!this.decisions.has(txid) && !this.fenced.has(txid), 'a transaction is decided once');
    this.decisions.set(txid, outcome);
    if (this.decisions.size > this.config.decisionsRememberedMax) {
      this.decisions.delete(this.decisions.keys().next().value as string);
    }
  }

  private fence(txid: string): void {
    this.fenced.add(txid);
    if (this.fenced.size > this.config.decisionsRememberedMax) {
      this.fenced.delete(this.fenced.values().next().value as string);
    }
  }
}

const ABORTED: Outcome = { state: 'aborted' };

function no(kind: 'aborted' | 'retry', message: string, reason: DhtError['reason']): Vote {
  return { vote: 'no', error: new DhtError(kind, message, reason) };
}
