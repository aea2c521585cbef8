// The two-phase-commit coordinator's decision logic, pure: votes and acknowledgments in, the
// messages to send and the final outcome out. The SDK does the sending.
//
//   PREPARING --all yes--> ACCEPTING --majority accepted--> COMMITTING --all applied--> committed
//       |                      |                                   \--one did not----> unknown
//       |                      |  \--no majority possible, none accepted--> retry / aborted
//       |                      \--some accepted, or no answer----------------> unknown
//       \--any no / unreachable--> ABORTING --> aborted (key busy) or retry (view changing)
//
// The outcome is agreed by the replicas with single-decree Paxos (server/participant.ts): the
// coordinator owns ballot 0 and proposes commit once every replica voted yes. The commit is
// decided (chosen) once a majority of the replicas accepted it; only then is it sent as the
// decision, and replicas apply it. A coordinator that never proposed commit may abort outright:
// no replica can ever accept a commit then, so abort is the only possible outcome. A decision
// whose answer was lost is sent again (COMMIT_DELIVERY_ATTEMPTS in all): it is idempotent.

import { assert, assertNever, AssertionError } from '../lib/assert';
import { majority } from '../lib/ballot';
import { DhtError } from '../lib/errors';
import type { Transport } from '../lib/http-client';
import { COMMIT_DELIVERY_ATTEMPTS } from '../lib/limits';

export type VoteResult =
  | { readonly type: 'yes'; readonly version: number }
  | { readonly type: 'no'; readonly error: DhtError }
  | { readonly type: 'unreachable'; readonly transport: Transport };

export type AckResult =
  | { readonly type: 'ok' }
  | { readonly type: 'error'; readonly error: DhtError }
  | { readonly type: 'unreachable'; readonly transport: Transport };

export type Send =
  | { readonly type: 'prepare'; readonly replica: number }
  /** Phase 2 of ballot 0: accept the commit at `version`. */
  | { readonly type: 'accept'; readonly replica: number; readonly version: number }
  /** The decision: commit is chosen, apply it. */
  | { readonly type: 'commit'; readonly replica: number; readonly version: number }
  | { readonly type: 'abort'; readonly replica: number };

export type CoordinatorOutcome =
  | { readonly type: 'committed'; readonly version: number }
  | { readonly type: 'failed'; readonly error: DhtError };

export interface CoordinatorOptions {
  /**
   * Send the decision to the primary first and the others once it acknowledged (the contract's
   * DHT_FAULT_PAUSE_AFTER_PRIMARY_COMMIT_MS hook needs that moment); otherwise to all at once.
   */
  readonly primaryLearnsFirst?: boolean;
}

type Phase = 'preparing' | 'accepting' | 'committing' | 'aborting' | 'done';

export class Coordinator {
  private phase: Phase = 'preparing';
  private started = false;
  private readonly votes: (VoteResult | undefined)[];
  private readonly acceptAnswers: (AckResult | undefined)[];
  private readonly acksAwaited = new Set<number>();
  private readonly commitsSent: number[];
  private version = 0;
  private failure: DhtError | undefined;
  private commitFailed = false;
  private result: CoordinatorOutcome | undefined;

  constructor(
    private readonly replicaCount: number,
    private readonly options: CoordinatorOptions = {},
  ) {
    assert(replicaCount >= 1, 'a transaction has at least one replica');
    this.votes = new Array<VoteResult | undefined>(replicaCount).fill(undefined);
    this.acceptAnswers = new Array<AckResult | undefined>(replicaCount).fill(undefined);
    this.commitsSent = new Array<number>(replicaCount).fill(0);
  }

  get outcome(): CoordinatorOutcome | undefined {
    return this.result;
  }

  start(): Send[] {
    assert(!this.started && this.phase === 'preparing', 'start once');
    this.started = true;
    return this.votes.map((_, replica) => ({ type: 'prepare', replica }));
  }

  onVote(replica: number, vote: VoteResult): Send[] {
    assert(this.votes[replica] === undefined, 'one vote per replica');
    this.votes[replica] = vote;
    switch (this.phase) {
      case 'preparing':
        if (vote.type !== 'yes') return this.beginAbort(abortErrorFor(vote));
        if (this.votes.every((v) => v?.type === 'yes')) return this.beginAccept();
        return [];
      case 'aborting':
        // A late vote after the decision: it may have prepared, so it must hear the abort too.
        return mayHavePrepared(vote) ? this.sendAbort(replica) : this.settleIfQuiet();
      case 'accepting':
      case 'committing':
      case 'done':
        throw new AssertionError(`vote in phase ${this.phase}`);
      default:
        return assertNever(this.phase);
    }
  }

  onAcceptAck(replica: number, ack: AckResult): Send[] {
    assert(this.version > 0, 'accepts are sent once every replica voted yes');
    assert(this.acceptAnswers[replica] === undefined, 'one answer per accept sent');
    this.acceptAnswers[replica] = ack;
    if (this.phase !== 'accepting') return []; // chosen already: a late answer changes nothing
    const accepted = this.acceptAnswers.filter((a) => a?.type === 'ok').length;
    if (accepted >= majority(this.replicaCount)) return this.beginCommit();
    if (this.acceptAnswers.some((a) => a === undefined)) return [];

    // Every replica answered and no majority accepted: the commit is not chosen now. If none
    // accepted it, none ever will (ballot 0 is never sent again, and a recovery proposes commit
    // only where it finds one accepted): nothing was applied. Otherwise a recovery may still
    // choose it.
    const refusals = this.acceptAnswers.filter(
      (a): a is AckResult => a !== undefined && definitelyRefused(a),
    );
    if (accepted === 0 && refusals.length === this.replicaCount) {
      const viewChanged = refusals.some((a) => a.type !== 'error' || a.error.kind === 'retry');
      return this.finish({
        type: 'failed',
        error: viewChanged
          ? new DhtError('retry', 'the view changed before the commit; nothing applied')
          : new DhtError(
              'aborted',
              'the replicas recovered the transaction before the commit (prepare timeout); nothing applied',
            ),
      });
    }
    return this.finish({
      type: 'failed',
      error: new DhtError(
        'unknown',
        `commit accepted by ${accepted} of ${this.replicaCount} replicas (${describeAnswers(this.acceptAnswers)}): the replicas decide`,
      ),
    });
  }

