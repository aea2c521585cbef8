// Membership as scenarios: time is an argument, so each test moves it by hand.

import { AssertionError } from '../../lib/assert';
import {
  Membership,
  type AddressProbe,
  type HeartbeatOutcome,
  type ViewChange,
} from '../../viewleader/membership';

const TIMEOUT_MS = 1000;
const A = { id: 'a', address: '127.0.0.1:38000' };
const B = { id: 'b', address: '127.0.0.1:38001' };
const C = { id: 'c', address: '127.0.0.1:38002' };

function accepted(outcome: HeartbeatOutcome): Extract<HeartbeatOutcome, { kind: 'accepted' }> {
  if (outcome.kind !== 'accepted') throw new Error(`expected accepted, got ${outcome.kind}`);
  return outcome;
}

/** A membership where each of `servers` heartbeated once at time 0, in order. */
function withServers(...servers: { id: string; address: string }[]): Membership {
  const membership = new Membership(TIMEOUT_MS);
  for (const s of servers) accepted(membership.heartbeat(s.id, s.address, 0));
  return membership;
}

const ids = (m: Membership): string[] => m.view().servers.map((s) => s.id);

/**
 * A restarted process at `address` (new ID `id`): its heartbeat finds the address held, and the
 * probe of the address answers with the new ID, as the shell would see it.
 */
function restartAt(m: Membership, id: string, address: string, nowMs: number): HeartbeatOutcome {
  const first = m.heartbeat(id, address, nowMs);
  if (first.kind !== 'address_held') return first;
  return m.takeOver(id, address, first.holder.id, { kind: 'answered', serverId: id }, nowMs);
}

describe('joining', () => {
  test('the epoch starts at 0 with an empty view that is not rebalancing', () => {
    expect(new Membership(TIMEOUT_MS).view()).toEqual({
      epoch: 0,
      servers: [],
      rebalancing: false,
      placement: { epoch: 0, servers: [] },
    });
  });

  test('a first heartbeat joins: epoch 1, the server in the view, the ack carries the view', () => {
    const membership = new Membership(TIMEOUT_MS);
    const outcome = accepted(membership.heartbeat(A.id, A.address, 0));
    expect(outcome.view).toEqual({
      epoch: 1,
      servers: [A],
      rebalancing: true,
      placement: { epoch: 0, servers: [] },
    });
    expect(outcome.change).toEqual({ epoch: 1, joined: [A], left: [] });
  });

  test('repeated heartbeats change nothing: same epoch, no view change', () => {
    const membership = withServers(A);
    for (const nowMs of [1, 500, 1000, 1999]) {
      const outcome = accepted(membership.heartbeat(A.id, A.address, nowMs));
      expect(outcome.change).toBeUndefined();
      expect(outcome.view.epoch).toBe(1);
    }
  });

  test('each join is its own view change, and the view is sorted by address then ID', () => {
    const membership = new Membership(TIMEOUT_MS);
    const epochs = [C, A, B].map(
      (s) => accepted(membership.heartbeat(s.id, s.address, 0)).view.epoch,
    );
    expect(epochs).toEqual([1, 2, 3]);
    expect(membership.view().servers).toEqual([A, B, C]);
  });

  test('a live ID heartbeating from another address is refused and changes nothing', () => {
    const membership = withServers(A);
    const outcome = membership.heartbeat(A.id, B.address, 10);
    expect(outcome).toEqual({ kind: 'address_changed', address: A.address, change: undefined });
    expect(membership.view()).toMatchObject({ epoch: 1, servers: [A] });
  });
});

