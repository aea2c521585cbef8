// delr with real processes (/work/shared/contract.md, "Delete"): the command's outputs and exit
// codes; a delete that is never undone, by rebalancing (a join and a leave), nor by a replica that
// was away (SIGSTOPped while the delete was refused, expelled, and finally let back in with its
// old copies by a view leader restart that forgot it was expelled); and concurrent setr, delr and
// getr, checked linearizable with a delete as a write of "absent". docs/design.md, "Delete and
// tombstones".

import { performance } from 'node:perf_hooks';
import { DhtClient } from '../../client/sdk';
import { DhtError } from '../../lib/errors';
import { call, keepAliveAgent } from '../../lib/http-client';
import { KEY_BYTES_MAX } from '../../lib/limits';
import { ServerApi, type ServerRef, type View } from '../../lib/messages';
import { allocateReplicas } from '../../lib/ring';
import { Cluster, type ClusterOptions } from '../support/cluster';
import { checkRegister, type Operation, type OperationOutcome } from '../support/linearizability';
import {
  cleanupProcessesAfterAll,
  pause,
  portBlock,
  resume,
  waitFor,
  type CliResult,
} from '../support/processes';
import { uniform } from '../support/random';

const PORTS = portBlock(12);
/** setr/delr/getr wait out a rebalancing a busy machine may still be finishing. */
const WAIT = ['--wait', '10'];
/** Generous: a busy machine may take seconds per rebalancing; nothing here waits a fixed time. */
const SETTLE_TIMEOUT_MS = 60_000;

cleanupProcessesAfterAll();
afterAll(() => {
  keepAliveAgent.destroy();
});

/** Each test has its own ports: slot k takes 12 of the block (a view leader and 11 servers). */
function ports(slot: number): Pick<ClusterOptions, 'viewLeaderPort' | 'serverPort'> {
  return {
    viewLeaderPort: PORTS.server(12 * slot),
    serverPort: (i) => PORTS.server(12 * slot + 1 + i),
  };
}

/** What one server holds of `key`: a value, a tombstone, or nothing. */
type Held = { value: string } | 'tombstone' | 'nothing';

async function heldAt(address: string, key: string): Promise<Held> {
  try {
    return { value: (await call(address, ServerApi.get, { key })).value };
  } catch (err) {
    if (!(err instanceof DhtError) || err.kind !== 'not_found') throw err;
    return err.reason === 'key_deleted' ? 'tombstone' : 'nothing';
  }
}

/**
 * Every server of `view` on `key`: its replicas (per `locate`, the allocator) must hold `want`,
 * every other server nothing. Returns the differences, one line each.
 */
async function misplaced(view: View, key: string, want: Held): Promise<string[]> {
  const replicas = new Set(allocateReplicas(key, view).map((s) => s.id));
  const problems: string[] = [];
  for (const server of view.servers) {
    const held = await heldAt(server.address, key);
    const expected = replicas.has(server.id) ? want : 'nothing';
    if (JSON.stringify(held) !== JSON.stringify(expected)) {
      problems.push(
        `${key} @ ${server.address}: ${JSON.stringify(held)}, not ${JSON.stringify(expected)}`,
      );
    }
  }
  return problems;
}

/** The keys some server of `view` lists in query_all_keys among `keys`. */
async function listed(view: View, keys: readonly string[]): Promise<string[]> {
  const wanted = new Set(keys);
  const found: string[] = [];
  for (const server of view.servers) {
    const { keys: held } = await call(server.address, ServerApi.queryAllKeys, {});
    for (const key of held) if (wanted.has(key)) found.push(`${key} @ ${server.address}`);
  }
  return found;
}

async function getrAnswer(client: DhtClient, key: string): Promise<string> {
  try {
    return (await client.getr(key)).value;
  } catch (err) {
    if (err instanceof DhtError) return `<${err.kind}>`;
    throw err;
  }
}

function plainOk(result: CliResult, stdout = ''): void {
  expect({ code: result.code, stdout: result.stdout, stderr: result.stderr }).toEqual({
    code: 0,
    stdout,
    stderr: '',
  });
}

