// Two-phase commit with real processes: a view leader and storage servers on loopback, the
// client CLI as coordinator. Each test is one hard case of replicated writes and reads: a
// coordinator killed before or after the decision, reads racing a commit, stale views and
// restarted servers, contention on one key. The coordinator is stopped at a chosen point with
// the SDK's fault pauses (DHT_FAULT_PAUSE_*), then SIGKILLed there.

import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { DhtClient } from '../../client/sdk';
import { DhtError } from '../../lib/errors';
import { call, keepAliveAgent } from '../../lib/http-client';
import { ServerApi, type ServerRef } from '../../lib/messages';
import { allocateReplicas } from '../../lib/ring';
import {
  Cluster,
  expectCode,
  localGet,
  localValues,
  pendingCounts,
  status,
  startClusterInSlot,
  type ClusterOptions,
} from '../support/cluster';
import { checkRegister, type Operation, type OperationOutcome } from '../support/linearizability';
import { cleanupProcessesAfterAll, portBlock, waitFor, type CliResult } from '../support/processes';

/** Each test has its own slot of ports (startClusterInSlot), so no test meets the processes or
 * the kept-alive connections of another. */
const PORTS = portBlock(5);
const KEY = 'account/42';
const TEST_TIMEOUT_MS = 45_000;
/** The contract: a coordinator that dies mid-commit blocks its key for at most 10 s. */
const KEY_BLOCKED_MS_MAX = 10_000;
const PAUSE_FOREVER_MS = '60000';

cleanupProcessesAfterAll();

afterAll(() => {
  keepAliveAgent.destroy();
});

function startCluster(
  slot: number,
  options: Omit<ClusterOptions, 'viewLeaderPort' | 'serverPort'>,
): Promise<Cluster> {
  return startClusterInSlot(PORTS, slot, options);
}

async function setrOk(cluster: Cluster, key: string, value: string): Promise<void> {
  expectCode(await cluster.cli('setr', key, value), [0], `setr ${key} ${value}`);
}

/** A prepare straight to one server, as a coordinator would send it. */
function prepare(
  target: ServerRef,
  epoch: number,
  replicas: readonly ServerRef[],
  value: string,
  txid = randomUUID(),
) {
  return call(target.address, ServerApi.prepare, {
    txid,
    key: KEY,
    value,
    epoch,
    serverId: target.id,
    replicas: [...replicas],
  });
}

// ---- the cases ----------------------------------------------------------------------------------

test(
  'a coordinator that dies before commit blocks its key for at most 10 s; then a new setr commits everywhere',
  async () => {
    // The default prepare timeout: this is the contract's 10-second bound as users get it.
    const cluster = await startCluster(0, { servers: 3 });
    await setrOk(cluster, KEY, 'v1');
    const replicas = await cluster.replicasOf(KEY);

    const coordinator = cluster.spawnCoordinator(['setr', KEY, 'v2'], {
      DHT_FAULT_PAUSE_BEFORE_COMMIT_MS: PAUSE_FOREVER_MS,
    });
    await waitFor('every replica to hold the transaction prepared', async () =>
      (await pendingCounts(replicas)).every((n) => n === 1) ? true : undefined,
    );
    coordinator.child.kill('SIGKILL');
    const killedAtMs = performance.now();
    expect((await coordinator.done).code).toBeNull();

    // Nothing was committed: every copy still holds v1, and a replicated read never shows v2.
    expect(await localValues(replicas, KEY)).toEqual(['v1', 'v1', 'v1']);
    const blockedRead = await cluster.cli('getr', KEY);
    expectCode(blockedRead, [0, 75], 'getr while the key is blocked');
    if (blockedRead.code === 0) expect(blockedRead.stdout).toBe('v1');

    const attempts: CliResult[] = [];
    await waitFor(
      'a new setr to commit',
      async () => {
        const result = await cluster.cli('setr', KEY, 'v3');
        attempts.push(result);
        return result.code === 0 ? result : undefined;
      },
      KEY_BLOCKED_MS_MAX,
      200,
    );
    expect(performance.now() - killedAtMs).toBeLessThan(KEY_BLOCKED_MS_MAX);
    // While blocked, a setr is refused outright (key busy), never left in doubt.
    for (const a of attempts) expectCode(a, [0, 1, 75], 'setr while the key is blocked');

    expect(await localValues(replicas, KEY)).toEqual(['v3', 'v3', 'v3']);
    expect(await pendingCounts(replicas)).toEqual([0, 0, 0]);
    const read = await cluster.cli('getr', KEY);
    expectCode(read, [0], 'getr');
    expect(read.stdout).toBe('v3');
  },
  TEST_TIMEOUT_MS,
);

