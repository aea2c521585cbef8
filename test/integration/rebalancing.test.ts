// Rebalancing with real processes: exact placement after every view change, 4 -> 1 -> 4 with
// every value intact, a failure during a rebalancing, refusals while rebalancing, and a commit
// that straddles an epoch change.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { DhtClient, ServerClient } from '../../client/sdk';
import { allocateReplicas } from '../../lib/ring';
import type { View } from '../../lib/messages';
import {
  cleanupProcessesAfterAll,
  portBlock,
  ROOT,
  runClient,
  startProcess,
  waitFor,
  type Proc,
} from '../support/processes';

cleanupProcessesAfterAll();
const ports = portBlock(7);
const FAST_HEARTBEAT = ['--heartbeat-interval', '0.2', '--prepare-timeout', '1'];

interface Cluster {
  viewleader: Proc;
  servers: Proc[];
  client: DhtClient;
  nextPort: number;
}

async function startCluster(servers: number, failureTimeoutS = 2): Promise<Cluster> {
  const viewleader = await startProcess('dht-viewleader', [
    '--port',
    String(ports.viewleader),
    '--failure-timeout',
    String(failureTimeoutS),
  ]);
  const cluster: Cluster = {
    viewleader,
    servers: [],
    client: new DhtClient({ viewLeader: viewleader.address, waitMs: 20_000 }),
    nextPort: 0,
  };
  for (let i = 0; i < servers; i++) await addServer(cluster);
  await settled(cluster);
  return cluster;
}

async function addServer(cluster: Cluster): Promise<Proc> {
  const server = await startProcess('dht-server', [
    '--port',
    String(ports.server(cluster.nextPort++)),
    '--viewleader',
    cluster.viewleader.address,
    ...FAST_HEARTBEAT,
  ]);
  cluster.servers.push(server);
  return server;
}

function kill(cluster: Cluster, server: Proc): void {
  server.child.kill('SIGKILL');
  cluster.servers.splice(cluster.servers.indexOf(server), 1);
}

/** Wait until the view is exactly the live servers and no rebalancing is under way. */
async function settled(cluster: Cluster): Promise<View> {
  const live = new Set(cluster.servers.map((s) => s.address));
  return waitFor('the view to settle', async () => {
    const view = await cluster.client.queryServers();
    const same =
      view.servers.length === live.size && view.servers.every((s) => live.has(s.address));
    return same && !view.rebalancing ? view : undefined;
  });
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
  cluster: Cluster,
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
    const got = await cluster.client
      .getr(key)
      .catch((err: Error) => ({ value: `<${err.message}>` }));
    if (got.value !== value) wrong.push(`${key}: ${got.value}`);
  }
  expect(wrong).toEqual([]);
}

test('placement is exact after joins and leaves; 4 -> 1 -> 4 keeps every value', async () => {
  const cluster = await startCluster(4);
  const expected = await writeKeys(cluster.client, 300, 'first');
  await expectExactPlacement(cluster, await settled(cluster), expected);

  let lastEpoch = (await cluster.client.queryServers()).epoch;
  while (cluster.servers.length > 1) {
    kill(cluster, cluster.servers[0]);
    const view = await settled(cluster);
    expect(view.epoch).toBeGreaterThan(lastEpoch);
    lastEpoch = view.epoch;
    await expectExactPlacement(cluster, view, expected);
  }
  while (cluster.servers.length < 4) {
    await addServer(cluster);
    const view = await settled(cluster);
    await expectExactPlacement(cluster, view, expected);
  }
}, 120_000);

test('a second failure during a rebalancing converges to the newest view without loss', async () => {
  const cluster = await startCluster(5);
  const expected = await writeKeys(cluster.client, 300, 'second');
  const before = await cluster.client.queryServers();
  // The first victim's death starts a rebalancing that cannot finish while the second victim,
  // still in the view, is dead: the second view change lands in the middle of it.
  const [first, second] = cluster.servers;
  kill(cluster, first);
  await waitFor('the first view change', async () => {
    const view = await cluster.client.queryServers();
    return view.epoch > before.epoch && view.servers.length === 4 ? view : undefined;
  });
  kill(cluster, second);
  const view = await settled(cluster);
  expect(view.servers).toHaveLength(3);
  await expectExactPlacement(cluster, view, expected);
}, 120_000);

