// Durable servers with real processes: each keeps its bucket and its 2PC state in a LevelDB data
// directory, and a SIGKILLed server restarted on it resumes. Restarts within the failure timeout
// are invisible to the cluster (same ID, no view change, nothing copied); a server away longer
// rejoins with a new ID and is sent only what it lacks; every replica of a transaction killed at
// the hardest moments recovers it to one outcome.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { DhtClient } from '../../client/sdk';
import { DhtError } from '../../lib/errors';
import { call, keepAliveAgent } from '../../lib/http-client';
import { ServerApi, type View } from '../../lib/messages';
import { allocateReplicas } from '../../lib/ring';
import { DurableStore } from '../../server/durable-store';
import {
  Cluster,
  expectCode,
  localValues,
  pendingCounts,
  status,
  startClusterInSlot,
  type ClusterOptions,
} from '../support/cluster';
import { checkRegister, type Operation } from '../support/linearizability';
import { cleanupProcessesAfterAll, portBlock, startProcess, waitFor } from '../support/processes';

const PORTS = portBlock(14);
const TEST_TIMEOUT_MS = 90_000;
const PAUSE_FOREVER_MS = '60000';

cleanupProcessesAfterAll();
const dataRoots: string[] = [];
afterAll(() => {
  keepAliveAgent.destroy();
  for (const dir of dataRoots) fs.rmSync(dir, { recursive: true, force: true });
});

function startCluster(
  slot: number,
  options: Omit<ClusterOptions, 'viewLeaderPort' | 'serverPort' | 'dataRoot'>,
): Promise<Cluster> {
  const dataRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-durability-'));
  dataRoots.push(dataRoot);
  return startClusterInSlot(PORTS, slot, { ...options, dataRoot });
}

/** Every `copy phase done` log line of a server, parsed. */
function copyPhases(stderr: string): { epoch: number; valuesSent: number }[] {
  return stderr
    .split('\n')
    .filter((line) => line.includes('"copy phase done"'))
    .map((line) => JSON.parse(line) as { epoch: number; valuesSent: number });
}

/** The server at `address` serves the view: same epoch, its part of the rebalance done. */
async function serving(address: string, view: View): Promise<void> {
  await waitFor(`${address} to serve epoch ${view.epoch}`, async () => {
    const s = await status(address);
    return s.epoch === view.epoch && !s.rebalancing ? true : undefined;
  });
}

async function writeKeys(client: DhtClient, keys: string[], value: (k: string) => string) {
  for (const key of keys) await client.setr(key, value(key));
}

test(
  'a rolling restart within the failure timeout: every server resumes its ID, no view change, nothing copied',
  async () => {
    const cluster = await startCluster(0, { servers: 3, failureTimeoutS: 10 });
    const client = new DhtClient({ viewLeader: cluster.vl, waitMs: 10_000 });
    const keys = Array.from({ length: 40 }, (_, i) => `rolling/${i}`);
    await writeKeys(client, keys, (k) => `value of ${k}`);
    const before = await cluster.settled(3);

    for (const address of [...cluster.servers.keys()]) {
      const { serverId, keyCount } = await status(address);
      await cluster.restart(address);
      await serving(address, before);
      expect(await status(address)).toMatchObject({ serverId, keyCount });
      expect((await cluster.view()).epoch).toBe(before.epoch);
    }
    const after = await cluster.settled(3);
    expect(after.epoch).toBe(before.epoch);
    for (const server of cluster.servers.values()) {
      // A resumed server installs the view again, but its plan moves nothing.
      for (const phase of copyPhases(server.stderr())) expect(phase.valuesSent).toBe(0);
    }
    for (const key of keys) expect((await client.getr(key)).value).toBe(`value of ${key}`);
  },
  TEST_TIMEOUT_MS,
);

