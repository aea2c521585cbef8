// Rebalancing with real processes: exact placement after every view change, 4 -> 1 -> 4 with
// every value intact, a failure during a rebalancing, refusals while rebalancing, and a commit
// that straddles an epoch change.

import { DhtClient, ServerClient } from '../../client/sdk';
import { allocateReplicas } from '../../lib/ring';
import type { View } from '../../lib/messages';
import { Cluster, status } from '../support/cluster';
import { cleanupProcessesAfterAll, portBlock, waitFor } from '../support/processes';

cleanupProcessesAfterAll();
const ports = portBlock(7);

/**
 * A view leader and `servers` servers (heartbeats every 0.2 s), and an SDK client of theirs.
 * Every test uses the whole port block: a join takes the next unused port. The prepare timeout
 * stays at its default unless a test is about it: at 1 s, a busy machine's scheduling delay
 * between a vote and its accept let the replicas recover a healthy setr (seen in a full run).
 */
async function startCluster(
  servers: number,
  {
    failureTimeoutS = 2,
    prepareTimeoutS,
  }: { failureTimeoutS?: number; prepareTimeoutS?: number } = {},
): Promise<{ cluster: Cluster; client: DhtClient }> {
  const cluster = await Cluster.start({
    servers,
    viewLeaderPort: ports.viewleader,
    serverPort: (i) => ports.server(i),
    failureTimeoutS,
    prepareTimeoutS,
  });
  return { cluster, client: new DhtClient({ viewLeader: cluster.vl, waitMs: 20_000 }) };
}

/** The first live server, in the order they were started. */
function firstServer(cluster: Cluster): string {
  return [...cluster.servers.keys()][0];
}

/** Wait until the view is exactly the live servers, not rebalancing, and installed by each. */
function settled(cluster: Cluster): Promise<View> {
  return cluster.settled(cluster.servers.size);
}

async function writeKeys(
  client: DhtClient,
  count: number,
  tag: string,
): Promise<Map<string, string>> {
  const expected = new Map<string, string>();
  for (let i = 0; i < count; i++)
    expected.set(`key ${i}/=%`, `${tag} value ${i} ${'é'.repeat(i % 7)}`);
  const entries = [...expected];
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < entries.length) {
        const [key, value] = entries[next++];
        await client.setr(key, value);
      }
    }),
  );
  return expected;
}

/** Every key on exactly its replicas and nowhere else; every value readable with getr. */
async function expectExactPlacement(
  client: DhtClient,
  view: View,
  expected: Map<string, string>,
): Promise<void> {
  const holdings = new Map<string, Set<string>>();
  for (const s of view.servers)
    holdings.set(s.id, new Set(await new ServerClient(s.address).queryAllKeys()));
  const misplaced: string[] = [];
  for (const key of expected.keys()) {
    const replicas = new Set(allocateReplicas(key, view).map((s) => s.id));
    for (const s of view.servers) {
      if (holdings.get(s.id)!.has(key) !== replicas.has(s.id))
        misplaced.push(`${key} @ ${s.address}`);
    }
  }
  expect(misplaced).toEqual([]);
  const wrong: string[] = [];
  for (const [key, value] of expected) {
    const got = await client.getr(key).catch((err: Error) => ({ value: `<${err.message}>` }));
    if (got.value !== value) wrong.push(`${key}: ${got.value}`);
  }
  expect(wrong).toEqual([]);
}

test('placement is exact after joins and leaves; 4 -> 1 -> 4 keeps every value', async () => {
  const { cluster, client } = await startCluster(4);
  const expected = await writeKeys(client, 300, 'first');
  await expectExactPlacement(client, await settled(cluster), expected);

  let lastEpoch = (await client.queryServers()).epoch;
  while (cluster.servers.size > 1) {
    await cluster.kill(firstServer(cluster));
    const view = await settled(cluster);
    expect(view.epoch).toBeGreaterThan(lastEpoch);
    lastEpoch = view.epoch;
    await expectExactPlacement(client, view, expected);
  }
  while (cluster.servers.size < 4) {
    await cluster.addServer();
    const view = await settled(cluster);
    await expectExactPlacement(client, view, expected);
  }
}, 120_000);