test('a join during a rebalancing also converges', async () => {
  const cluster = await startCluster(4);
  const expected = await writeKeys(cluster.client, 200, 'third');
  kill(cluster, cluster.servers[0]);
  await addServer(cluster);
  await expectExactPlacement(cluster, await settled(cluster), expected);
}, 120_000);

test('setr and getr refuse with exit 75 while rebalancing, and --wait waits it out', async () => {
  // A stopped server stays in the view until the failure timeout (4 s here), so it can neither
  // receive its share of a join's copies nor report: the rebalancing lasts that long.
  const cluster = await startCluster(3, 4);
  await cluster.client.setr('steady', 'v1');
  const before = await cluster.client.queryServers();
  const victim = cluster.servers[0];
  victim.child.kill('SIGSTOP');
  await addServer(cluster);
  await waitFor('a rebalancing', async () => {
    const view = await cluster.client.queryServers();
    return view.rebalancing && view.epoch > before.epoch ? view : undefined;
  });
  // An SDK client (no --wait) that caches the view while it says "rebalancing".
  const cachingClient = new DhtClient({ viewLeader: cluster.viewleader.address, waitMs: 0 });
  expect((await cachingClient.queryServers()).rebalancing).toBe(true);
  const vl = ['--viewleader', cluster.viewleader.address];
  const refused = await runClient([...vl, '--json', 'setr', 'during', 'x']);
  const read = await runClient([...vl, 'getr', 'steady']);
  // The window held for both commands (otherwise the test proves nothing and must fail).
  expect((await cluster.client.queryServers()).rebalancing).toBe(true);
  expect(refused.code).toBe(75);
  expect(JSON.parse(refused.stdout)).toEqual({ status: 'retry', error: expect.any(String) });
  expect(read.code).toBe(75);
  expect(read.stdout).toBe('');
  expect(read.stderr).toMatch(/^ERROR: .*rebalancing/);

  victim.child.kill('SIGKILL');
  cluster.servers.splice(cluster.servers.indexOf(victim), 1);
  const waited = await runClient([...vl, '--wait', '20', 'setr', 'after', 'y']);
  expect(waited.code).toBe(0);
  await settled(cluster);
  expect((await cluster.client.getr('after')).value).toBe('y');
  expect((await cluster.client.getr('steady')).value).toBe('v1');
  await expect(cluster.client.getr('during')).rejects.toMatchObject({ kind: 'not_found' });
  // Its stale "rebalancing" view is refreshed, not trusted forever.
  await cachingClient.setr('cached', 'z');
  expect((await cachingClient.getr('cached')).value).toBe('z');
}, 120_000);

test('a commit across an epoch change fails and leaves no replica changed', async () => {
  const cluster = await startCluster(3);
  await cluster.client.setr('k', 'old');
  // A real client that prepares, then pauses 3 s before committing; the view changes meanwhile.
  const child = spawn(
    process.execPath,
    [
      path.join(ROOT, 'bin', 'dht-client'),
      '--viewleader',
      cluster.viewleader.address,
      '--json',
      'setr',
      'k',
      'new',
    ],
    {
      cwd: ROOT,
      env: { ...process.env, DHT_FAULT_PAUSE_BEFORE_COMMIT_MS: '3000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    await waitFor('the transaction to be prepared everywhere', async () => {
      const statuses = await Promise.all(
        cluster.servers.map((s) =>
          fetch(`http://${s.address}/status`, { method: 'POST' }).then(
            (r) => r.json() as Promise<{ pendingTransactions: number }>,
          ),
        ),
      );
      return statuses.every((s) => s.pendingTransactions === 1) ? true : undefined;
    });
    await addServer(cluster);
    const code = await exited;
    expect(code).toBe(1);
    expect(JSON.parse(stdout).status).toBe('aborted');
  } finally {
    child.kill('SIGKILL');
  }
  await settled(cluster);
  expect((await cluster.client.getr('k')).value).toBe('old');
  await cluster.client.setr('k', 'newer');
  expect((await cluster.client.getr('k')).value).toBe('newer');
}, 120_000);
