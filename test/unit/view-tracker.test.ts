// The server's view and rebalance progress (server/view-tracker.ts), as short scenarios.

import { LEASE_SHARE_OF_FAILURE_TIMEOUT } from '../../lib/limits';
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

test('an older epoch is a stale answer: ignored, whatever its servers and placement', () => {
  const tracker = new ViewTracker();
  const v7 = view(7, [A, B], 6);
  expect(tracker.onAck(v7)).toEqual([{ type: 'install', view: v7, run: 1 }]);
  expect(tracker.onAck(view(6, [A, B], 6))).toEqual([]);
  expect(tracker.onAck(view(1, [A], 0))).toEqual([]);
  expect(tracker.onAck(view(3, [A, C], 3))).toEqual([]); // not even its "barrier" counts
  expect(tracker.epoch).toBe(7);
  expect(tracker.viewIds).toEqual(new Set(['a', 'b']));
  expect(tracker.progress).toEqual({ state: 'copying', epoch: 7, run: 1 });
});

test('a restarted view leader hands out a higher epoch: a new view; the old run cannot pass', () => {
  const tracker = new ViewTracker();
  tracker.onAck(view(7, [A, B], 6));
  expect(tracker.reportedEpoch).toBe(7); // what the heartbeat to the restarted one says
  // It counts on from 7 and the servers rejoin one at a time: epochs 8, 9, ...
  const rejoined = view(9, [A, C], 8);
  expect(tracker.onAck(rejoined)).toEqual([{ type: 'install', view: rejoined, run: 2 }]);
  expect(tracker.isCurrentRun(1)).toBe(false);
  expect(tracker.onCopied(1, ['stale'])).toEqual([]);
  expect(tracker.progress).toEqual({ state: 'copying', epoch: 9, run: 2 });
});

test('the reported epoch: none before the first view, then the highest installed, kept when expelled', () => {
  const tracker = new ViewTracker();
  expect(tracker.reportedEpoch).toBeUndefined();
  tracker.onAck(view(3, [A, B], 0));
  expect(tracker.reportedEpoch).toBe(3);
  tracker.onExpelled();
  expect(tracker.epoch).toBe(NO_EPOCH);
  expect(tracker.reportedEpoch).toBe(3);
  // Expelled, an ack of the epoch it held installs nothing; only a newer one does (a restarted
  // view leader that accepts this server again).
  expect(tracker.onAck(view(3, [A, B], 3))).toEqual([]);
  expect(tracker.epoch).toBe(NO_EPOCH);
  const v4 = view(4, [A], 3);
  expect(tracker.onAck(v4)).toEqual([{ type: 'install', view: v4, run: 3 }]);
  expect(tracker.epoch).toBe(4);
  expect(tracker.rebalancing).toBe(true);
});

test('done and acknowledged: acks of a view still rebalancing (others at work) send nothing', () => {
  const tracker = atBarrier();
  tracker.onAck(view(1, [A, B], 1)); // cleanup, done reported...
  tracker.onReported(1, 'done'); // ...and acknowledged
  // The view leader waits for the other servers' reports; this one has nothing more to say.
  expect(tracker.onAck({ ...view(1, [A, B], 1), rebalancing: true })).toEqual([]);
});

describe('the lease: serving only while sure to be in the view', () => {
  const LEASE_MS = 1000;

  test('none before the first view, nor without an acknowledged heartbeat', () => {
    const tracker = new ViewTracker();
    expect(tracker.holdsLease(0)).toBe(false);
    tracker.onAck(view(1, [A], 0));
    expect(tracker.holdsLease(0)).toBe(false);
  });

  test('held for the configured share of the failure timeout after the heartbeat was sent', () => {
    const tracker = new ViewTracker();
    tracker.onAck(view(1, [A], 0));
    tracker.renewLease(100, LEASE_MS);
    const until = 100 + LEASE_MS * LEASE_SHARE_OF_FAILURE_TIMEOUT;
    expect(tracker.holdsLease(until - 1)).toBe(true);
    // A process paused past it (SIGSTOP) finds its monotonic clock moved on: no lease.
    expect(tracker.holdsLease(until)).toBe(false);
  });

  test('a late acknowledgment of an older heartbeat never shortens the lease', () => {
    const tracker = new ViewTracker();
    tracker.onAck(view(1, [A], 0));
    tracker.renewLease(500, LEASE_MS);
    tracker.renewLease(100, LEASE_MS);
    expect(tracker.holdsLease(500 + LEASE_MS * LEASE_SHARE_OF_FAILURE_TIMEOUT - 1)).toBe(true);
  });

  test('an expelled server holds none, whatever its last heartbeat', () => {
    const tracker = new ViewTracker();
    tracker.onAck(view(1, [A], 0));
    tracker.renewLease(100, LEASE_MS);
    tracker.onExpelled();
    expect(tracker.holdsLease(101)).toBe(false);
  });
});
