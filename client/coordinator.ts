// The two-phase-commit coordinator's decision logic, pure: votes and acknowledgments in, the
// messages to send and the final outcome out. The SDK does the sending.
//
//   PREPARING --all yes--> COMMITTING_PRIMARY --ok--> COMMITTING_REST --all ok--> committed
//       |                        |  \--refused/aborted--> ABORTING --> aborted / retry
//       |                        \--timeout------------------------------------> unknown
//       \--any no / unreachable--> ABORTING --> aborted (key busy) or retry (view changing)
//
// The primary (replicas[0]) is the decision point: it hears the commit first, so once it acked,
// the transaction is committed whatever happens to the coordinator; the other replicas learn it
// from the primary if the coordinator dies (server/participant.ts).

import { assert, assertNever, AssertionError } from '../lib/assert';
import { DhtError } from '../lib/errors';
import type { Transport } from '../lib/http-client';

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
  | { readonly type: 'commit'; readonly replica: number; readonly version: number }
  | { readonly type: 'abort'; readonly replica: number };

export type CoordinatorOutcome =
  | { readonly type: 'committed'; readonly version: number }
  | { readonly type: 'failed'; readonly error: DhtError };

type Phase = 'preparing' | 'committing_primary' | 'committing_rest' | 'aborting' | 'done';

export class Coordinator {
  private phase: Phase = 'preparing';
  private started = false;
  private readonly votes: (VoteResult | undefined)[];
  private readonly acksAwaited = new Set<number>();
  private version = 0;
  private failure: DhtError | undefined;
  private commitFailed = false;
  private result: CoordinatorOutcome | undefined;

  constructor(private readonly replicaCount: number) {
    assert(replicaCount >= 1, 'a transaction has at least one replica');
    this.votes = new Array<VoteResult | undefined>(replicaCount).fill(undefined);
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
        if (this.votes.every((v) => v?.type === 'yes')) return this.beginCommit();
        return [];
      case 'aborting':
        // A late vote after the decision: it may have prepared, so it must hear the abort too.
        return mayHavePrepared(vote) ? this.sendAbort(replica) : this.settleIfQuiet();
      case 'committing_primary':
      case 'committing_rest':
      case 'done':
        throw new AssertionError(`vote in phase ${this.phase}`);
      default:
        return assertNever(this.phase);
    }
  }

  onCommitAck(replica: number, ack: AckResult): Send[] {
    assert(this.acksAwaited.delete(replica), 'a commit ack answers a commit sent');
    if (this.phase === 'committing_primary') {
      assert(replica === 0, 'the primary commits first');
      if (ack.type === 'ok') {
        this.phase = 'committing_rest';
        const sends: Send[] = [];
        for (let r = 1; r < this.replicaCount; r++) {
          this.acksAwaited.add(r);
          sends.push({ type: 'commit', replica: r, version: this.version });
        }
        return sends.length > 0 ? sends : this.finish({ type: 'committed', version: this.version });
      }
      const primaryUncertain =
        (ack.type === 'unreachable' && ack.transport !== 'refused') ||
        (ack.type === 'error' && ack.error.kind !== 'aborted');
      if (primaryUncertain) {
        // The primary may have committed (a timeout, or it decided but could not apply): nobody
        // may abort now. The others ask the primary.
        return this.finish({
          type: 'failed',
          error: new DhtError(
            'unknown',
            `commit at the primary: outcome unknown (${ack.type === 'error' ? ack.error.message : ack.transport})`,
          ),
        });
      }
      // Refused (never reached) or refused by the primary (it aborted on its timeout).
      const error =
        ack.type === 'error'
          ? new DhtError(
              'aborted',
              `primary refused the commit: ${ack.error.message}`,
              ack.error.reason,
            )
          : new DhtError('retry', 'primary unreachable; the view is changing');
      this.failure = error;
      this.phase = 'aborting';
      const sends: Send[] = [];
      for (let r = 1; r < this.replicaCount; r++) sends.push(...this.sendAbort(r));
      return sends.length > 0 ? sends : this.settleIfQuiet();
    }
    assert(this.phase === 'committing_rest', `commit ack in phase ${this.phase}`);
    if (ack.type !== 'ok') this.commitFailed = true;
    if (this.acksAwaited.size > 0) return [];
    return this.finish(
      this.commitFailed
        ? {
            type: 'failed',
            error: new DhtError(
              'unknown',
              'committed at the primary; some replicas did not acknowledge',
            ),
          }
        : { type: 'committed', version: this.version },
    );
  }

  onAbortAck(replica: number, ack: AckResult): Send[] {
    assert(this.acksAwaited.delete(replica), 'an abort ack answers an abort sent');
    assert(this.phase === 'aborting', 'abort acks arrive while aborting');
    // A lost abort is harmless: the participant asks the primary, which aborted or never prepared.
    // A replica that answers "already committed" decided commit on its own (primary gone, every
    // peer prepared; see server/participant.ts): the outcome is no longer "nothing applied".
    if (ack.type === 'error' && ack.error.kind === 'rejected') {
      this.failure = new DhtError(
        'unknown',
        `a replica had already committed: ${ack.error.message}`,
      );
    }
    return this.settleIfQuiet();
  }

  private beginCommit(): Send[] {
    this.version = 1 + Math.max(...this.votes.map((v) => (v?.type === 'yes' ? v.version : 0)));
    this.phase = 'committing_primary';
    this.acksAwaited.add(0);
    return [{ type: 'commit', replica: 0, version: this.version }];
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