test('delr of an existing and a missing key: exit 0 and {"status":"ok"}; getr then not_found (exit 1); setr after delr works', async () => {
  const cluster = await Cluster.start({ servers: 3, ...ports(0) });
  const cli = (...args: string[]) => cluster.cli(...WAIT, ...args);
  plainOk(await cli('setr', 'doomed', 'v1'));

  for (const key of ['doomed', 'never set']) {
    const deleted = await cli('--json', 'delr', key);
    expect({ code: deleted.code, stdout: deleted.stdout }).toEqual({
      code: 0,
      stdout: '{"status":"ok"}\n',
    });
    const plain = await cli('getr', key);
    expect(plain).toEqual({ code: 1, stdout: '', stderr: 'ERROR: not_found\n' });
    const json = await cli('--json', 'getr', key);
    expect({ code: json.code, stdout: json.stdout }).toEqual({
      code: 1,
      stdout: '{"status":"not_found"}\n',
    });
  }
  // Plain output: nothing at all. A delete of a deleted key is committed again.
  plainOk(await cli('delr', 'doomed'));

  // Each replica holds a tombstone (a missing key's delete too); no server lists the keys.
  const view = await cluster.settled(3);
  for (const key of ['doomed', 'never set']) {
    expect(await misplaced(view, key, 'tombstone')).toEqual([]);
  }
  expect(await listed(view, ['doomed', 'never set'])).toEqual([]);

  // A set after the delete goes above the tombstone's version.
  plainOk(await cli('setr', 'doomed', 'v2'));
  plainOk(await cli('getr', 'doomed'), 'v2');
  expect(await misplaced(view, 'doomed', { value: 'v2' })).toEqual([]);

  // Bounds exit 1, usage errors 2, as for setr; --help lists the command.
  for (const key of ['', 'k'.repeat(KEY_BYTES_MAX + 1)]) {
    const bad = await cli('delr', '--', key);
    expect({ code: bad.code, stdout: bad.stdout }).toEqual({ code: 1, stdout: '' });
    expect(bad.stderr).toMatch(/^ERROR: key must be 1 to 1024 bytes/);
  }
  for (const args of [['delr'], ['delr', 'a', 'b']]) {
    const usage = await cli('--json', ...args);
    expect(usage.code).toBe(2);
    expect(JSON.parse(usage.stdout)).toEqual({
      status: 'error',
      error: "usage: dht-client delr KEY (see 'dht-client help delr')",
    });
  }
  const help = await cluster.cli('--help');
  expect(help.code).toBe(0);
  expect(help.stdout).toMatch(/^ *delr KEY +replicated delete by two-phase commit/m);
}, 60_000);

test('a delete is not undone by rebalancing: a server joins, one leaves; tombstones sit exactly on the replicas', async () => {
  const cluster = await Cluster.start({ servers: 4, ...ports(1) });
  const client = new DhtClient({ viewLeader: cluster.vl, waitMs: 20_000 });
  const keys = Array.from({ length: 40 }, (_, i) => `rebalanced ${i}`);
  await Promise.all(keys.map((key) => client.setr(key, `value of ${key}`)));
  const deleted = keys.filter((_, i) => i % 2 === 0);
  const live = keys.filter((_, i) => i % 2 === 1);
  await Promise.all(deleted.map((key) => client.delr(key)));

  const expectIntact = async (view: View): Promise<void> => {
    const problems: string[] = [];
    for (const key of deleted) problems.push(...(await misplaced(view, key, 'tombstone')));
    for (const key of live) {
      problems.push(...(await misplaced(view, key, { value: `value of ${key}` })));
    }
    expect(problems).toEqual([]);
    expect(await listed(view, deleted)).toEqual([]);
    const answers = await Promise.all(deleted.map((key) => getrAnswer(client, key)));
    expect(answers.filter((a) => a !== '<not_found>')).toEqual([]);
  };
  await expectIntact(await cluster.settled(4));

  await cluster.startServer(4);
  await expectIntact(await cluster.settled(5, SETTLE_TIMEOUT_MS));

  // The primary of a deleted key leaves: its tombstones must reach the new replicas.
  const [primary] = await cluster.replicasOf(deleted[0]);
  await cluster.kill(primary.address);
  await expectIntact(await cluster.settled(4, SETTLE_TIMEOUT_MS));

  // And the keys are usable again.
  await client.setr(deleted[0], 'reborn');
  expect((await client.getr(deleted[0])).value).toBe('reborn');
}, 120_000);

