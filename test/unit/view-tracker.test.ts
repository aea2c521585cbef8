// The server's view and rebalance progress (server/view-tracker.ts), as short scenarios.

import { AssertionError } from '../../lib/assert';
import type { ServerRef, View } from '../../lib/messages';
import { NO_EPOCH, ViewTracker } from '../../server/view-tracker';

const A: ServerRef = { id: 'a', address: '127.0.0.1:38000' };
const B: ServerRef = { id: 'b', address: '127.0.0.1:38001' };
const C: ServerRef = { id: 'c', address: '127.0.0.1:38002' };

function view(epoch: number, servers: ServerRef[], placementEpoch: number): View {
  return {
    epoch,
    servers,
    rebalancing: placementEpoch !== epoch,
    placement: { epoch: placementEpoch, servers: placementEpoch === 0 ? [] : servers },
  };
}

/** A tracker that installed epoch 1 and finished copying it (report acknowledged). */
function atBarrier(drop: string[] = ['x']): ViewTracker {
  const tracker = new ViewTracker();
  tracker.onAck(view(1, [A, B], 0));
  tracker.onCopied(1, drop);
  tracker.onReported(1, 'copied');
  return tracker;
}

test('before its first acknowledgment a server has no epoch and serves nothing replicated', () => {
  const tracker = new ViewTracker();
  expect(tracker.epoch).toBe(NO_EPOCH);
  expect(tracker.rebalancing).toBe(true);
  expect(tracker.viewIds.size).toBe(0);
});

test('a new epoch installs the view and starts the copy phase', () => {
  const tracker = new ViewTracker();
  const v1 = view(1, [A, B], 0);
  expect(tracker.onAck(v1)).toEqual([{ type: 'install', view: v1, run: 1 }]);
  expect(tracker.epoch).toBe(1);
  expect(tracker.viewIds).toEqual(new Set(['a', 'b']));
  expect(tracker.progress).toEqual({ state: 'copying', epoch: 1, run: 1 });
  expect(tracker.rebalancing).toBe(true);
  // The same epoch again: nothing to do while copying.
  expect(tracker.onAck(v1)).toEqual([]);
});

test('copied, reported, then the barrier: cleanup and done, once', () => {
  const tracker = new ViewTracker();
  tracker.onAck(view(1, [A, B], 0));
  expect(tracker.onCopied(1, ['x', 'y'])).toEqual([{ type: 'report', epoch: 1, phase: 'copied' }]);
  expect(tracker.waitingAtBarrier(1)).toBe(true);
  expect(tracker.rebalancing).toBe(true);
  tracker.onReported(1, 'copied');
  // Other servers still copying: the placement is behind, so wait.
  expect(tracker.onAck(view(1, [A, B], 0))).toEqual([]);
  // Every server copied: the placement is this epoch.
  expect(tracker.onAck(view(1, [A, B], 1))).toEqual([
    { type: 'cleanup', epoch: 1, drop: ['x', 'y'] },
    { type: 'report', epoch: 1, phase: 'done' },
  ]);
  expect(tracker.rebalancing).toBe(false);
  expect(tracker.waitingAtBarrier(1)).toBe(false);
  tracker.onReported(1, 'done');
  expect(tracker.onAck(view(1, [A, B], 1))).toEqual([]);
});

test('an unacknowledged copied report is sent again with the next acknowledgment', () => {
  const tracker = new ViewTracker();
  tracker.onAck(view(1, [A, B], 0));
  tracker.onCopied(1, []); // the view leader did not answer
  expect(tracker.onAck(view(1, [A, B], 0))).toEqual([
    { type: 'report', epoch: 1, phase: 'copied' },
  ]);
  tracker.onReported(1, 'copied');
  expect(tracker.onAck(view(1, [A, B], 0))).toEqual([]);
});

test('an unacknowledged done report is sent again with the next acknowledgment', () => {
  const tracker = atBarrier();
  tracker.onAck(view(1, [A, B], 1)); // cleanup + done, not acknowledged
  expect(tracker.onAck(view(1, [A, B], 1))).toEqual([{ type: 'report', epoch: 1, phase: 'done' }]);
  tracker.onReported(1, 'done');
  expect(tracker.onAck(view(1, [A, B], 1))).toEqual([]);
});