test(
  'a server away longer than the failure timeout rejoins with a new ID and is sent only what it lacks',
  async () => {
    const cluster = await startCluster(1, { servers: 4, failureTimeoutS: 3 });
    const client = new DhtClient({ viewLeader: cluster.vl, waitMs: 15_000 });
    const keys = Array.from({ length: 80 }, (_, i) => `away/${i}`);
    await writeKeys(client, keys, (k) => `first ${k}`);
    await cluster.settled(4);

    const away = [...cluster.servers.keys()].sort()[0];
    const index = cluster.indexAt(away);
    const oldId = (await status(away)).serverId;
    await cluster.kill(away);
    await cluster.settled(3, 30_000);
    // While it is away: new keys, and new versions of old ones.
    const added = Array.from({ length: 20 }, (_, i) => `away/new/${i}`);
    await writeKeys(client, added, (k) => `new ${k}`);
    await writeKeys(client, keys.slice(0, 20), (k) => `second ${k}`);

    // What it holds on disk, read while it is down.
    const held = new Map<string, number>();
    const store = await DurableStore.open(cluster.dataDir(index));
    for (const [key, { version }] of store.entries()) held.set(key, version);
    await store.close();
    expect(held.size).toBeGreaterThan(0);

    const phasesBefore = new Map(
      [...cluster.servers.entries()].map(([a, p]) => [a, copyPhases(p.stderr()).length]),
    );
    await cluster.startServer(index);
    const view = await cluster.settled(4, 30_000);
    const newId = (await status(away)).serverId;
    expect(newId).not.toBe(oldId);

    // What it lacks: keys it now replicates that it does not hold at their current version.
    let lacking = 0;
    let replicated = 0;
    for (const key of [...keys, ...added]) {
      const replicas = allocateReplicas(key, view);
      if (!replicas.some((r) => r.id === newId)) continue;
      replicated++;
      const other = replicas.find((r) => r.id !== newId)!;
      const current = (await call(other.address, ServerApi.get, { key })).version;
      if ((held.get(key) ?? 0) < current) lacking++;
    }
    let sent = 0;
    for (const [address, server] of cluster.servers) {
      if (address === away) continue;
      const phases = copyPhases(server.stderr()).slice(phasesBefore.get(address) ?? 0);
      sent += phases.reduce((sum, p) => sum + p.valuesSent, 0);
    }
    expect(sent).toBe(lacking);
    expect(lacking).toBeLessThan(replicated); // its old copies spared some
    for (const key of added) expect((await client.getr(key)).value).toBe(`new ${key}`);
    for (const key of keys.slice(0, 20)) {
      expect((await client.getr(key)).value).toBe(`second ${key}`);
    }
  },
  TEST_TIMEOUT_MS,
);

describe('every replica SIGKILLed inside a transaction, restarted on its directory', () => {
  test.each([
    ['after the votes were synced', 'DHT_FAULT_PAUSE_BEFORE_COMMIT_MS', 'v0'],
    ['after the primary applied the commit', 'DHT_FAULT_PAUSE_AFTER_PRIMARY_COMMIT_MS', 'v1'],
  ])(
    '%s: the replicas recover one outcome (%s pauses the coordinator)',
    async (_when, fault, expected) => {
      const slot = fault.includes('BEFORE') ? 2 : 3;
      const cluster = await startCluster(slot, {
        servers: 3,
        failureTimeoutS: 10,
        prepareTimeoutS: 1,
      });
      const key = `crash/${slot}`;
      expectCode(await cluster.cli('setr', key, 'v0'), [0], 'setr v0');
      const replicas = await cluster.replicasOf(key);
      const coordinator = cluster.spawnCoordinator(['setr', key, 'v1'], {
        [fault]: PAUSE_FOREVER_MS,
      });
      if (fault.includes('BEFORE')) {
        await waitFor('every replica to hold the transaction prepared', async () =>
          (await pendingCounts(replicas)).every((n) => n === 1) ? true : undefined,
        );
      } else {
        await waitFor('the primary to apply v1', async () =>
          (await localValues([replicas[0]], key))[0] === 'v1' ? true : undefined,
        );
      }
      coordinator.child.kill('SIGKILL');
      const addresses = replicas.map((r) => r.address);
      await Promise.all(addresses.map((a) => cluster.kill(a)));
      await Promise.all(addresses.map((a) => cluster.startServer(cluster.indexAt(a))));

      await cluster.settled(3, 30_000);
      await waitFor('the replicas to decide', async () =>
        (await pendingCounts(replicas)).every((n) => n === 0) ? true : undefined,
      );
      expect(await localValues(replicas, key)).toEqual([expected, expected, expected]);
      const read = await cluster.cli('getr', key);
      expectCode(read, [0], 'getr');
      expect(read.stdout).toBe(expected);
    },
    TEST_TIMEOUT_MS,
  );
});