describe('leaving by timeout', () => {
  test.each([
    { silentForMs: TIMEOUT_MS - 1, inView: true },
    { silentForMs: TIMEOUT_MS, inView: true }, // "older than S": exactly S is still in
    { silentForMs: TIMEOUT_MS + 1, inView: false },
  ])('silent for $silentForMs ms: still in the view = $inView', ({ silentForMs, inView }) => {
    const membership = withServers(A);
    const change = membership.tick(silentForMs);
    expect(ids(membership)).toEqual(inView ? ['a'] : []);
    expect(change).toEqual(
      inView ? undefined : { epoch: 2, joined: [], left: [{ ...A, cause: 'expired' }] },
    );
  });

  test('the timeout counts from the last heartbeat', () => {
    const membership = withServers(A);
    accepted(membership.heartbeat(A.id, A.address, 900));
    expect(membership.tick(1900)).toBeUndefined();
    expect(membership.tick(1901)?.left).toEqual([{ ...A, cause: 'expired' }]);
  });

  test('servers that time out in the same tick leave in one epoch increment', () => {
    const membership = withServers(A, B, C);
    accepted(membership.heartbeat(C.id, C.address, 500));
    const change = membership.tick(1001);
    expect(change?.epoch).toBe(4);
    expect(change?.left.map((s) => s.id)).toEqual(['a', 'b']);
    expect(membership.view()).toMatchObject({ epoch: 4, servers: [C] });
  });

  test('a heartbeat arriving after the timeout, before any tick, is rejected: it already left', () => {
    const membership = withServers(A);
    const outcome = membership.heartbeat(A.id, A.address, TIMEOUT_MS + 1);
    expect(outcome).toEqual({
      kind: 'expired',
      change: { epoch: 2, joined: [], left: [{ ...A, cause: 'expired' }] },
    });
  });

  test('a join and a timeout noticed by the same heartbeat share one epoch', () => {
    const membership = withServers(A);
    const outcome = accepted(membership.heartbeat(B.id, B.address, TIMEOUT_MS + 1));
    expect(outcome.change).toEqual({
      epoch: 2,
      joined: [B],
      left: [{ ...A, cause: 'expired' }],
    });
  });
});

describe('an expired ID is rejected forever', () => {
  test('its heartbeats are rejected, however late, and change nothing', () => {
    const membership = withServers(A);
    membership.tick(TIMEOUT_MS + 1);
    for (const nowMs of [TIMEOUT_MS + 2, 10 * TIMEOUT_MS, 1e9]) {
      expect(membership.heartbeat(A.id, A.address, nowMs)).toEqual({
        kind: 'expired',
        change: undefined,
      });
    }
    expect(membership.isExpired(A.id)).toBe(true);
    expect(membership.view()).toMatchObject({ epoch: 2, servers: [], rebalancing: false });
  });

  test('a restarted process (new ID, same address) joins anew with a higher epoch', () => {
    const membership = withServers(A);
    membership.tick(TIMEOUT_MS + 1);
    const outcome = accepted(membership.heartbeat('a2', A.address, TIMEOUT_MS + 2));
    expect(outcome.view).toMatchObject({ epoch: 3, servers: [{ id: 'a2', address: A.address }] });
  });

  test('the oldest expired IDs are forgotten beyond the bound, and only they', () => {
    const rememberedMax = 3;
    const membership = new Membership(TIMEOUT_MS, rememberedMax);
    const count = rememberedMax + 2;
    for (let i = 0; i < count; i++) {
      accepted(restartAt(membership, `s${i}`, A.address, 0)); // each evicts the previous one
    }
    expect(membership.isExpired('s0')).toBe(false);
    expect(membership.isExpired('s1')).toBe(true);
    expect(membership.isExpired(`s${count - 2}`)).toBe(true);
    expect(membership.isExpired(`s${count - 1}`)).toBe(false); // still in the view
  });
});

