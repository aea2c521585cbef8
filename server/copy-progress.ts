// How far a server's copy phase has got: a value changed by pure functions (no clock: the shell
// passes its monotonic time in). A copy is one (key, target) pair of the plan, pushed or offered
// (server/rebalance-planner.ts, `copiesOf`); it is done once its target has acknowledged it: an
// offer answered with "held", or the transfer of a value it lacked. The server reports the counts
// to the view leader with its heartbeats and rebalancing reports (lib/messages.ts, `CopyStats`),
// for `dht-client status` and the view leader's page; the copy phase itself never reads them.

import { assert } from '../lib/assert';
import type { CopyStats } from '../lib/messages';

export interface CopyProgress {
  readonly epoch: number;
  readonly copiesTotal: number;
  readonly copiesDone: number;
  /** When the plan was made (the server's monotonic clock). */
  readonly startedMs: number;
  /** When the last copy was acknowledged; undefined while copies remain or the phase was cut. */
  readonly finishedMs: number | undefined;
}

/** A copy phase of `epoch` planned `copiesTotal` copies at `nowMs`. */
export function startCopies(epoch: number, copiesTotal: number, nowMs: number): CopyProgress {
  assert(Number.isSafeInteger(copiesTotal) && copiesTotal >= 0, 'a plan has 0 or more copies');
  return {
    epoch,
    copiesTotal,
    copiesDone: 0,
    startedMs: nowMs,
    finishedMs: copiesTotal === 0 ? nowMs : undefined,
  };
}

/** `copies` more were acknowledged at `nowMs`. */
export function copiesDone(progress: CopyProgress, copies: number, nowMs: number): CopyProgress {
  assert(copies >= 0, 'copies are acknowledged, never taken back');
  const done = progress.copiesDone + copies;
  assert(done <= progress.copiesTotal, 'no more copies are acknowledged than were planned');
  assert(nowMs >= progress.startedMs, 'time never goes backwards');
  return {
    ...progress,
    copiesDone: done,
    finishedMs: done === progress.copiesTotal ? nowMs : undefined,
  };
}

/** The counts as reported, at `nowMs`: the elapsed time stops when the last copy is done. */
export function copyStats(progress: CopyProgress, nowMs: number): CopyStats {
  const until = progress.finishedMs ?? nowMs;
  assert(until >= progress.startedMs, 'time never goes backwards');
  return {
    epoch: progress.epoch,
    copiesDone: progress.copiesDone,
    copiesTotal: progress.copiesTotal,
    elapsedMs: Math.round(until - progress.startedMs),
  };
}