describe('bad disks', () => {
  test(
    'a failed write refuses the request that needed it; the server keeps serving reads',
    async () => {
      const failFile = path.join(os.tmpdir(), `dht-fail-sync-${process.pid}`);
      fs.rmSync(failFile, { force: true });
      const cluster = await startCluster(4, {
        servers: 3,
        failureTimeoutS: 10,
        env: { DHT_FAULT_SYNC_FAIL_FILE: failFile },
      });
      try {
        const key = 'disk/full';
        expectCode(await cluster.cli('setr', key, 'v0'), [0], 'setr v0');
        fs.writeFileSync(failFile, 'every sync fails while this file exists');
        // Every replica's vote needs a sync: refused, nothing done (exit 1), no value changed.
        const refused = await cluster.cli('--json', 'setr', key, 'v1');
        expectCode(refused, [1], 'setr while the disks fail');
        expect(JSON.parse(refused.stdout)).toMatchObject({
          status: 'aborted',
          error: expect.stringContaining('sync failed'),
        });
        // Reads go on, from every replica.
        const read = await cluster.cli('getr', key);
        expectCode(read, [0], 'getr while the disks fail');
        expect(read.stdout).toBe('v0');
        expect(await localValues(await cluster.replicasOf(key), key)).toEqual(['v0', 'v0', 'v0']);

        // A failed sync is not retried (the disk's state is unknown): restart to write again.
        fs.rmSync(failFile);
        for (const address of [...cluster.servers.keys()]) await cluster.restart(address);
        await cluster.settled(3, 30_000);
        expectCode(await cluster.cli('--wait', '10', 'setr', key, 'v2'), [0], 'setr after restart');
        expect((await cluster.cli('getr', key)).stdout).toBe('v2');
      } finally {
        fs.rmSync(failFile, { force: true });
      }
    },
    TEST_TIMEOUT_MS,
  );

  test('a data directory in use, corrupt, or not a directory: the server refuses to start', async () => {
    const cluster = await startCluster(5, { servers: 1, failureTimeoutS: 10 });
    const [address] = [...cluster.servers.keys()];
    const dir = cluster.dataDir(cluster.indexAt(address));
    const args = ['--viewleader', cluster.vl, '--port', '0', '--data-dir', dir];

    // In use by the running server.
    await expect(startProcess('dht-server', args)).rejects.toThrow(
      /exited \(1\)[\s\S]*ERROR: .*lock/i,
    );

    // Corrupt: the manifest pointer names a file that is not there.
    await cluster.kill(address);
    fs.writeFileSync(path.join(dir, 'CURRENT'), 'MANIFEST-999999\n');
    await expect(startProcess('dht-server', args)).rejects.toThrow(/exited \(1\)[\s\S]*ERROR: /);

    // A file where the directory should be.
    const file = path.join(os.tmpdir(), `dht-not-a-dir-${process.pid}`);
    fs.writeFileSync(file, 'not a data directory');
    try {
      const onFile = ['--viewleader', cluster.vl, '--port', '0', '--data-dir', file];
      await expect(startProcess('dht-server', onFile)).rejects.toThrow(
        /exited \(1\)[\s\S]*ERROR: /,
      );
    } finally {
      fs.rmSync(file, { force: true });
    }
  });
});