test(
  'a coordinator that dies right after the primary committed: every replica learns v2 from the primary',
  async () => {
    // A prepare timeout of 3 s leaves time to see the other replicas still prepared.
    const cluster = await startCluster(1, { servers: 3, prepareTimeoutS: 3 });
    await setrOk(cluster, KEY, 'v1');
    const replicas = await cluster.replicasOf(KEY);
    const [primary, ...others] = replicas;

    const coordinator = cluster.spawnCoordinator(['setr', KEY, 'v2'], {
      DHT_FAULT_PAUSE_AFTER_PRIMARY_COMMIT_MS: PAUSE_FOREVER_MS,
    });
    await waitFor('the primary to commit while the others are prepared', async () => {
      const [value, pending] = await Promise.all([
        localGet(primary.address, KEY),
        pendingCounts(others),
      ]);
      return value === 'v2' && pending.every((n) => n === 1) ? true : undefined;
    });
    expect(await localValues(others, KEY)).toEqual(['v1', 'v1']);

    // Readers run all along: the primary is asked first and has decided, so every read is v2.
    const reads: CliResult[] = [];
    let reading = true;
    const reader = (async () => {
      while (reading) reads.push(await cluster.cli('getr', KEY));
    })();

    coordinator.child.kill('SIGKILL');
    const killedAtMs = performance.now();
    await waitFor(
      'every replica to hold v2',
      async () => ((await localValues(replicas, KEY)).every((v) => v === 'v2') ? true : undefined),
      KEY_BLOCKED_MS_MAX,
    );
    expect(performance.now() - killedAtMs).toBeLessThan(KEY_BLOCKED_MS_MAX);
    expect(await pendingCounts(replicas)).toEqual([0, 0, 0]);
    reads.push(await cluster.cli('getr', KEY));
    reading = false;
    await reader;

    let sawV2 = false;
    for (const read of reads) {
      expectCode(read, [0], 'getr after the primary committed');
      if (read.stdout === 'v2') sawV2 = true;
      else if (sawV2)
        throw new Error(`getr returned ${JSON.stringify(read.stdout)} after it had returned v2`);
    }
    expect(reads.map((r) => r.stdout)).toEqual(reads.map(() => 'v2'));
    await setrOk(cluster, KEY, 'v3');
  },
  TEST_TIMEOUT_MS,
);