test('a second failure during a rebalancing converges to the newest view without loss', async () => {
  const { cluster, client } = await startCluster(5);
  const expected = await writeKeys(client, 300, 'second');
  const before = await client.queryServers();
  // The first victim's death starts a rebalancing that cannot finish while the second victim,
  // still in the view, is dead: the second view change lands in the middle of it.
  const [first, second] = cluster.servers.keys();
  await cluster.kill(first);
  await waitFor('the first view change', async () => {
    const view = await client.queryServers();
    return view.epoch > before.epoch && view.servers.length === 4 ? view : undefined;
  });
  await cluster.kill(second);
  const view = await settled(cluster);
  expect(view.servers).toHaveLength(3);
  await expectExactPlacement(client, view, expected);
}, 120_000);

test('a join during a rebalancing also converges', async () => {
  const { cluster, client } = await startCluster(4);
  const expected = await writeKeys(client, 200, 'third');
  await cluster.kill(firstServer(cluster));
  await cluster.addServer();
  await expectExactPlacement(client, await settled(cluster), expected);
}, 120_000);

test('setr and getr refuse with exit 75 while rebalancing, and --wait waits it out', async () => {
  // A stopped server stays in the view until the failure timeout (4 s here), so it can neither
  // receive its share of a join's copies nor report: the rebalancing lasts that long.
  const { cluster, client } = await startCluster(3, { failureTimeoutS: 4 });
  await client.setr('steady', 'v1');
  const before = await client.queryServers();
  const victim = firstServer(cluster);
  cluster.signal(victim, 'SIGSTOP');
  await cluster.addServer();
  await waitFor('a rebalancing', async () => {
    const view = await client.queryServers();
    return view.rebalancing && view.epoch > before.epoch ? view : undefined;
  });
  // An SDK client (no --wait) that caches the view while it says "rebalancing".
  const cachingClient = new DhtClient({ viewLeader: cluster.vl, waitMs: 0 });
  expect((await cachingClient.queryServers()).rebalancing).toBe(true);
  const refused = await cluster.cli('--json', 'setr', 'during', 'x');
  const read = await cluster.cli('getr', 'steady');
  // The window held for both commands (otherwise the test proves nothing and must fail).
  expect((await client.queryServers()).rebalancing).toBe(true);
  expect(refused.code).toBe(75);
  expect(JSON.parse(refused.stdout)).toEqual({ status: 'retry', error: expect.any(String) });
  expect(read.code).toBe(75);
  expect(read.stdout).toBe('');
  expect(read.stderr).toMatch(/^ERROR: .*rebalancing/);

  await cluster.kill(victim);
  const waited = await cluster.cli('--wait', '20', 'setr', 'after', 'y');
  expect(waited.code).toBe(0);
  await settled(cluster);
  expect((await client.getr('after')).value).toBe('y');
  expect((await client.getr('steady')).value).toBe('v1');
  await expect(client.getr('during')).rejects.toMatchObject({ kind: 'not_found' });
  // Its stale "rebalancing" view is refreshed, not trusted forever.
  await cachingClient.setr('cached', 'z');
  expect((await cachingClient.getr('cached')).value).toBe('z');
}, 120_000);

test('a commit across an epoch change fails and leaves no replica changed', async () => {
  // A 1 s prepare timeout: the replicas recover (abort) the paused transaction on their own.
  const { cluster, client } = await startCluster(3, { prepareTimeoutS: 1 });
  await client.setr('k', 'old');
  // A real client that prepares, then pauses 3 s before committing; the view changes meanwhile.
  const coordinator = cluster.spawnCoordinator(['--json', 'setr', 'k', 'new'], {
    DHT_FAULT_PAUSE_BEFORE_COMMIT_MS: '3000',
  });
  await waitFor('the transaction to be prepared everywhere', async () => {
    const statuses = await Promise.all([...cluster.servers.keys()].map(status));
    return statuses.every((s) => s.pendingTransactions === 1) ? true : undefined;
  });
  await cluster.addServer();
  const result = await coordinator.done;
  expect(result.code).toBe(1);
  expect(JSON.parse(result.stdout).status).toBe('aborted');
  await settled(cluster);
  expect((await client.getr('k')).value).toBe('old');
  await client.setr('k', 'newer');
  expect((await client.getr('k')).value).toBe('newer');
}, 120_000);
