// The view leader's shell (viewleader/routes.ts). Around an address takeover: a heartbeat that
// contests a live server's address waits for a probe of that address, and only that heartbeat
// waits. Around durability: every answer waits until what changed is durable, a step that changed
// nothing writes nothing, and a busy or failed disk refuses requests. The probe and the disk are
// objects the test controls, so every answer and every ordering is exact.

import { DhtError } from '../../lib/errors';
import { createLogger } from '../../lib/logger';
import { LockTable } from '../../viewleader/locks';
import { Membership, type AddressProbe } from '../../viewleader/membership';
import { ViewLeader } from '../../viewleader/routes';
import type { StateLog, ViewLeaderChanges } from '../../viewleader/saved-state';

const A = { serverId: 'a', address: '127.0.0.1:38000' };
const B = { serverId: 'b', address: '127.0.0.1:38001' };

/** A probe per call that the test answers by hand. */
class ManualProbes {
  readonly asked: string[] = [];
  private readonly pending: ((probe: AddressProbe) => void)[] = [];

  readonly probe = (address: string): Promise<AddressProbe> => {
    this.asked.push(address);
    return new Promise((resolve) => this.pending.push(resolve));
  };

  answer(probe: AddressProbe): void {
    const next = this.pending.shift();
    if (next === undefined) throw new Error('no probe is waiting');
    next(probe);
  }
}

function setUp(): { leader: ViewLeader; probes: ManualProbes } {
  const probes = new ManualProbes();
  const leader = new ViewLeader(
    new Membership(60_000),
    new LockTable(),
    createLogger('test', 'silent'),
    () => 0,
    probes.probe,
  );
  return { leader, probes };
}

async function refusal(promise: Promise<unknown>): Promise<{ kind: string; reason?: string }> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof DhtError) return { kind: err.kind, reason: err.reason };
    throw err;
  }
  throw new Error('expected a refusal');
}

test('known and new addresses are answered without a probe', async () => {
  const { leader, probes } = setUp();
  expect((await leader.heartbeat(A)).epoch).toBe(1);
  expect((await leader.heartbeat(A)).epoch).toBe(1);
  expect((await leader.heartbeat(B)).epoch).toBe(2);
  expect(probes.asked).toEqual([]);
});

test('the holder answering: the newcomer gets retry/address_in_use and the holder stays', async () => {
  const { leader, probes } = setUp();
  await leader.heartbeat(A);
  const contested = leader.heartbeat({ serverId: 'forged', address: A.address });
  expect(probes.asked).toEqual([A.address]);
  probes.answer({ kind: 'answered', serverId: A.serverId });
  expect(await refusal(contested)).toEqual({ kind: 'retry', reason: 'address_in_use' });
  expect(await leader.queryServers()).toMatchObject({ epoch: 1, servers: [{ id: 'a' }] });
});

test('while a probe is out, other heartbeats and queries are answered at once', async () => {
  const { leader, probes } = setUp();
  await leader.heartbeat(A);
  const contested = leader.heartbeat({ serverId: 'a2', address: A.address });
  // The probe has not answered; everything else goes on.
  expect((await leader.heartbeat(B)).epoch).toBe(2);
  expect((await leader.heartbeat(A)).epoch).toBe(2);
  expect((await leader.queryServers()).servers.map((s) => s.id)).toEqual(['a', 'b']);
  probes.answer({ kind: 'answered', serverId: 'a2' });
  expect((await contested).view.servers.map((s) => s.id)).toEqual(['a2', 'b']);
  expect(await refusal(leader.heartbeat(A))).toEqual({
    kind: 'rejected',
    reason: 'server_expired',
  });
});

test('heartbeats contesting one address share one probe', async () => {
  const { leader, probes } = setUp();
  await leader.heartbeat(A);
  const flood = Array.from({ length: 20 }, (_, i) =>
    refusal(leader.heartbeat({ serverId: `forged-${i}`, address: A.address })),
  );
  expect(probes.asked).toEqual([A.address]);
  probes.answer({ kind: 'answered', serverId: A.serverId });
  for (const outcome of await Promise.all(flood)) {
    expect(outcome).toEqual({ kind: 'retry', reason: 'address_in_use' });
  }
  // The next contest asks again: a probe's answer is not remembered.
  const later = leader.heartbeat({ serverId: 'a2', address: A.address });
  expect(probes.asked).toEqual([A.address, A.address]);
  probes.answer({ kind: 'refused' });
  expect((await later).view.servers.map((s) => s.id)).toEqual(['a2']);
});

test('a probe that fails outright counts as no answer', async () => {
  const leader = new ViewLeader(
    new Membership(60_000),
    new LockTable(),
    createLogger('test', 'silent'),
    () => 0,
    () => Promise.reject(new Error('boom')),
  );
  await leader.heartbeat(A);
  expect(await refusal(leader.heartbeat({ serverId: 'a2', address: A.address }))).toEqual({
    kind: 'retry',
    reason: 'address_in_use',
  });
});

