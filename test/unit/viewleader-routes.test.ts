// The view leader's shell around an address takeover (viewleader/routes.ts): a heartbeat that
// contests a live server's address waits for a probe of that address, and only that heartbeat
// waits. The probe is a function the test controls, so every answer and every ordering is exact.

import { DhtError } from '../../lib/errors';
import { createLogger } from '../../lib/logger';
import { LockTable } from '../../viewleader/locks';
import { Membership, type AddressProbe } from '../../viewleader/membership';
import { ViewLeader } from '../../viewleader/routes';

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
  expect(leader.queryServers()).toMatchObject({ epoch: 1, servers: [{ id: 'a' }] });
});

test('while a probe is out, other heartbeats and queries are answered at once', async () => {
  const { leader, probes } = setUp();
  await leader.heartbeat(A);
  const contested = leader.heartbeat({ serverId: 'a2', address: A.address });
  // The probe has not answered; everything else goes on.
  expect((await leader.heartbeat(B)).epoch).toBe(2);
  expect((await leader.heartbeat(A)).epoch).toBe(2);
  expect(leader.queryServers().servers.map((s) => s.id)).toEqual(['a', 'b']);
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