describe('address takeover', () => {
  test('a new ID at a live address is not admitted on its word: probe the address', () => {
    const membership = withServers(A, B);
    expect(membership.heartbeat('a2', A.address, 10)).toEqual({
      kind: 'address_held',
      holder: A,
      change: undefined,
    });
    expect(membership.view()).toMatchObject({ epoch: 2, servers: [A, B] });
  });

  test.each<{ probe: AddressProbe; why: string }>([
    { probe: { kind: 'answered', serverId: 'a2' }, why: 'the newcomer listens there' },
    { probe: { kind: 'refused' }, why: 'nothing listens there: the holder is gone' },
  ])('proven ($why): the old ID is evicted in the join epoch increment', ({ probe }) => {
    const membership = withServers(A, B);
    expect(membership.heartbeat('a2', A.address, 10).kind).toBe('address_held');
    const outcome = accepted(membership.takeOver('a2', A.address, A.id, probe, 20));
    expect(outcome.change).toEqual({
      epoch: 3,
      joined: [{ id: 'a2', address: A.address }],
      left: [{ ...A, cause: 'evicted' }],
    });
    expect(outcome.view.servers).toEqual([{ id: 'a2', address: A.address }, B]);
  });

  test.each<{ probe: AddressProbe; why: string }>([
    { probe: { kind: 'answered', serverId: A.id }, why: 'the holder answers there' },
    { probe: { kind: 'answered', serverId: 'someone else' }, why: 'a third ID answers there' },
    { probe: { kind: 'no_answer' }, why: 'no answer in time (a paused holder still holds it)' },
  ])('not proven ($why): the newcomer is refused, the holder untouched', ({ probe }) => {
    const membership = withServers(A, B);
    const before = membership.view();
    expect(membership.heartbeat('a2', A.address, 10).kind).toBe('address_held');
    expect(membership.takeOver('a2', A.address, A.id, probe, 20)).toEqual({
      kind: 'address_in_use',
      holder: A,
      probe,
      change: undefined,
    });
    expect(membership.view()).toEqual(before);
    expect(membership.isExpired('a2')).toBe(false); // refused for now, not forever
    // The holder heartbeats as before; its timeout counts from its own heartbeats (b, silent
    // since 0, leaves at the same tick that a is still in).
    expect(accepted(membership.heartbeat(A.id, A.address, 30)).change).toBeUndefined();
    membership.tick(30 + TIMEOUT_MS);
    expect(ids(membership)).toEqual(['a']);
  });

  test('a refused newcomer takes over once the holder stops answering', () => {
    const membership = withServers(A);
    membership.heartbeat('a2', A.address, 10);
    const inUse = { kind: 'answered', serverId: A.id } as const;
    expect(membership.takeOver('a2', A.address, A.id, inUse, 20).kind).toBe('address_in_use');
    expect(membership.heartbeat('a2', A.address, 220).kind).toBe('address_held');
    const outcome = accepted(membership.takeOver('a2', A.address, A.id, { kind: 'refused' }, 230));
    expect(outcome.change).toEqual({
      epoch: 2,
      joined: [{ id: 'a2', address: A.address }],
      left: [{ ...A, cause: 'evicted' }],
    });
  });

  test('the holder timing out while the probe runs: the newcomer joins whatever the probe said', () => {
    const membership = withServers(A);
    expect(membership.heartbeat('a2', A.address, TIMEOUT_MS).kind).toBe('address_held');
    const probe = { kind: 'answered', serverId: A.id } as const; // its last words
    const outcome = accepted(membership.takeOver('a2', A.address, A.id, probe, TIMEOUT_MS + 1));
    expect(outcome.change).toEqual({
      epoch: 2,
      joined: [{ id: 'a2', address: A.address }],
      left: [{ ...A, cause: 'expired' }],
    });
  });

  test('the address changing hands while the probe runs: held again, nobody evicted', () => {
    const membership = withServers(A);
    expect(membership.heartbeat('x', A.address, 10).kind).toBe('address_held');
    expect(membership.heartbeat('y', A.address, 10).kind).toBe('address_held');
    accepted(membership.takeOver('y', A.address, A.id, { kind: 'refused' }, 20));
    // x's probe also found nothing listening, but it was about A, and y holds the address now.
    expect(membership.takeOver('x', A.address, A.id, { kind: 'refused' }, 30)).toEqual({
      kind: 'address_held',
      holder: { id: 'y', address: A.address },
      change: undefined,
    });
    expect(membership.view().servers).toEqual([{ id: 'y', address: A.address }]);
  });

  test('two heartbeats of one newcomer sharing a probe: the second finds itself admitted', () => {
    const membership = withServers(A);
    const probe = { kind: 'answered', serverId: 'a2' } as const;
    accepted(membership.takeOver('a2', A.address, A.id, probe, 20));
    const again = accepted(membership.takeOver('a2', A.address, A.id, probe, 21));
    expect(again.change).toBeUndefined();
    expect(again.view).toMatchObject({ epoch: 2, servers: [{ id: 'a2', address: A.address }] });
  });

  test('an expired newcomer stays rejected whatever the probe says', () => {
    const membership = withServers(A, B);
    accepted(restartAt(membership, 'a2', A.address, 10));
    const answered = { kind: 'answered', serverId: A.id } as const;
    expect(membership.takeOver(A.id, A.address, 'a2', answered, 20).kind).toBe('expired');
  });

  test('the evicted ID is rejected forever, even after the newcomer leaves', () => {
    const membership = withServers(A);
    accepted(restartAt(membership, 'a2', A.address, 10));
    expect(membership.heartbeat(A.id, A.address, 20).kind).toBe('expired');
    membership.tick(10 + TIMEOUT_MS + 1);
    expect(membership.heartbeat(A.id, A.address, 10 + TIMEOUT_MS + 2).kind).toBe('expired');
    expect(membership.rebalanceDone(A.id, membership.epoch)).toEqual({ kind: 'expired' });
  });
});