test('a replica that was away never brings a deleted value back: not when it resumes expelled, nor when a restarted view leader lets it rejoin with its old copies', async () => {
  // A 6 s failure timeout: the SIGSTOPped replica stays in the view while the first delr tries.
  const cluster = await Cluster.start({ servers: 4, ...ports(2), failureTimeoutS: 6 });
  const client = new DhtClient({ viewLeader: cluster.vl, timeoutMs: 1000, waitMs: 30_000 });
  const keys = Array.from({ length: 24 }, (_, i) => `away ${i}`);
  await Promise.all(keys.map((key) => client.setr(key, `old ${key}`)));
  const before = await cluster.settled(4);
  const [victimRef] = before.servers;
  const victim = cluster.servers.get(victimRef.address)!;
  const replicatedByVictim = keys.filter((key) =>
    allocateReplicas(key, before).some((s) => s.id === victimRef.id),
  );
  expect(replicatedByVictim.length).toBeGreaterThan(3);

  // Away: a delete of its keys cannot collect its vote, and is refused, nothing done.
  await pause(victim);
  const refused = await cluster.cli('--timeout', '1', '--json', 'delr', replicatedByVictim[0]);
  expect({ code: refused.code, status: JSON.parse(refused.stdout).status }).toEqual({
    code: 75,
    status: 'retry',
  });
  expect((await cluster.view()).servers.map((s) => s.id)).toContain(victimRef.id);
  expect(await getrAnswer(client, replicatedByVictim[0])).toBe(`old ${replicatedByVictim[0]}`);

  // It leaves the view; the survivors rebalance, then delete every key it held.
  const survivors = await cluster.settled(3, SETTLE_TIMEOUT_MS);
  await Promise.all(replicatedByVictim.map((key) => client.delr(key)));
  const expectDeleted = async (view: View): Promise<void> => {
    const problems: string[] = [];
    for (const key of replicatedByVictim) {
      problems.push(...(await misplaced(view, key, 'tombstone')));
    }
    expect(problems).toEqual([]);
    expect(await listed(view, replicatedByVictim)).toEqual([]);
    const answers = await Promise.all(replicatedByVictim.map((key) => getrAnswer(client, key)));
    expect(answers.filter((a) => a !== '<not_found>')).toEqual([]);
  };
  await expectDeleted(survivors);

  // It resumes, still holding its old values, and learns it was expelled: it serves nothing.
  await resume(victim);
  await waitFor('the resumed replica to learn it was expelled', () =>
    /server_expired/.test(victim.stderr()) ? true : undefined,
  );
  expect(await heldAt(victim.address, replicatedByVictim[0])).toEqual({
    value: `old ${replicatedByVictim[0]}`,
  });
  await expectDeleted(await cluster.settled(3));

  // A restarted view leader remembers no expired ID: the old process rejoins with its old ID and
  // its old copies, unvouched, offered to every replica. The tombstones are newer: they win, and
  // reach it where it is a replica again.
  await cluster.restartViewLeader();
  const rejoined = await cluster.settled(4, SETTLE_TIMEOUT_MS);
  expect(rejoined.servers.map((s) => s.id)).toContain(victimRef.id);
  await expectDeleted(rejoined);
  const others = keys.filter((key) => !replicatedByVictim.includes(key));
  const values = await Promise.all(others.map((key) => getrAnswer(client, key)));
  expect(values).toEqual(others.map((key) => `old ${key}`));

  await client.setr(replicatedByVictim[0], 'new');
  expect((await client.getr(replicatedByVictim[0])).value).toBe('new');
}, 180_000);