// ---- durable before answered ---------------------------------------------------------------------

/** A disk whose syncs the test completes (or fails) by hand. */
class ManualDisk implements StateLog {
  busy = false;
  readonly written: ViewLeaderChanges[] = [];
  private readonly waiting: { resolve: () => void; reject: (err: Error) => void }[] = [];

  write(changes: ViewLeaderChanges): void {
    if (changes.membership.length + changes.locks.length > 0) this.written.push(changes);
  }

  durable(): Promise<void> {
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  sync(): void {
    for (const { resolve } of this.waiting.splice(0)) resolve();
  }

  fail(err: Error): void {
    for (const { reject } of this.waiting.splice(0)) reject(err);
  }
}

function durableSetUp(): { leader: ViewLeader; disk: ManualDisk; clock: { nowMs: number } } {
  const disk = new ManualDisk();
  const clock = { nowMs: 0 };
  const leader = new ViewLeader(
    new Membership(1000),
    new LockTable(),
    createLogger('test', 'silent'),
    () => clock.nowMs,
    () => Promise.resolve({ kind: 'refused' }),
    disk,
  );
  return { leader, disk, clock };
}

/** Whether `promise` has settled, after the event loop has run what it can. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

describe('durable before answered', () => {
  test('an answer waits until the changes of its step are durable', async () => {
    const { leader, disk } = durableSetUp();
    const granted = leader.lockGet({ lock: 'L', requester: 'alice' });
    expect(disk.written).toEqual([
      { membership: [], locks: [{ kind: 'held', lock: 'L', holder: 'alice' }] },
    ]);
    expect(await settled(granted)).toBe(false);
    disk.sync();
    expect(await granted).toEqual({ granted: true });
  });

  test("a query waits too: it could reveal another step's change before it is durable", async () => {
    const { leader, disk } = durableSetUp();
    void leader.heartbeat(A);
    const query = leader.queryServers();
    expect(disk.written).toHaveLength(1); // the join; the query wrote nothing
    expect(await settled(query)).toBe(false);
    disk.sync();
    expect((await query).epoch).toBe(1);
  });

  test('a heartbeat of a member, a repeated lock_get and a query write nothing', async () => {
    const { leader, disk, clock } = durableSetUp();
    const first = leader.heartbeat(A);
    const lock = leader.lockGet({ lock: 'L', requester: 'alice' });
    disk.sync();
    await Promise.all([first, lock]);
    const written = disk.written.length;
    for (let i = 1; i <= 5; i++) {
      clock.nowMs = i * 100;
      const steps = [
        leader.heartbeat({ ...A, epoch: 1 }),
        leader.lockGet({ lock: 'L', requester: 'alice' }),
        leader.queryServers(),
        leader.deadlocks(),
      ];
      disk.sync();
      await Promise.all(steps);
    }
    expect(disk.written).toHaveLength(written);
  });

  test("the timer's tick writes an expiry, and the locks its server held, as one step", async () => {
    const { leader, disk, clock } = durableSetUp();
    const steps = [
      leader.heartbeat(A),
      leader.lockGet({ lock: 'L', requester: A.serverId }),
      leader.lockGet({ lock: 'L', requester: 'bob' }),
    ];
    disk.sync();
    await Promise.all(steps);
    disk.written.splice(0);
    clock.nowMs = 1001;
    leader.tick();
    expect(disk.written).toEqual([
      {
        membership: [
          { kind: 'member_gone', id: 'a' },
          { kind: 'expired', expired: { id: 'a', seq: 0 } },
          { kind: 'epoch', epoch: 2 },
          { kind: 'placement', placement: { epoch: 2, servers: [] } },
        ],
        locks: [
          { kind: 'dequeued', lock: 'L', requester: 'bob' },
          { kind: 'held', lock: 'L', holder: 'bob' },
        ],
      },
    ]);
  });

  test('while the disk is busy, requests are refused before they change anything', async () => {
    const { leader, disk, clock } = durableSetUp();
    const first = leader.heartbeat(A);
    disk.sync();
    await first;
    disk.written.splice(0);
    disk.busy = true;
    clock.nowMs = 1001; // A is overdue: a tick would expel it
    expect(await refusal(leader.lockGet({ lock: 'L', requester: 'alice' }))).toEqual({
      kind: 'retry',
      reason: 'storage_busy',
    });
    expect(await refusal(leader.heartbeat(B))).toEqual({ kind: 'retry', reason: 'storage_busy' });
    leader.tick();
    expect(disk.written).toEqual([]);
    disk.busy = false;
    const query = leader.queryServers();
    disk.sync();
    expect(await query).toMatchObject({ epoch: 2, servers: [] }); // the expiry, now
  });

  test('a failed save answers unavailable', async () => {
    const { leader, disk } = durableSetUp();
    const granted = leader.lockGet({ lock: 'L', requester: 'alice' });
    disk.fail(new Error('disk on fire'));
    expect(await refusal(granted)).toEqual({ kind: 'unavailable', reason: undefined });
  });
});
