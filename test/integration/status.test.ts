// `dht-client status` against a real cluster, during and after a rebalancing: the servers report
// their copy progress with their heartbeats, the view leader shows it, and it moves up to 100%;
// then every server's keys, share of the ring and heartbeat are there, as a table and as --json.

import { DhtClient } from '../../client/sdk';
import { ClusterStatus } from '../../lib/messages';
import { Cluster } from '../support/cluster';
import { cleanupProcessesAfterAll, portBlock } from '../support/processes';

const ports = portBlock(19);
cleanupProcessesAfterAll();

/** Large values, so that the fourth server's copies take many transfer batches (4 MiB each). */
const KEYS = 160;
const VALUE = 'v'.repeat(128 * 1024);

test('status shows a rebalancing move to 100%, then every server', async () => {
  const cluster = await Cluster.start({
    servers: 3,
    viewLeaderPort: ports.viewleader,
    serverPort: ports.server,
    // No server is expelled by a busy machine's pauses during the test.
    failureTimeoutS: 5,
  });
  const client = new DhtClient({ viewLeader: cluster.vl, waitMs: 20_000 });
  const writers = Array.from({ length: 4 }, async (_, w) => {
    for (let i = w; i < KEYS; i += 4) await client.setr(`key-${i}`, `${i}:${VALUE}`);
  });
  await Promise.all(writers);
  const before = await cluster.settled(3, 60_000);

  // A fourth server joins: the others copy about three quarters of the keys to it.
  const joining = cluster.startServer(3);
  const samples: ClusterStatus[] = [];
  const sampler = (async () => {
    for (let i = 0; i < 3000; i++) {
      const status = await client.clusterStatus();
      if (status.epoch > before.epoch) samples.push(status);
      if (status.epoch > before.epoch && status.servers.length === 4 && !status.rebalancing) {
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const server = await joining;
  await sampler;
  const after = await cluster.settled(4, 60_000);

  // During: rebalancing, with progress short of 100%, never going back; at the end, 100%.
  const epochSamples = samples.filter((s) => s.epoch === after.epoch);
  const during = epochSamples.filter((s) => s.rebalancing);
  expect(during.length).toBeGreaterThan(0);
  expect(during[0].progress.percent).toBeLessThan(100);
  for (let i = 1; i < epochSamples.length; i++) {
    expect(epochSamples[i].progress.copiesDone).toBeGreaterThanOrEqual(
      epochSamples[i - 1].progress.copiesDone,
    );
  }
  const steps = new Set(during.map((s) => s.progress.copiesDone));
  console.log(
    `${during.length} samples while rebalancing, ${steps.size} distinct copy counts: ` +
      [...steps].join(', '),
  );

  // After, with the real CLI: --json as the contract says, 100%, the copies the servers logged.
  const json = await cluster.cli('--json', 'status');
  expect(json.code).toBe(0);
  const status = JSON.parse(json.stdout) as ClusterStatus & { status: string };
  expect(status.status).toBe('ok');
  expect(status.epoch).toBe(after.epoch);
  expect(status.rebalancing).toBe(false);
  expect(status.progress.percent).toBe(100);
  expect(status.progress.copiesDone).toBe(status.progress.copiesTotal);
  const logged = loggedCopies(
    [...cluster.servers.values()].map((p) => p.stderr()),
    after.epoch,
  );
  expect(status.progress.copiesTotal).toBe(logged);
  expect(status.progress.copiesTotal).toBeGreaterThan(KEYS / 2);
  expect(status.servers.map((s) => s.address).sort()).toEqual(
    after.servers.map((s) => s.address).sort(),
  );
  let keys = 0;
  let share = 0;
  for (const s of status.servers) {
    expect(Object.keys(s)).toEqual(
      expect.arrayContaining(['id', 'address', 'keys', 'share', 'lastHeartbeatS']),
    );
    expect(s.stage).toBe('done');
    expect(s.lastHeartbeatS).toBeLessThan(5);
    expect(s.share).toBeGreaterThan(50);
    keys += s.keys ?? 0;
    share += s.share;
  }
  expect(keys).toBe(3 * KEYS); // each key on exactly its three replicas
  expect(share).toBeCloseTo(300, 0);
  expect(status.servers.find((s) => s.address === server.address)?.keys).toBeGreaterThan(0);

  // The table, for a person.
  const table = await cluster.cli('status');
  expect(table.code).toBe(0);
  const lines = table.stdout.trimEnd().split('\n');
  expect(lines[0]).toMatch(new RegExp(`^epoch ${after.epoch}, 4 servers, settled`));
  expect(lines[1]).toMatch(/^ADDRESS\s+ID\s+KEYS\s+SHARE\s+HEARTBEAT\s+REBALANCING$/);
  expect(lines).toHaveLength(6);
  for (const s of status.servers) {
    expect(table.stdout).toMatch(new RegExp(`${s.address}\\s+${s.id}\\s+\\d+\\s+\\d+\\.\\d%`));
  }
}, 180_000);

/** The copies (keys pushed + offered) each server logged for `epoch`'s copy phase, summed. */
function loggedCopies(logs: readonly string[], epoch: number): number {
  let copies = 0;
  for (const log of logs) {
    for (const line of log.split('\n')) {
      if (!line.includes('"copy phase done"')) continue;
      const entry = JSON.parse(line) as { epoch: number; keysPushed: number; keysOffered: number };
      if (entry.epoch === epoch) copies += entry.keysPushed + entry.keysOffered;
    }
  }
  return copies;
}
