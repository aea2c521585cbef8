// A view leader restart plus a membership change (issue 8): the view leader runs `--in-memory`,
// so the restarted one has no placement (as if its disk were lost; a restart on its data
// directory is test/integration/viewleader-durable.test.ts), and every server's keys are stray
// copies; they must still reach all their replicas before the first placement is recorded, or
// later failures lose acknowledged writes. Also: the epoch a server sees never goes back across
// the restart.

import { DhtClient, ServerClient } from '../../client/sdk';
import { call } from '../../lib/http-client';
import { ServerApi, type View } from '../../lib/messages';
import {
  cleanupProcessesAfterAll,
  portBlock,
  startProcess,
  waitFor,
  type Proc,
} from '../support/processes';

cleanupProcessesAfterAll();
const ports = portBlock(9);
const SERVERS = 4;
const KEYS = 60;
/** Generous: a busy machine may take seconds per rebalancing; nothing here waits a fixed time. */
const SETTLE_TIMEOUT_MS = 60_000;

/**
 * Servers heartbeat every 0.2 s; a 2 s failure timeout keeps a server that a busy machine starves
 * for a second in the view (an expired ID is rejected forever), at 2 s per kill noticed.
 */
const startLeader = (): Promise<Proc> =>
  startProcess('dht-viewleader', [
    '--port',
    String(ports.viewleader),
    '--failure-timeout',
    '2',
    // Without its state, as a view leader whose disk was lost: the servers' reported epochs and
    // the planner's unvouched copies must carry the cluster (docs/design.md, "Epoch continuity").
    '--in-memory',
  ]);

const startServer = (i: number, leader: Proc): Promise<Proc> =>
  startProcess('dht-server', [
    '--port',
    String(ports.server(i)),
    '--viewleader',
    leader.address,
    '--heartbeat-interval',
    '0.2',
    '--prepare-timeout',
    '1',
  ]);

/** The view once it lists exactly `live` and is not rebalancing. */
function settled(client: DhtClient, live: readonly Proc[]): Promise<View> {
  const addresses = new Set(live.map((s) => s.address));
  return waitFor(
    `the view to settle at ${live.length} servers`,
    async () => {
      const view = await client.queryServers();
      const same =
        view.servers.length === addresses.size &&
        view.servers.every((s) => addresses.has(s.address));
      return same && !view.rebalancing ? view : undefined;
    },
    SETTLE_TIMEOUT_MS,
  );
}

/** The epoch each server holds now (its /status). */
async function serverEpochs(servers: readonly Proc[]): Promise<number[]> {
  return Promise.all(servers.map(async (s) => (await call(s.address, ServerApi.status, {})).epoch));
}

/** Every key on all its `locate` replicas and on no other server: the differences, as data. */
async function misplaced(
  client: DhtClient,
  view: View,
  keys: readonly string[],
): Promise<string[]> {
  const held = new Map<string, Set<string>>();
  for (const s of view.servers) {
    held.set(s.address, new Set(await new ServerClient(s.address).queryAllKeys()));
  }
  const problems: string[] = [];
  const located = await Promise.all(keys.map((key) => client.locate(key)));
  for (const [i, key] of keys.entries()) {
    expect(located[i].epoch).toBe(view.epoch);
    const replicas = new Set(located[i].replicas);
    for (const [address, keysHeld] of held) {
      if (replicas.has(address) && !keysHeld.has(key)) problems.push(`${address} lacks ${key}`);
      if (!replicas.has(address) && keysHeld.has(key)) problems.push(`${address} extra ${key}`);
    }
  }
  return problems;
}

/** Acknowledged keys that getr does not return with their value. */
async function unreadable(client: DhtClient, expected: Map<string, string>): Promise<string[]> {
  const entries = [...expected];
  const got = await Promise.all(
    entries.map(([key]) =>
      client.getr(key).then(
        (r) => r.value,
        (err: Error) => `<${err.message}>`,
      ),
    ),
  );
  return entries.flatMap(([key, value], i) => (got[i] === value ? [] : [`${key}: ${got[i]}`]));
}

test('a view leader restart plus a lost server, then failures down to 1: nothing acknowledged is lost', async () => {
  let leader = await startLeader();
  const servers: Proc[] = [];
  for (let i = 0; i < SERVERS; i++) servers.push(await startServer(i, leader));
  const client = new DhtClient({ viewLeader: leader.address, cacheView: false, waitMs: 30_000 });
  await settled(client, servers);

  const expected = new Map<string, string>();
  for (let i = 0; i < KEYS; i++)
    expected.set(`restart key ${i}`, `value ${i} ${'ü'.repeat(i % 5)}`);
  // Concurrent setr on distinct keys; each throws unless applied on all its replicas. Setting up,
  // not under test: a setr that failed (say aborted, its prepare having outwaited the 1 s prepare
  // timeout on a busy machine) is sent again, the same value, until the deadline.
  await Promise.all(
    [...expected].map(([key, value]) =>
      waitFor(`setr of ${key}`, async () => {
        await client.setr(key, value);
        return true;
      }),
    ),
  );
  const before = await settled(client, servers);
  const epochsBefore = [before.epoch, ...(await serverEpochs(servers))];

  // The view leader and one server die together; the view leader comes back with no memory.
  const [victim] = servers.splice(0, 1);
  leader.child.kill('SIGKILL');
  victim.child.kill('SIGKILL');
  await Promise.all([leader.exited, victim.exited]);
  leader = await startLeader();

  // The survivors rejoin one at a time (each join its own epoch and barrier).
  const after = await settled(client, servers);
  expect(after.epoch).toBeGreaterThan(Math.max(...epochsBefore));
  for (const epoch of await serverEpochs(servers)) {
    expect(epoch).toBeGreaterThan(Math.max(...epochsBefore));
  }
  expect(await misplaced(client, after, [...expected.keys()])).toEqual([]);
  expect(await unreadable(client, expected)).toEqual([]);

  // Then servers fail one at a time, with a settled rebalancing between, down to one.
  let lastEpoch = after.epoch;
  while (servers.length > 1) {
    const [next] = servers.splice(0, 1);
    next.child.kill('SIGKILL');
    await next.exited;
    const view = await settled(client, servers);
    expect(view.epoch).toBeGreaterThan(lastEpoch);
    lastEpoch = view.epoch;
    expect(await misplaced(client, view, [...expected.keys()])).toEqual([]);
  }
  expect(await unreadable(client, expected)).toEqual([]);
}, 180_000);