// ---- concurrent setr, delr and getr: linearizable with deletes ------------------------------------

const LIN_KEYS = ['del/alpha', 'del/beta', 'del/gamma'];
const WORKERS = 4;
const OPS_PER_WORKER = 45;

interface Recorded extends Operation {
  readonly key: string;
}

async function record(
  client: DhtClient,
  who: string,
  key: string,
  type: Operation['type'],
  written: string,
): Promise<Recorded> {
  const start = performance.now();
  const op = { key, type, start, process: who };
  try {
    if (type === 'write') await client.setr(key, written);
    if (type === 'delete') await client.delr(key);
    const value = type === 'read' ? (await client.getr(key)).value : null;
    const end = performance.now();
    return { ...op, end, outcome: 'ok', value: type === 'write' ? written : value };
  } catch (err) {
    if (!(err instanceof DhtError)) throw err;
    const end = performance.now();
    // not_found is a successful read of "absent"; only `unknown` may have taken effect.
    if (type === 'read' && err.kind === 'not_found')
      return { ...op, end, outcome: 'ok', value: null };
    const outcome: OperationOutcome = err.kind === 'unknown' ? 'unknown' : 'fail';
    return { ...op, end, outcome, value: type === 'write' ? written : null };
  }
}

test('concurrent setr, delr and getr on three keys, with a primary killed mid-run: every key linearizable', async () => {
  const cluster = await Cluster.start({ servers: 4, ...ports(3), prepareTimeoutS: 1 });
  const history: Recorded[] = [];
  let killed: ServerRef | undefined;
  const worker = async (index: number): Promise<void> => {
    const random = uniform(2000 + index);
    const client = new DhtClient({ viewLeader: cluster.vl, waitMs: 10_000 });
    for (let i = 0; i < OPS_PER_WORKER; i++) {
      const key = LIN_KEYS[Math.floor(random() * LIN_KEYS.length)];
      const roll = random();
      const type = roll < 0.35 ? 'write' : roll < 0.6 ? 'delete' : 'read';
      history.push(await record(client, `worker${index}`, key, type, `w${index}-${i}`));
      await new Promise((resolve) => setTimeout(resolve, random() * 40));
    }
  };
  const nemesis = async (): Promise<void> => {
    await waitFor('a third of the operations', () =>
      history.length >= (WORKERS * OPS_PER_WORKER) / 3 ? true : undefined,
    );
    [killed] = await cluster.replicasOf(LIN_KEYS[0]);
    await cluster.kill(killed.address);
  };
  await Promise.all([...Array.from({ length: WORKERS }, (_, i) => worker(i)), nemesis()]);
  expect(killed).toBeDefined();

  // A last read of every key closes its history.
  await cluster.settled(3, SETTLE_TIMEOUT_MS);
  const last = new DhtClient({ viewLeader: cluster.vl, waitMs: 10_000 });
  for (const key of LIN_KEYS) history.push(await record(last, 'final', key, 'read', ''));

  for (const key of LIN_KEYS) {
    const result = checkRegister(history.filter((o) => o.key === key));
    if (!result.ok) throw new Error(`key ${key} is not linearizable:\n${result.explanation}`);
  }
  // The run proved something: deletes committed, and reads saw both values and absence.
  const ok = history.filter((o) => o.outcome === 'ok');
  const counts = {
    deletes: ok.filter((o) => o.type === 'delete').length,
    writes: ok.filter((o) => o.type === 'write').length,
    readsOfValues: ok.filter((o) => o.type === 'read' && o.value !== null).length,
    readsOfAbsent: ok.filter((o) => o.type === 'read' && o.value === null).length,
  };
  expect({
    deletes: counts.deletes >= 15,
    writes: counts.writes >= 20,
    readsOfValues: counts.readsOfValues >= 10,
    readsOfAbsent: counts.readsOfAbsent >= 10,
    counts,
  }).toEqual({ deletes: true, writes: true, readsOfValues: true, readsOfAbsent: true, counts });
}, 120_000);
