// A server's copy progress (server/copy-progress.ts) and what the view leader makes of every
// server's (viewleader/cluster-status.ts, viewleader/view-history.ts): pure, time as an argument.

import type { ServerRef, View } from '../../lib/messages';
import { clusterStatus, ServerStatsTable } from '../../viewleader/cluster-status';
import type { MemberReport } from '../../viewleader/membership';
import { ViewHistory } from '../../viewleader/view-history';
import { copiesDone, copyStats, startCopies } from '../../server/copy-progress';
import { copiesOf, planRebalance } from '../../server/rebalance-planner';

const servers: ServerRef[] = ['a', 'b', 'c', 'd'].map((id, i) => ({
  id,
  address: `127.0.0.1:${38000 + i}`,
}));

describe('copy progress', () => {
  test('counts up to the plan, and its clock stops at the last copy', () => {
    let p = startCopies(5, 10, 1000);
    expect(copyStats(p, 1500)).toEqual({
      epoch: 5,
      copiesDone: 0,
      copiesTotal: 10,
      elapsedMs: 500,
    });
    p = copiesDone(p, 4, 1600);
    p = copiesDone(p, 6, 2000);
    expect(copyStats(p, 9000)).toEqual({
      epoch: 5,
      copiesDone: 10,
      copiesTotal: 10,
      elapsedMs: 1000,
    });
    expect(() => copiesDone(p, 1, 2100)).toThrow(/no more copies/);
  });

  test('an empty plan is done at once', () => {
    expect(copyStats(startCopies(2, 0, 10), 50).elapsedMs).toBe(0);
  });

  test('a plan makes one copy per (key, target) pair', () => {
    const keys = Array.from({ length: 500 }, (_, i) => `k${i}`);
    const plans = servers
      .slice(0, 3)
      .map((s) =>
        planRebalance({ selfId: s.id, previous: servers.slice(0, 3), next: servers, keys }),
      );
    // The fourth server gains about three quarters of the keys, each sent by one holder.
    const total = plans.reduce((sum, plan) => sum + copiesOf(plan), 0);
    expect(total).toBeGreaterThan(300);
    expect(total).toBeLessThan(450);
  });
});

function member(id: string, heardAgoMs: number, copied?: number, done?: number): MemberReport {
  const address = servers.find((s) => s.id === id)!.address;
  return { id, address, heardAgoMs, copiedEpoch: copied, doneEpoch: done };
}

function view(epoch: number, rebalancing: boolean): View {
  return { epoch, servers, rebalancing, placement: { epoch: epoch - 1, servers } };
}

describe('the cluster status', () => {
  test.each([
    {
      story: 'nobody reported a plan yet: 0%',
      stats: {},
      members: [member('a', 0), member('b', 0), member('c', 0), member('d', 0)],
      percent: 0,
      done: 0,
      total: 0,
    },
    {
      story: 'two plans reported, two not: short of 100 even when both are done',
      stats: { a: [10, 10, 100], b: [30, 30, 100] },
      members: [member('a', 0), member('b', 0), member('c', 0), member('d', 0)],
      percent: 99,
      done: 40,
      total: 40,
    },
    {
      story: 'halfway',
      stats: { a: [5, 10, 500], b: [15, 30, 500], c: [0, 0, 0], d: [0, 0, 0] },
      members: [member('a', 0), member('b', 0), member('c', 0, 7), member('d', 0, 7)],
      percent: 50,
      done: 20,
      total: 40,
    },
    {
      story: 'a server that reported copied has all its copies done, whatever it said before',
      stats: { a: [5, 10, 500], b: [30, 30, 100], c: [0, 0, 0], d: [0, 0, 0] },
      members: [member('a', 0, 7), member('b', 0, 7), member('c', 0, 7, 7), member('d', 0, 7, 7)],
      percent: 100,
      done: 40,
      total: 40,
    },
  ])('$story', ({ stats, members, percent, done, total }) => {
    const table = new ServerStatsTable();
    for (const [id, [copies, planned, elapsedMs]] of Object.entries(stats)) {
      table.note(id, {
        keys: 100,
        heartbeatIntervalMs: 200,
        copy: { epoch: 7, copiesDone: copies, copiesTotal: planned, elapsedMs },
      });
    }
    const status = clusterStatus({
      view: view(7, true),
      members,
      stats: table,
      failureTimeoutMs: 3000,
      history: [],
      leadingSinceMs: 0,
    });
    expect(status.progress).toMatchObject({ percent, copiesDone: done, copiesTotal: total });
  });

  test('rates, shares, lateness, and no stats from an older epoch', () => {
    const table = new ServerStatsTable();
    table.note('a', {
      keys: 10,
      heartbeatIntervalMs: 200,
      copy: { epoch: 7, copiesDone: 50, copiesTotal: 100, elapsedMs: 500 },
    });
    table.note('b', {
      keys: 20,
      heartbeatIntervalMs: 200,
      copy: { epoch: 6, copiesDone: 9, copiesTotal: 9, elapsedMs: 10 },
    });
    const status = clusterStatus({
      view: view(7, true),
      members: [member('a', 100), member('b', 1500), member('c', 1400), member('d', 0, 7, 7)],
      stats: table,
      failureTimeoutMs: 3000,
      history: [],
      leadingSinceMs: 0,
    });
    const [a, b, c, d] = status.servers;
    expect(a).toMatchObject({ keys: 10, copiesDone: 50, copyRatePerS: 100, late: false });
    expect(b).toMatchObject({ keys: 20, copiesDone: null, copiesTotal: null, late: true });
    expect(c).toMatchObject({ keys: null, late: false }); // no stats: late after half the timeout
    expect(d.stage).toBe('done');
    expect(status.progress.ratePerS).toBe(100);
    const shares = status.servers.reduce((sum, s) => sum + s.share, 0);
    expect(shares).toBeCloseTo(300, 0);
  });

  test('the stats table forgets servers that left', () => {
    const table = new ServerStatsTable();
    table.note('a', { keys: 1, heartbeatIntervalMs: 1000 });
    table.note('b', { keys: 2, heartbeatIntervalMs: 1000 });
    table.retain(new Set(['b']));
    expect(table.size).toBe(1);
    expect(table.get('a')).toBeUndefined();
  });
});

describe('the view history', () => {
  test('keeps the newest entries up to its bound, epochs going up', () => {
    const history = new ViewHistory(3);
    for (let epoch = 1; epoch <= 5; epoch++) {
      history.record(
        { epoch, joined: [servers[epoch % 4]], left: [{ ...servers[0], cause: 'expired' }] },
        1000 * epoch,
      );
    }
    expect(history.list().map((e) => e.epoch)).toEqual([3, 4, 5]);
    expect(history.list()[2]).toEqual({
      epoch: 5,
      atMs: 5000,
      joined: [servers[1]],
      left: [{ ...servers[0], cause: 'expired' }],
    });
    expect(() => history.record({ epoch: 5, joined: [], left: [] }, 6000)).toThrow(/only goes up/);
  });
});