test(
  'reads stay linearizable while a commit reaches the replicas one by one, also with the primary dead',
  async () => {
    // The dead primary stays in the view for 2 s. A prepare timeout of 6 s keeps the others from
    // asking the primary (and learning v2) before it dies; after, it cannot be asked at all.
    const cluster = await startCluster(2, { servers: 4, failureTimeoutS: 2, prepareTimeoutS: 6 });
    await setrOk(cluster, KEY, 'v1');
    const replicas = await cluster.replicasOf(KEY);
    const [primary, next] = replicas;

    cluster.spawnCoordinator(['setr', KEY, 'v2'], {
      DHT_FAULT_PAUSE_AFTER_PRIMARY_COMMIT_MS: PAUSE_FOREVER_MS,
    });
    await waitFor('the primary to commit', async () =>
      (await localGet(primary.address, KEY)) === 'v2' ? true : undefined,
    );

    // The primary is asked first: a separate client reads v2 although two copies still hold v1.
    const fromPrimary = await cluster.cli('getr', KEY);
    expectCode(fromPrimary, [0], 'getr with the primary committed');
    expect(fromPrimary.stdout).toBe('v2');
    expect(await localGet(next.address, KEY)).toBe('v1');
    expect((await status(next.address)).pendingTransactions).toBe(1);

    await cluster.kill(primary.address);
    // The next replica holds the transaction prepared: it must wait for the decision or refuse,
    // and never answer v1, which v2 has already overwritten for every reader.
    expect((await status(next.address)).pendingTransactions).toBe(1);
    const reads: CliResult[] = [];
    await waitFor(
      'getr to return v2 with the primary dead',
      async () => {
        const read = await cluster.cli('getr', KEY);
        reads.push(read);
        return read.code === 0 ? read : undefined;
      },
      15_000,
      100,
    );
    for (const read of reads) {
      expectCode(read, [0, 75], 'getr with the primary dead');
      expect(read.stdout).not.toBe('v1');
      if (read.code === 0) expect(read.stdout).toBe('v2');
    }
    // A reader that is willing to wait gets the decision, not a refusal.
    const patient = await cluster.cli('--wait', '10', 'getr', KEY);
    expectCode(patient, [0], 'getr --wait 10');
    expect(patient.stdout).toBe('v2');

    // The survivors decided commit among themselves; the new replica set holds v2 everywhere.
    await cluster.settled(3);
    const survivors = await cluster.replicasOf(KEY);
    expect(await localValues(survivors, KEY)).toEqual(['v2', 'v2', 'v2']);
  },
  TEST_TIMEOUT_MS,
);

test(
  'a commit fails when the epoch or the server ID differs from the coordinator view',
  async () => {
    const cluster = await startCluster(3, { servers: 4, failureTimeoutS: 2 });
    const sdk = new DhtClient({ viewLeader: cluster.vl, cacheView: true });
    await sdk.setr(KEY, 'v1'); // the SDK caches this view
    const stale = await cluster.view();

    // A view change: a fifth server joins, and the new epoch reaches every server.
    await cluster.startServer(4);
    const fresh = await cluster.settled(5);
    expect(fresh.epoch).toBeGreaterThan(stale.epoch);

    // A prepare carrying the old epoch is refused by every replica it names; its commit then
    // finds no prepared transaction.
    const staleReplicas = allocateReplicas(KEY, stale);
    const txid = randomUUID();
    for (const target of staleReplicas) {
      await expect(
        prepare(target, stale.epoch, staleReplicas, 'stale', txid),
      ).rejects.toMatchObject({
        kind: 'retry',
        reason: 'epoch_mismatch',
      });
    }
    await expect(
      call(staleReplicas[0].address, ServerApi.commit, { txid, key: KEY, version: 99 }),
    ).rejects.toMatchObject({ reason: 'transaction_unknown' });
    expect(await pendingCounts(fresh.servers)).toEqual(fresh.servers.map(() => 0));
    expect(await localValues(fresh.servers, KEY)).not.toContain('stale');

    // The SDK's cached view is stale too: its setr is refused, it refreshes, and commits.
    await sdk.setr(KEY, 'v2');
    const replicas = allocateReplicas(KEY, await cluster.view());
    expect(await localValues(replicas, KEY)).toEqual(['v2', 'v2', 'v2']);

    // A restarted server at the same address is a new process with a new ID: a prepare carrying
    // the old ID votes no, whatever the epoch.
    const victim = replicas[1];
    const reborn = await cluster.restart(victim.address);
    expect(reborn.address).toBe(victim.address);
    const settled = await cluster.settled(5);
    const rebornRef = settled.servers.find((s) => s.address === victim.address);
    expect(rebornRef?.id).toBeDefined();
    expect(rebornRef?.id).not.toBe(victim.id);
    // `replicas` is the coordinator's old view of the key: it names the victim by its old ID.
    await expect(prepare(victim, settled.epoch, replicas, 'ghost')).rejects.toMatchObject({
      kind: 'retry',
      reason: 'server_id_mismatch',
    });
    await expect(
      call(victim.address, ServerApi.read, { key: KEY, epoch: settled.epoch, serverId: victim.id }),
    ).rejects.toMatchObject({ reason: 'server_id_mismatch' });
    expect((await status(victim.address)).pendingTransactions).toBe(0);

    // Through the SDK (its view names the old ID): refused, refreshed, committed.
    await sdk.setr(KEY, 'v3');
    expect(await localValues(allocateReplicas(KEY, settled), KEY)).toEqual(['v3', 'v3', 'v3']);
    expect((await sdk.getr(KEY)).value).toBe('v3');
  },
  TEST_TIMEOUT_MS,
);