test('a newer epoch during the copy phase supersedes it: the late copy result is ignored', () => {
  const tracker = new ViewTracker();
  tracker.onAck(view(1, [A, B], 0));
  const v2 = view(2, [A, B, C], 0);
  expect(tracker.onAck(v2)).toEqual([{ type: 'install', view: v2, run: 2 }]);
  expect(tracker.onCopied(1, ['x'])).toEqual([]);
  expect(tracker.progress).toEqual({ state: 'copying', epoch: 2, run: 2 });
});

test('a newer epoch at the barrier supersedes it: nothing is deleted for the old epoch', () => {
  const tracker = atBarrier(['x']);
  const v2 = view(2, [A], 0);
  expect(tracker.onAck(v2)).toEqual([{ type: 'install', view: v2, run: 2 }]);
  expect(tracker.waitingAtBarrier(1)).toBe(false);
  // The old epoch's placement arriving late changes nothing.
  expect(tracker.onAck({ ...v2, placement: { epoch: 1, servers: [A, B] } })).toEqual([]);
});

test('a report for a superseded epoch is not re-sent', () => {
  const tracker = new ViewTracker();
  tracker.onAck(view(1, [A, B], 0));
  tracker.onCopied(1, []); // report not acknowledged
  tracker.onAck(view(2, [A], 0));
  expect(tracker.onAck(view(2, [A], 0))).toEqual([]);
});

test('expelled by the view leader: no epoch, refuses replicated requests', () => {
  const tracker = atBarrier();
  tracker.onExpelled();
  expect(tracker.epoch).toBe(NO_EPOCH);
  expect(tracker.rebalancing).toBe(true);
  expect(tracker.viewIds.size).toBe(0);
  expect(tracker.waitingAtBarrier(1)).toBe(false);
});

test('a copy phase ends once', () => {
  const tracker = atBarrier();
  expect(() => tracker.onCopied(1, [])).toThrow(AssertionError);
});

test('after a view leader restart an epoch number comes back; a stale copy run still cannot pass', () => {
  const tracker = new ViewTracker();
  const old7 = view(7, [A, B], 6);
  expect(tracker.onAck(old7)).toEqual([{ type: 'install', view: old7, run: 1 }]);
  // The view leader restarts and counts again from 1; later it reaches epoch 7 once more.
  const restarted = view(1, [A], 0);
  expect(tracker.onAck(restarted)).toEqual([{ type: 'install', view: restarted, run: 2 }]);
  const new7 = view(7, [A, C], 6);
  expect(tracker.onAck(new7)).toEqual([{ type: 'install', view: new7, run: 3 }]);
  // The first run (old epoch 7) finishes late: ignored, although the epoch number matches.
  expect(tracker.isCurrentRun(1)).toBe(false);
  expect(tracker.onCopied(1, ['stale'])).toEqual([]);
  expect(tracker.progress).toEqual({ state: 'copying', epoch: 7, run: 3 });
});

test('after a view leader restart, the same epoch with other servers is a new view', () => {
  const tracker = new ViewTracker();
  tracker.onAck(view(1, [A, B], 0));
  const other = view(1, [A, C], 0);
  expect(tracker.onAck(other)).toEqual([{ type: 'install', view: other, run: 2 }]);
  expect(tracker.viewIds).toEqual(new Set(['a', 'c']));
});

test('done here but the view leader still waits (it restarted): report done again', () => {
  const tracker = atBarrier();
  tracker.onAck(view(1, [A, B], 1)); // cleanup, done reported...
  tracker.onReported(1, 'done'); // ...and acknowledged, by the view leader that then restarted
  // The restarted view leader has the same epoch and servers, waiting for reports.
  expect(tracker.onAck(view(1, [A, B], 0))).toEqual([{ type: 'report', epoch: 1, phase: 'done' }]);
  // Once it has them all, nothing more is sent.
  expect(tracker.onAck(view(1, [A, B], 1))).toEqual([]);
});
