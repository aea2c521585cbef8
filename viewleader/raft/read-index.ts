// The leader's queue of linearizable reads waiting for confirmation (§6.4, thesis §6.4 "read
// index"). A read registered at round r is safe once a majority (the leader included) has
// answered a heartbeat of round >= r in the leader's term: those heartbeats were sent after the
// read arrived, so at that moment no newer leader could have committed anything (a newer leader
// needs a majority in a newer term, and this majority was still in ours). The read may then be
// served at `index`, the leader's commit index when the read arrived.
//
// Reads are confirmed in order: confirming a later read also confirms every earlier one, whose
// index is no higher and whose round is no later.
//
// One round at a time (RaftNode.registerReads): a read that arrives while a round is in flight is
// registered for the next round, which goes out once the one in flight is confirmed (or with the
// next periodic heartbeat); so under load one round confirms every read that arrived during the
// one before, instead of a round, and its messages, per read.

import { assert } from '../../lib/assert';
import type { NodeId } from './messages';

export interface ReadState {
  readonly requestId: string;
  /** Serve the read once the state machine has applied this index. */
  readonly index: number;
}

interface PendingRead {
  readonly requestId: string;
  readonly index: number;
  readonly round: number;
  readonly acks: Set<NodeId>;
}

export class ReadIndexQueue {
  private reads: PendingRead[] = [];

  get length(): number {
    return this.reads.length;
  }

  add(requestId: string, index: number, round: number, self: NodeId): void {
    const last = this.reads[this.reads.length - 1];
    assert(last === undefined || last.round <= round, 'read rounds do not go back');
    assert(last === undefined || last.index <= index, 'read indexes do not go back');
    this.reads.push({ requestId, index, round, acks: new Set([self]) });
  }

  /** Some read waits for replies to a round already sent (`sentRound` or earlier). */
  inFlight(sentRound: number): boolean {
    return this.reads.length > 0 && this.reads[0].round <= sentRound;
  }

  /** Some read waits for a round not sent yet (after `sentRound`). */
  waitingForNextRound(sentRound: number): boolean {
    return this.reads.length > 0 && this.reads[this.reads.length - 1].round > sentRound;
  }

  /** `from` answered a heartbeat of `round`: it confirms every read registered at or before. */
  acknowledge(from: NodeId, round: number): void {
    for (const read of this.reads) {
      if (read.round > round) break;
      read.acks.add(from);
    }
  }

  /** Removes and returns the reads a quorum has confirmed (the longest such prefix). */
  takeConfirmed(quorum: number): ReadState[] {
    let confirmed = 0;
    for (let i = this.reads.length - 1; i >= 0; i--) {
      if (this.reads[i].acks.size >= quorum) {
        confirmed = i + 1;
        break;
      }
    }
    return this.reads.splice(0, confirmed).map(({ requestId, index }) => ({ requestId, index }));
  }

  /** Removes every read (the leader stepped down: none of them may be confirmed any more). */
  takeAll(): string[] {
    return this.reads.splice(0).map((read) => read.requestId);
  }
}