interface TimedCli {
  readonly result: CliResult;
  readonly start: number;
  readonly end: number;
}

/** One setr per pair, as CLI processes started together. */
async function concurrentSetr(
  cluster: Cluster,
  pairs: readonly [string, string][],
): Promise<TimedCli[]> {
  return Promise.all(
    pairs.map(async ([key, value]) => {
      const start = performance.now();
      const result = await cluster.cli('setr', key, value);
      return { result, start, end: performance.now() };
    }),
  );
}

/** What a history checker makes of an exit code: only 3 may have taken effect unseen. */
function outcomeOf(code: number | null): OperationOutcome {
  return code === 0 ? 'ok' : code === 3 || code === null ? 'unknown' : 'fail';
}

function expectLinearizable(history: readonly Operation[], initial: string | null): void {
  const verdict = checkRegister(history, { initial });
  if (!verdict.ok) throw new Error(verdict.explanation);
}

test(
  'concurrent setr on one key: only committed values are seen, replicas agree; other keys never block',
  async () => {
    // The default prepare timeout: eight CLI coordinators starting at once on a busy machine can
    // take over a second between their votes and their accepts, and a healthy setr must commit.
    const cluster = await startCluster(4, { servers: 3 });
    await setrOk(cluster, KEY, 'old');
    const values = Array.from({ length: 8 }, (_, i) => `racer-${i}`);
    const racers = await concurrentSetr(
      cluster,
      values.map((v) => [KEY, v]),
    );
    racers.forEach(({ result }, i) =>
      expectCode(result, [0, 1, 75], `concurrent setr ${values[i]}`),
    );
    const committed = values.filter((_, i) => racers[i].result.code === 0);

    const readStart = performance.now();
    const read = await cluster.cli('getr', KEY);
    const readEnd = performance.now();
    expectCode(read, [0], 'getr after the race');
    expect(committed.length > 0 ? committed : ['old']).toContain(read.stdout);
    // The same as a history: the failed ones took no effect, the read saw a committed value.
    expectLinearizable(
      [
        ...racers.map(({ result, start, end }, i): Operation => ({
          type: 'write',
          value: values[i],
          start,
          end,
          outcome: outcomeOf(result.code),
        })),
        { type: 'read', value: read.stdout, start: readStart, end: readEnd, outcome: 'ok' },
      ],
      'old',
    );
    const replicas = await cluster.replicasOf(KEY);
    expect(await localValues(replicas, KEY)).toEqual([read.stdout, read.stdout, read.stdout]);
    await setrOk(cluster, KEY, 'after-the-race');
    expect((await cluster.cli('getr', KEY)).stdout).toBe('after-the-race');

    // Different keys: all commit, none waits for another.
    const keys = Array.from({ length: 8 }, (_, i) => `independent/${i}`);
    const independent = await concurrentSetr(
      cluster,
      keys.map((k) => [k, `value-of-${k}`]),
    );
    independent.forEach(({ result }, i) =>
      expectCode(result, [0], `setr ${keys[i]} alongside others`),
    );
    for (const key of keys) {
      expect(await localValues(await cluster.replicasOf(key), key)).toEqual(
        Array(3).fill(`value-of-${key}`),
      );
    }
  },
  TEST_TIMEOUT_MS,
);

