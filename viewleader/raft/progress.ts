// What a leader knows of one follower's log, and how fast it may send to it (etcd raft's
// tracker.Progress, simplified):
//
//              success reply                         snapshot acknowledged
//   +-------+ --------------> +-----------+       +----------+ ------------> (replicate)
//   | probe |                 | replicate |       | snapshot |
//   +-------+ <-------------- +-----------+       +----------+ --election timeout--> (probe)
//       |         reject                               ^
//       +-----next entry compacted away----------------+
//
// probe:     the leader does not know where the logs diverge: one append at a time, the next one
//            after a reply or a heartbeat reply (so a lost message costs one heartbeat).
// replicate: the follower keeps up: appends are pipelined, at most APPENDS_IN_FLIGHT_MAX.
// snapshot:  an InstallSnapshot is on its way; nothing else is sent until it is acknowledged, or
//            an election timeout passes (then it was probably lost, and is sent again).

import { assert } from '../../lib/assert';
import { APPENDS_IN_FLIGHT_MAX } from './limits';

// Module-scope aliases: a global lookup costs far more than a local one in vm contexts (Jest's).
const { max, min } = Math;

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  /** The highest index known to match the leader's log (§5.3 matchIndex). */
  matchIndex = 0;
  /** The next index to send (§5.3 nextIndex). */
  nextIndex: number;
  state: ProgressState = 'probe';
  /** probe: an append is out and not yet answered. */
  private probeSent = false;
  /** replicate: the last index of each append in flight, ascending. */
  private inflight: number[] = [];
  /** snapshot: the index of the snapshot sent, and the ticks since. */
  snapshotIndex = 0;
  snapshotWaitTicks = 0;
  /** Heard from since the last check-quorum (thesis §6.2). */
  recentActive = false;

  constructor(nextIndex: number) {
    assert(nextIndex >= 1, 'next index starts at 1 or later');
    this.nextIndex = nextIndex;
  }

  /** Nothing more may be sent now. */
  get paused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflight.length >= APPENDS_IN_FLIGHT_MAX;
      case 'snapshot':
        return true;
    }
  }

  becomeProbe(): void {
    this.state = 'probe';
    this.nextIndex = this.matchIndex + 1;
    this.probeSent = false;
    this.inflight = [];
  }

  becomeReplicate(): void {
    this.state = 'replicate';
    this.nextIndex = this.matchIndex + 1;
    this.probeSent = false;
    this.inflight = [];
  }

  becomeSnapshot(snapshotIndex: number): void {
    assert(snapshotIndex > this.matchIndex, 'a snapshot is sent only to a follower behind it');
    this.state = 'snapshot';
    this.snapshotIndex = snapshotIndex;
    this.snapshotWaitTicks = 0;
    this.inflight = [];
  }

  /** An append went out whose last entry is `lastIndex` (prevIndex if it carried none). */
  sent(lastIndex: number, entryCount: number): void {
    switch (this.state) {
      case 'probe':
        this.probeSent = true;
        return;
      case 'replicate':
        if (entryCount === 0) return;
        assert(lastIndex >= this.nextIndex, 'pipelined appends move forward');
        this.nextIndex = lastIndex + 1;
        this.inflight.push(lastIndex);
        return;
      case 'snapshot':
        assert(false, 'nothing but the snapshot is sent in snapshot state');
    }
  }

  /**
   * A success reply: the follower matches up to `matchIndex`. False if it told nothing new (a
   * delayed or duplicated reply).
   */
  acknowledged(matchIndex: number): boolean {
    this.inflight = this.inflight.filter((last) => last > matchIndex);
    if (matchIndex <= this.matchIndex) return false;
    this.matchIndex = matchIndex;
    this.nextIndex = max(this.nextIndex, matchIndex + 1);
    this.probeSent = false;
    return true;
  }

  /**
   * A rejection of the append after `rejectedIndex`; `probeFrom` is where the conflict hint says
   * to look next. False if the rejection is stale (etcd raft's MaybeDecrTo).
   */
  rejected(rejectedIndex: number, probeFrom: number): boolean {
    if (this.state === 'replicate') {
      if (rejectedIndex <= this.matchIndex) return false;
      this.becomeProbe();
      return true;
    }
    // snapshot: only the snapshot's acknowledgement (or its timeout) moves on.
    if (this.state === 'snapshot') return false;
    // probe: only the reply to the append sent last tells something.
    if (this.nextIndex - 1 !== rejectedIndex) return false;
    this.nextIndex = max(min(rejectedIndex, probeFrom + 1), this.matchIndex + 1);
    this.probeSent = false;
    return true;
  }

  /** A heartbeat reply: the follower is alive, so sending may resume (lost messages). */
  heartbeatAcknowledged(): void {
    if (this.state === 'probe') this.probeSent = false;
    if (this.state === 'replicate' && this.paused) this.inflight.shift();
  }
}