describe('the epoch', () => {
  test('only increases, by one per view change, over a long mixed history', () => {
    const membership = new Membership(TIMEOUT_MS);
    const changes: ViewChange[] = [];
    const record = (change: ViewChange | undefined): void => {
      if (change !== undefined) changes.push(change);
    };
    let nowMs = 0;
    for (let round = 0; round < 50; round++) {
      record(
        accepted(membership.heartbeat(`x${round}`, `127.0.0.1:${40000 + (round % 7)}`, nowMs))
          .change,
      );
      nowMs += round % 3 === 0 ? TIMEOUT_MS + 1 : 100;
      record(membership.tick(nowMs));
    }
    expect(changes.map((c) => c.epoch)).toEqual(changes.map((_, i) => i + 1));
    expect(membership.epoch).toBe(changes.length);
  });

  test('time going backwards is a programmer error (the shell uses a monotonic clock)', () => {
    const membership = withServers(A);
    membership.tick(100);
    expect(() => membership.tick(99)).toThrow(AssertionError);
    expect(() => membership.heartbeat(B.id, B.address, 50)).toThrow(AssertionError);
  });

  test('a non-positive failure timeout is a programmer error', () => {
    expect(() => new Membership(0)).toThrow(AssertionError);
    expect(() => new Membership(Number.NaN)).toThrow(AssertionError);
  });
});

describe('the rebalancing flag', () => {
  test('a join sets it; it clears once the joining server reports done', () => {
    const membership = withServers(A);
    expect(membership.view().rebalancing).toBe(true);
    expect(membership.rebalanceDone(A.id, 1)).toEqual({ kind: 'recorded', finished: true });
    expect(membership.view().rebalancing).toBe(false);
  });

  test('every server of the view must report for the current epoch', () => {
    const membership = withServers(A, B, C); // epoch 3
    expect(membership.rebalanceDone(A.id, 3)).toEqual({ kind: 'recorded', finished: false });
    expect(membership.rebalanceDone(B.id, 3)).toEqual({ kind: 'recorded', finished: false });
    expect(membership.view().rebalancing).toBe(true);
    expect(membership.rebalanceDone(C.id, 3)).toEqual({ kind: 'recorded', finished: true });
    expect(membership.view().rebalancing).toBe(false);
    // A repeated report is harmless and finishes nothing new.
    expect(membership.rebalanceDone(C.id, 3)).toEqual({ kind: 'recorded', finished: false });
  });

  test('a leave sets it again; the survivors must report for the new epoch', () => {
    const membership = withServers(A, B); // epoch 2
    membership.rebalanceDone(A.id, 2);
    membership.rebalanceDone(B.id, 2);
    accepted(membership.heartbeat(B.id, B.address, 600));
    membership.tick(TIMEOUT_MS + 1); // A leaves: epoch 3
    expect(membership.view()).toMatchObject({ epoch: 3, rebalancing: true });
    expect(membership.rebalanceDone(B.id, 3)).toEqual({ kind: 'recorded', finished: true });
  });

  test('the view emptying clears it: no server is left to rebalance', () => {
    const membership = withServers(A);
    membership.tick(TIMEOUT_MS + 1);
    expect(membership.view()).toMatchObject({ epoch: 2, servers: [], rebalancing: false });
  });

  test.each([
    { case: 'an older epoch is ignored', serverId: A.id, epoch: 1, kind: 'stale' },
    { case: 'a future epoch is invalid', serverId: A.id, epoch: 3, kind: 'future_epoch' },
    { case: 'an unknown ID is refused', serverId: 'zz', epoch: 2, kind: 'not_in_view' },
  ])('a report for $case and changes nothing', ({ serverId, epoch, kind }) => {
    const membership = withServers(A, B); // epoch 2
    expect(membership.rebalanceDone(serverId, epoch)).toEqual({ kind });
    expect(membership.view()).toMatchObject({ epoch: 2, rebalancing: true });
  });

  test('a report for an old epoch does not count for the current one', () => {
    const membership = withServers(A); // A joined at epoch 1
    accepted(membership.heartbeat(B.id, B.address, 0)); // epoch 2
    expect(membership.rebalanceDone(A.id, 1)).toEqual({ kind: 'stale' });
    expect(membership.rebalanceDone(B.id, 2)).toEqual({ kind: 'recorded', finished: false });
    expect(membership.view().rebalancing).toBe(true);
  });

  test('a report from an expired ID is refused as expired', () => {
    const membership = withServers(A);
    membership.tick(TIMEOUT_MS + 1);
    expect(membership.rebalanceDone(A.id, 2)).toEqual({ kind: 'expired' });
  });
});

