// What a server believes about the view, and where it is in the current epoch's rebalance: a
// pure state machine. View acknowledgments and phase completions go in; effects come out, for
// the server shell (server/storage-server.ts) to execute. docs/design.md, "Rebalancing":
//
//   idle --ack of a new epoch--> COPYING --copy done--> COPIED --ack: placement = epoch--> idle
//     ^                            |  (report `copied`)        (cleanup, report `done`)
//     +------ ack of a newer epoch supersedes either phase: install it, copy again ------+
//
// The epoch only goes up here: heartbeats report the highest epoch installed, and the view leader
// hands out epochs above every reported one, also after it restarts (viewleader/membership.ts).
// So a view with an older epoch than the one held is a stale answer and is ignored, and an epoch
// names one view. Every copy phase is one *run*, numbered by this tracker, which also ends when
// the server is expelled. A report the view leader has not acknowledged is sent again with every
// heartbeat acknowledgment.

import { assert } from '../lib/assert';
import { LEASE_SHARE_OF_FAILURE_TIMEOUT } from '../lib/limits';
import type { RebalancePhase, View } from '../lib/messages';

export type RebalanceProgress =
  | { readonly state: 'idle' }
  | { readonly state: 'copying'; readonly epoch: number; readonly run: number }
  | {
      readonly state: 'copied';
      readonly epoch: number;
      readonly run: number;
      readonly drop: readonly string[];
    };

export type ViewEffect =
  /** A new epoch: decide prepared transactions, then copy for `view` while `run` is current. */
  | { readonly type: 'install'; readonly view: View; readonly run: number }
  /** The barrier passed: every key is on all its replicas, so delete `drop`. */
  | { readonly type: 'cleanup'; readonly epoch: number; readonly drop: readonly string[] }
  /** Tell the view leader (then `onReported`). */
  | { readonly type: 'report'; readonly epoch: number; readonly phase: RebalancePhase };

/** No epoch: before the first acknowledgment, and after the view leader expelled this server. */
export const NO_EPOCH = -1;

export class ViewTracker {
  private currentEpoch = NO_EPOCH;
  /** The highest epoch ever installed; unlike `currentEpoch`, kept when expelled. */
  private highestEpoch = NO_EPOCH;
  private currentIds: ReadonlySet<string> = new Set();
  private phase: RebalanceProgress = { state: 'idle' };
  private unreported: { readonly epoch: number; readonly phase: RebalancePhase } | undefined;
  /** Copy runs started so far; the current one is `runs`. */
  private runs = 0;
  /** Until when (this server's monotonic clock) it is sure the view leader has not expelled it. */
  private leaseUntilMs = Number.NEGATIVE_INFINITY;

  get epoch(): number {
    return this.currentEpoch;
  }

  /**
   * What a heartbeat reports: the highest epoch installed, also after an expulsion (a restarted
   * view leader may accept this server again, and must not hand it an older epoch). Undefined
   * before the first view.
   */
  get reportedEpoch(): number | undefined {
    return this.highestEpoch === NO_EPOCH ? undefined : this.highestEpoch;
  }

  /** The IDs of the servers in the view (for the participant's termination protocol). */
  get viewIds(): ReadonlySet<string> {
    return this.currentIds;
  }

  get progress(): RebalanceProgress {
    return this.phase;
  }

  /**
   * True from installing a view until this server's part of its rebalance is done, and while it
   * is in no view at all: participants vote no and reads are refused meanwhile.
   */
  get rebalancing(): boolean {
    return this.currentEpoch === NO_EPOCH || this.phase.state !== 'idle';
  }

  /**
   * The view leader accepted a heartbeat sent at `sentAtMs`: it expels this server no sooner than
   * `leaseMs` after receiving it, which was after `sentAtMs`. A server paused past that (SIGSTOP,
   * a long GC, a VM migration) may have been expelled and its keys rewritten elsewhere, and its
   * monotonic clock ran on meanwhile: it must not serve its view from memory until a new
   * heartbeat is acknowledged.
   */
  renewLease(sentAtMs: number, leaseMs: number): void {
    assert(leaseMs > 0, 'a lease has a positive length');
    const until = sentAtMs + leaseMs * LEASE_SHARE_OF_FAILURE_TIMEOUT;
    if (until > this.leaseUntilMs) this.leaseUntilMs = until;
  }

  /** In a view, and sure it is still in it: reads and prepares may be served. */
  holdsLease(nowMs: number): boolean {
    return this.currentEpoch !== NO_EPOCH && nowMs < this.leaseUntilMs;
  }

  /** `run` is the copy run of the view this server holds now (not superseded, not expelled). */
  isCurrentRun(run: number): boolean {
    return run === this.runs && this.currentEpoch !== NO_EPOCH;
  }

  /** Run `run` copied and waits for the other servers to finish copying. */
  waitingAtBarrier(run: number): boolean {
    return this.phase.state === 'copied' && this.phase.run === run;
  }

  /** A heartbeat acknowledgment carrying the view leader's current view. */
  onAck(view: View): ViewEffect[] {
    if (view.epoch > this.highestEpoch) {
      this.currentEpoch = view.epoch;
      this.highestEpoch = view.epoch;
      this.currentIds = new Set(view.servers.map((s) => s.id));
      this.runs += 1;
      this.phase = { state: 'copying', epoch: view.epoch, run: this.runs };
      this.unreported = undefined;
      return [{ type: 'install', view, run: this.runs }];
    }
    // Older than the view held (a slow answer), or not newer than the one held when expelled.
    if (view.epoch !== this.currentEpoch) return [];
    const effects: ViewEffect[] = [];
    const phase = this.phase;
    if (phase.state === 'copied' && view.placement.epoch === view.epoch) {
      assert(phase.epoch === view.epoch, 'a phase belongs to the current epoch');
      this.phase = { state: 'idle' };
      this.unreported = { epoch: view.epoch, phase: 'done' };
      effects.push({ type: 'cleanup', epoch: view.epoch, drop: phase.drop });
    }
    if (this.unreported !== undefined) effects.push({ type: 'report', ...this.unreported });
    return effects;
  }

  /** Copy run `run` finished; `drop` is what it deletes after the barrier. */
  onCopied(run: number, drop: readonly string[]): ViewEffect[] {
    if (!this.isCurrentRun(run)) return []; // superseded (or expelled) meanwhile
    const phase = this.phase;
    assert(phase.state === 'copying' && phase.run === run, 'a copy run ends once');
    this.phase = { state: 'copied', epoch: phase.epoch, run, drop };
    this.unreported = { epoch: phase.epoch, phase: 'copied' };
    return [{ type: 'report', epoch: phase.epoch, phase: 'copied' }];
  }

  /** The view leader acknowledged a report. */
  onReported(epoch: number, phase: RebalancePhase): void {
    if (this.unreported?.epoch === epoch && this.unreported.phase === phase) {
      this.unreported = undefined;
    }
  }

  /**
   * The view leader rejected this server as expired: it is in no view any more and must not
   * serve replicated requests for the epoch it knew. Its ID is rejected forever.
   */
  onExpelled(): void {
    this.currentEpoch = NO_EPOCH;
    this.leaseUntilMs = Number.NEGATIVE_INFINITY;
    this.currentIds = new Set();
    this.phase = { state: 'idle' };
    this.unreported = undefined;
    this.runs += 1; // no run in progress is current any more
  }
}