// ---- every process killed at once under load ----------------------------------------------------

const LOAD_KEYS = ['power/alpha', 'power/beta', 'power/gamma'];
const LOAD_WORKERS = 4;
const LOAD_OPS_MAX = 400;

interface Recorded extends Operation {
  readonly key: string;
}

type LoadOp =
  { readonly type: 'write'; readonly value: string } | { readonly type: 'delete' | 'read' };

/** One setr, delr or getr through the SDK, recorded with its interval and outcome. */
async function recordOne(
  client: DhtClient,
  who: string,
  key: string,
  op: LoadOp,
): Promise<Recorded> {
  const start = performance.now();
  const done = (value: string | null, outcome: Operation['outcome']): Recorded => ({
    key,
    type: op.type,
    value,
    start,
    end: performance.now(),
    outcome,
    process: who,
  });
  try {
    if (op.type === 'write') await client.setr(key, op.value);
    if (op.type === 'delete') await client.delr(key);
    if (op.type === 'read') return done((await client.getr(key)).value, 'ok');
    return done(op.type === 'write' ? op.value : null, 'ok');
  } catch (err) {
    if (!(err instanceof DhtError)) throw err;
    if (op.type === 'read' && err.kind === 'not_found') return done(null, 'ok');
    // The contract: only exit 3 (`unknown`) may have taken effect; every other error did not.
    return done(op.type === 'write' ? op.value : null, err.kind === 'unknown' ? 'unknown' : 'fail');
  }
}

test(
  'every process SIGKILLed at once under concurrent setr and delr, all restarted: every acknowledged write is there, histories linearizable',
  async () => {
    const cluster = await startCluster(6, { servers: 3, failureTimeoutS: 5, prepareTimeoutS: 1 });
    const history: Recorded[] = [];
    let stop = false;
    let writes = 0;
    const phase = { before: 0, after: 0, restarted: false };
    const workers = Array.from({ length: LOAD_WORKERS }, async (_, w) => {
      const client = new DhtClient({ viewLeader: cluster.vl, timeoutMs: 1000, waitMs: 0 });
      for (let i = 0; !stop && history.length < LOAD_OPS_MAX; i++) {
        const key = LOAD_KEYS[(w + i) % LOAD_KEYS.length];
        const kind = i % 5;
        const load: LoadOp =
          kind === 4
            ? { type: 'delete' }
            : kind % 2 === 0
              ? { type: 'write', value: `w${w}-${writes++}` }
              : { type: 'read' };
        const op = await recordOne(client, `w${w}`, key, load);
        history.push(op);
        if (op.outcome === 'ok') phase[phase.restarted ? 'after' : 'before']++;
        if (op.outcome !== 'ok') await new Promise((r) => setTimeout(r, 50)); // the outage: pace
      }
    });
    await waitFor(
      'some operations before the power cut',
      () => (phase.before >= 40 ? true : undefined),
      30_000,
    );
    await cluster.killEverythingAndRestart();
    phase.restarted = true;
    await cluster.settled(3, 30_000);
    await waitFor(
      'some operations after the restart',
      () => (phase.after >= 40 ? true : undefined),
      30_000,
    );
    stop = true;
    await Promise.all(workers);

    // A last read of every key, once everything is settled, closes each history.
    const reader = new DhtClient({ viewLeader: cluster.vl, waitMs: 10_000 });
    for (const key of LOAD_KEYS) {
      history.push(await recordOne(reader, 'final', key, { type: 'read' }));
    }
    expect(history.some((op) => op.type === 'delete' && op.outcome === 'ok')).toBe(true);
    for (const key of LOAD_KEYS) {
      const result = checkRegister(history.filter((op) => op.key === key));
      if (!result.ok) throw new Error(`key ${key}: ${result.explanation}`);
      const values = await localValues(await cluster.replicasOf(key), key);
      expect(new Set(values).size).toBe(1);
    }
  },
  TEST_TIMEOUT_MS,
);