describe('the copy barrier (placement)', () => {
  test('placement advances only once every server in the view has copied the epoch', () => {
    const membership = new Membership(TIMEOUT_MS);
    membership.heartbeat(A.id, A.address, 0);
    membership.heartbeat(B.id, B.address, 0);
    const epoch = membership.epoch;
    expect(membership.placement.epoch).toBeLessThan(epoch);
    membership.rebalanceDone(A.id, epoch, 'copied');
    expect(membership.placement.epoch).toBeLessThan(epoch);
    expect(membership.rebalancing).toBe(true);
    membership.rebalanceDone(B.id, epoch, 'copied');
    expect(membership.placement).toEqual({ epoch, servers: membership.view().servers });
    expect(membership.rebalancing).toBe(true);
    membership.rebalanceDone(A.id, epoch, 'done');
    membership.rebalanceDone(B.id, epoch, 'done');
    expect(membership.rebalancing).toBe(false);
  });

  test('a view change before the barrier leaves the old placement in force', () => {
    const membership = new Membership(TIMEOUT_MS);
    membership.heartbeat(A.id, A.address, 0);
    membership.rebalanceDone(A.id, membership.epoch, 'done');
    const settled = membership.placement;
    expect(settled.servers).toEqual([A]);
    membership.heartbeat(B.id, B.address, 1);
    membership.rebalanceDone(A.id, membership.epoch, 'copied');
    membership.heartbeat(C.id, C.address, 2);
    expect(membership.placement).toEqual(settled);
  });

  test('an emptied view is its own placement', () => {
    const membership = new Membership(TIMEOUT_MS);
    membership.heartbeat(A.id, A.address, 0);
    membership.tick(TIMEOUT_MS + 1);
    expect(membership.placement).toEqual({ epoch: membership.epoch, servers: [] });
  });
});

describe('epoch continuity: the next epoch exceeds every epoch a heartbeat reports', () => {
  test('a restarted view leader counts on from the epochs its servers report', () => {
    const restarted = new Membership(TIMEOUT_MS); // knows nothing: epoch 0
    expect(accepted(restarted.heartbeat(A.id, A.address, 0, 41)).view.epoch).toBe(42);
    expect(accepted(restarted.heartbeat(B.id, B.address, 0, 40)).view.epoch).toBe(43);
    // A server with no epoch yet (a fresh process) raises nothing: one more view change.
    expect(accepted(restarted.heartbeat(C.id, C.address, 0)).view.epoch).toBe(44);
  });

  test('a member reporting the current or an older epoch changes nothing', () => {
    const membership = withServers(A, B); // epoch 2
    for (const reported of [2, 1, 0, undefined]) {
      expect(accepted(membership.heartbeat(A.id, A.address, 1, reported)).change).toBeUndefined();
    }
    expect(membership.epoch).toBe(2);
  });

  test('a member reporting a newer epoch gets a new view above it, with no join or leave', () => {
    // It learned that epoch elsewhere (another view leader of the list): it ignores older views,
    // so the view leader moves past it, and every server rebalances for the new epoch.
    const membership = withServers(A, B); // epoch 2
    membership.rebalanceDone(A.id, 2);
    membership.rebalanceDone(B.id, 2);
    const outcome = accepted(membership.heartbeat(B.id, B.address, 1, 9));
    expect(outcome.change).toEqual({ epoch: 10, joined: [], left: [] });
    expect(outcome.view).toMatchObject({ epoch: 10, servers: [A, B], rebalancing: true });
    expect(outcome.view.placement.epoch).toBe(2);
  });

  test('a join and a timeout noticed together share one increment, above the report', () => {
    const membership = withServers(A); // epoch 1
    const outcome = accepted(membership.heartbeat(B.id, B.address, TIMEOUT_MS + 1, 20));
    expect(outcome.change).toEqual({ epoch: 21, joined: [B], left: [{ ...A, cause: 'expired' }] });
  });

  test('the highest report counts, also from a heartbeat that is refused', () => {
    const membership = withServers(A); // epoch 1
    membership.tick(TIMEOUT_MS + 1); // A expires: epoch 2
    expect(membership.heartbeat(A.id, A.address, TIMEOUT_MS + 2, 30).kind).toBe('expired');
    expect(membership.epoch).toBe(31);
    expect(accepted(membership.heartbeat(B.id, B.address, TIMEOUT_MS + 3, 5)).view.epoch).toBe(32);
  });

  test('a report that is not a non-negative integer is a programmer error (validated at the edge)', () => {
    for (const reported of [-1, 1.5, Number.NaN, 2 ** 53]) {
      expect(() => new Membership(TIMEOUT_MS).heartbeat(A.id, A.address, 0, reported)).toThrow(
        AssertionError,
      );
    }
  });
});