  onCommitAck(replica: number, ack: AckResult): Send[] {
    assert(this.acksAwaited.delete(replica), 'a commit ack answers a commit sent');
    assert(this.phase === 'committing', `commit ack in phase ${this.phase}`);
    if (answerLost(ack) && this.commitsSent[replica] < COMMIT_DELIVERY_ATTEMPTS) {
      return this.commitTo([replica]);
    }
    if (ack.type !== 'ok') this.commitFailed = true;
    if (replica === 0 && this.options.primaryLearnsFirst === true && this.replicaCount > 1) {
      return this.commitTo(Array.from({ length: this.replicaCount - 1 }, (_, i) => i + 1));
    }
    if (this.acksAwaited.size > 0) return [];
    return this.finish(
      this.commitFailed
        ? {
            type: 'failed',
            error: new DhtError(
              'unknown',
              'committed (chosen by the replicas), but some replicas did not acknowledge applying it',
            ),
          }
        : { type: 'committed', version: this.version },
    );
  }

  onAbortAck(replica: number, ack: AckResult): Send[] {
    assert(this.acksAwaited.delete(replica), 'an abort ack answers an abort sent');
    assert(this.phase === 'aborting', 'abort acks arrive while aborting');
    // A lost abort is harmless: no replica accepted a commit, so any recovery chooses abort. A
    // refusal ("a commit was accepted here") means a replica disagrees about what was proposed:
    // report it rather than claim nothing was applied.
    if (ack.type === 'error' && ack.error.kind === 'rejected') {
      this.failure = new DhtError('unknown', `a replica refused the abort: ${ack.error.message}`);
    }
    return this.settleIfQuiet();
  }

  private beginAccept(): Send[] {
    this.version = 1 + Math.max(...this.votes.map((v) => (v?.type === 'yes' ? v.version : 0)));
    this.phase = 'accepting';
    return this.votes.map((_, replica) => ({ type: 'accept', replica, version: this.version }));
  }

  private beginCommit(): Send[] {
    this.phase = 'committing';
    const all = Array.from({ length: this.replicaCount }, (_, i) => i);
    return this.commitTo(this.options.primaryLearnsFirst === true ? [0] : all);
  }

  private commitTo(replicas: readonly number[]): Send[] {
    for (const r of replicas) {
      this.acksAwaited.add(r);
      this.commitsSent[r] += 1;
    }
    return replicas.map((replica) => ({ type: 'commit', replica, version: this.version }));
  }

  private beginAbort(error: DhtError): Send[] {
    this.failure = error;
    this.phase = 'aborting';
    const sends: Send[] = [];
    this.votes.forEach((vote, replica) => {
      if (vote !== undefined && mayHavePrepared(vote)) sends.push(...this.sendAbort(replica));
    });
    return sends.length > 0 ? sends : this.settleIfQuiet();
  }

  private sendAbort(replica: number): Send[] {
    this.acksAwaited.add(replica);
    return [{ type: 'abort', replica }];
  }

  /** Aborting ends when every vote is in and every abort sent was answered. */
  private settleIfQuiet(): Send[] {
    if (this.phase !== 'aborting') return [];
    if (this.acksAwaited.size > 0 || this.votes.some((v) => v === undefined)) return [];
    assert(this.failure !== undefined, 'an abort has a cause');
    return this.finish({ type: 'failed', error: this.failure });
  }

  private finish(outcome: CoordinatorOutcome): Send[] {
    this.phase = 'done';
    this.result = outcome;
    return [];
  }
}

/** What each replica answered ("ok; timeout; retry: ..."), for an outcome the client cannot settle. */
function describeAnswers(answers: readonly (AckResult | undefined)[]): string {
  return answers
    .map((a) => {
      if (a === undefined) return 'no answer';
      if (a.type === 'ok') return 'ok';
      if (a.type === 'unreachable') return a.transport;
      return `${a.error.kind}: ${a.error.message}`;
    })
    .join('; ');
}

/** The replica certainly did not accept: it said so, or the connection was refused. */
function definitelyRefused(ack: AckResult): boolean {
  if (ack.type === 'unreachable') return ack.transport === 'refused';
  return ack.type === 'error' && ack.error.kind !== 'unknown';
}

/** No answer came back, but the replica's process may be alive: a timeout or a broken connection. */
function answerLost(ack: AckResult): boolean {
  return ack.type === 'unreachable' && ack.transport !== 'refused';
}

function mayHavePrepared(vote: VoteResult): boolean {
  return vote.type === 'yes' || (vote.type === 'unreachable' && vote.transport !== 'refused');
}

function abortErrorFor(vote: Exclude<VoteResult, { type: 'yes' }>): DhtError {
  if (vote.type === 'unreachable') {
    return new DhtError(
      'retry',
      `a replica is unreachable (${vote.transport}); the view is changing`,
    );
  }
  // A refusal that is about the view (epoch, ID, rebalancing) says: retry later. Key busy: aborted.
  const kind = vote.error.kind === 'retry' ? 'retry' : 'aborted';
  return new DhtError(kind, `replica voted no: ${vote.error.message}`, vote.error.reason);
}