test(
  'every failed commit is aborted everywhere by its coordinator',
  async () => {
    // A prepare timeout far longer than the test: a replica left prepared stays so, so only the
    // coordinators' aborts can bring every pending count back to 0.
    const cluster = await startCluster(5, { servers: 3, prepareTimeoutS: 60 });
    const replicas = await cluster.replicasOf(KEY);
    const ROUNDS = 10;
    const RACERS = 6;
    const history: Operation[] = [];
    const clients = Array.from({ length: RACERS }, () => new DhtClient({ viewLeader: cluster.vl }));
    for (let round = 0; round < ROUNDS; round++) {
      await Promise.all(
        clients.map(async (client, i) => {
          const value = `r${round}-c${i}`;
          const start = performance.now();
          let outcome: OperationOutcome = 'ok';
          try {
            await client.setr(KEY, value);
          } catch (err) {
            // Racing setr on a healthy cluster: refused outright (key busy), never in doubt.
            expect(err).toBeInstanceOf(DhtError);
            expect((err as DhtError).kind).toBe('aborted');
            outcome = 'fail';
          }
          history.push({ type: 'write', value, start, end: performance.now(), outcome });
        }),
      );
    }
    const committedCount = history.filter((o) => o.outcome === 'ok').length;
    expect(committedCount).toBeGreaterThan(0);
    expect(committedCount).toBeLessThan(ROUNDS * RACERS); // the abort path ran

    await waitFor(
      'no replica to hold a prepared transaction',
      async () => ((await pendingCounts(replicas)).every((n) => n === 0) ? true : undefined),
      2_000,
    );
    const values = await localValues(replicas, KEY);
    expect(new Set(values).size).toBe(1);
    const start = performance.now();
    const read = await clients[0].getr(KEY);
    history.push({ type: 'read', value: read.value, start, end: performance.now(), outcome: 'ok' });
    expect(read.value).toBe(values[0]);
    expectLinearizable(history, null);
    await setrOk(cluster, KEY, 'after-all-aborts');
  },
  TEST_TIMEOUT_MS,
);

test(
  'getr with a dead replica still in the view answers at once from the next replica',
  async () => {
    const cluster = await startCluster(6, { servers: 3, failureTimeoutS: 5 });
    await setrOk(cluster, KEY, 'survives');
    const located = await cluster.cli('--json', 'locate', KEY);
    expectCode(located, [0], 'locate');
    const { replicas } = JSON.parse(located.stdout) as { replicas: string[] };
    expect(replicas).toHaveLength(3);
    const primary = replicas[0];

    await cluster.kill(primary);
    const startedMs = performance.now();
    const read = await cluster.cli('--timeout', '10', 'getr', KEY);
    const elapsedMs = performance.now() - startedMs;
    expectCode(read, [0], 'getr with the primary dead');
    expect(read.stdout).toBe('survives');
    // A refused connection costs nothing on loopback: far below the 10 s request timeout
    // (most of this is the CLI's own start-up).
    expect(elapsedMs).toBeLessThan(3_000);
    // The read really happened with the dead server still in the view.
    expect((await cluster.view()).servers.map((s) => s.address)).toContain(primary);
  },
  TEST_TIMEOUT_MS,
);

test(
  'a read carrying a stale epoch is refused with epoch_mismatch',
  async () => {
    const cluster = await startCluster(7, { servers: 3 });
    await setrOk(cluster, KEY, 'v1');
    const stale = await cluster.view();
    await cluster.startServer(3);
    const fresh = await cluster.settled(4);
    expect(fresh.epoch).toBeGreaterThan(stale.epoch);

    const target = allocateReplicas(KEY, fresh)[0];
    await expect(
      call(target.address, ServerApi.read, { key: KEY, epoch: stale.epoch, serverId: target.id }),
    ).rejects.toMatchObject({ kind: 'retry', reason: 'epoch_mismatch' });
    // The same read with the current epoch is answered.
    expect(
      await call(target.address, ServerApi.read, {
        key: KEY,
        epoch: fresh.epoch,
        serverId: target.id,
      }),
    ).toMatchObject({
      value: 'v1',
    });
  },
  TEST_TIMEOUT_MS,
);