/** A snapshot written by hand: members' progress may be left out. */
interface SnapshotInput {
  readonly epoch: number;
  readonly members: readonly { id: string; address: string; copiedEpoch?: number }[];
  readonly expired: readonly { id: string; seq: number }[];
  readonly placement: { epoch: number; servers: never[] };
}

describe('durability: snapshot, restore and the change log', () => {
  /** Restart: what `m` saved, restored at `nowMs`. */
  const restart = (m: Membership, nowMs: number, rememberedMax?: number): Membership =>
    Membership.restore(m.snapshot(), TIMEOUT_MS, nowMs, rememberedMax);

  /** A history with every kind of saved state: members with progress, expired IDs, placement. */
  function lived(): Membership {
    const membership = withServers(A, B); // epoch 2
    membership.rebalanceDone(A.id, 2, 'copied');
    membership.rebalanceDone(B.id, 2, 'copied'); // placement 2
    membership.rebalanceDone(A.id, 2, 'done');
    accepted(membership.heartbeat(A.id, A.address, 500));
    accepted(membership.heartbeat(B.id, B.address, 500));
    accepted(membership.heartbeat(C.id, C.address, 1200)); // epoch 3, nobody copied it yet
    membership.tick(1501); // A and B expire: epoch 4
    accepted(membership.heartbeat('d', '127.0.0.1:38003', 1502)); // epoch 5
    membership.rebalanceDone('d', 5, 'copied');
    return membership;
  }

  test('a restored membership has the same view, epoch, placement, progress and expired IDs', () => {
    const membership = lived();
    const restored = restart(membership, 2000);
    expect(restored.snapshot()).toEqual(membership.snapshot());
    expect(restored.view()).toEqual(membership.view());
    expect(membership.snapshot()).toEqual({
      epoch: 5,
      members: [
        { id: 'c', address: C.address, copiedEpoch: undefined, doneEpoch: undefined },
        { id: 'd', address: '127.0.0.1:38003', copiedEpoch: 5, doneEpoch: undefined },
      ],
      expired: [
        { id: 'a', seq: 0 },
        { id: 'b', seq: 1 },
      ],
      placement: { epoch: 2, servers: [A, B] },
    });
    expect(restored.takeChanges()).toEqual([]); // restoring is not a change
  });

  test('the epoch is never reused: the next view change after a restore is above it', () => {
    const restored = restart(lived(), 2000);
    const outcome = accepted(restored.heartbeat('e', '127.0.0.1:38004', 2001));
    expect(outcome.change?.epoch).toBe(6);
  });

  test('the members stay without a view change: their heartbeats are accepted as before', () => {
    const restored = restart(lived(), 2000);
    const outcome = accepted(restored.heartbeat(C.id, C.address, 2001, 5));
    expect(outcome.change).toBeUndefined();
    expect(outcome.view.epoch).toBe(5);
  });

  test('expired IDs stay expired after a restore', () => {
    const restored = restart(lived(), 2000);
    expect(restored.isExpired(A.id)).toBe(true);
    expect(restored.heartbeat(A.id, A.address, 2001).kind).toBe('expired');
    expect(restored.rebalanceDone(B.id, 5)).toEqual({ kind: 'expired' });
  });

  test('a restored member leaves only after a full failure timeout from the restore', () => {
    // C's last heartbeat was at 1200; the restart is at 5000, long after that was overdue.
    const restored = restart(lived(), 5000);
    expect(restored.tick(5000 + TIMEOUT_MS)).toBeUndefined();
    expect(ids(restored)).toEqual(['c', 'd']);
    expect(restored.tick(5000 + TIMEOUT_MS + 1)).toMatchObject({ epoch: 6, joined: [] });
    expect(ids(restored)).toEqual([]);
  });

  test('the barrier goes on from the saved progress: the placement advances in the same epoch', () => {
    const restored = restart(lived(), 2000);
    expect(restored.rebalanceDone(C.id, 5, 'copied')).toEqual({
      kind: 'recorded',
      finished: false,
    });
    expect(restored.placement).toEqual({
      epoch: 5,
      servers: [C, { id: 'd', address: '127.0.0.1:38003' }],
    });
  });

  test('what the change log records: joins, leaves, epochs, progress, placement', () => {
    const membership = new Membership(TIMEOUT_MS);
    accepted(membership.heartbeat(A.id, A.address, 0));
    expect(membership.takeChanges()).toEqual([
      {
        kind: 'member',
        member: { id: 'a', address: A.address, copiedEpoch: undefined, doneEpoch: undefined },
      },
      { kind: 'epoch', epoch: 1 },
    ]);
    membership.rebalanceDone(A.id, 1, 'copied');
    expect(membership.takeChanges()).toEqual([
      {
        kind: 'member',
        member: { id: 'a', address: A.address, copiedEpoch: 1, doneEpoch: undefined },
      },
      { kind: 'placement', placement: { epoch: 1, servers: [A] } },
    ]);
    membership.tick(TIMEOUT_MS + 1);
    expect(membership.takeChanges()).toEqual([
      { kind: 'member_gone', id: 'a' },
      { kind: 'expired', expired: { id: 'a', seq: 0 } },
      { kind: 'epoch', epoch: 2 },
      { kind: 'placement', placement: { epoch: 2, servers: [] } },
    ]);
    expect(membership.takeChanges()).toEqual([]); // drained
  });

  test('a heartbeat that changes nothing, a repeated report and a query record nothing', () => {
    const membership = withServers(A);
    membership.rebalanceDone(A.id, 1, 'done');
    membership.takeChanges();
    accepted(membership.heartbeat(A.id, A.address, 10, 1));
    membership.rebalanceDone(A.id, 1, 'done');
    membership.rebalanceDone(A.id, 1, 'copied'); // an older phase, repeated late: no change
    membership.rebalanceDone(A.id, 0, 'done'); // stale
    membership.tick(20);
    membership.view();
    expect(membership.takeChanges()).toEqual([]);
  });

  test('restoring beyond a lower bound forgets the oldest expired IDs, and records it', () => {
    const membership = lived(); // a and b expired
    const restored = restart(membership, 2000, 1);
    expect(restored.isExpired(A.id)).toBe(false);
    expect(restored.isExpired(B.id)).toBe(true);
    expect(restored.takeChanges()).toEqual([{ kind: 'expired_forgotten', id: 'a' }]);
    // New expiries keep counting on from the saved sequence numbers.
    restored.tick(2000 + TIMEOUT_MS + 1);
    expect(restored.snapshot().expired.map((e) => e.seq)).toEqual([3]);
  });

  test.each([
    [
      'a member that is also expired',
      { members: [{ id: 'a', address: A.address }], expired: [{ id: 'a', seq: 0 }] },
    ],
    [
      'two members at one address',
      {
        members: [
          { id: 'a', address: A.address },
          { id: 'b', address: A.address },
        ],
      },
    ],
    ['a report ahead of the epoch', { members: [{ id: 'a', address: A.address, copiedEpoch: 9 }] }],
    ['members at epoch 0', { epoch: 0, members: [{ id: 'a', address: A.address }] }],
    ['a placement ahead of the epoch', { placement: { epoch: 9, servers: [] } }],
    [
      'expired IDs out of order',
      {
        expired: [
          { id: 'x', seq: 2 },
          { id: 'y', seq: 1 },
        ],
      },
    ],
  ] as [string, Partial<SnapshotInput>][])(
    'an inconsistent snapshot is refused: %s',
    (_what, partial) => {
      const snapshot = {
        epoch: 3,
        expired: [],
        placement: { epoch: 0, servers: [] },
        ...partial,
        members: (partial.members ?? []).map((m) => ({
          copiedEpoch: undefined,
          doneEpoch: undefined,
          ...m,
        })),
      };
      expect(() => Membership.restore(snapshot, TIMEOUT_MS, 0)).toThrow(AssertionError);
    },
  );
});
