// Linearizability of setr/getr with real processes: a view leader and four servers, several
// concurrent clients (in-process SDK instances, each with its own view cache) writing unique
// values and reading three keys, and one server SIGKILLed in the middle. Every operation's
// interval and outcome is recorded; each key's history must then be linearizable as a register
// (test/support/linearizability.ts), with `unknown` setr outcomes allowed either way.

import { uniform } from '../support/random';
import { performance } from 'node:perf_hooks';
import { DhtClient } from '../../client/sdk';
import { DhtError } from '../../lib/errors';
import { call, keepAliveAgent } from '../../lib/http-client';
import { ServerApi, ViewLeaderApi, type View } from '../../lib/messages';
import { allocateReplicas } from '../../lib/ring';
import { checkRegister, type Operation, type OperationOutcome } from '../support/linearizability';
import {
  cleanupProcessesAfterAll,
  portBlock,
  startProcess,
  waitFor,
  type Proc,
} from '../support/processes';

const PORTS = portBlock(6);
const KEYS = ['lin/alpha', 'lin/beta', 'lin/gamma'];
const WORKERS = 4;
const OPS_PER_WORKER_MAX = 60;
/** The workload stops issuing operations after this, whatever is left. */
const RUN_MS_MAX = 20_000;
/** Pauses between a worker's operations, so the run spans the failure and its recovery. */
const THINK_MS_MAX = 60;
const OPS_TOTAL_MAX = WORKERS * OPS_PER_WORKER_MAX;
/** setr/getr wait this long for the view to settle after the failure. */
const CLIENT_WAIT_MS = 5_000;

cleanupProcessesAfterAll();
afterAll(() => {
  keepAliveAgent.destroy();
});

async function settledView(viewLeader: string, count: number): Promise<View> {
  return waitFor(`a settled view of ${count} servers`, async () => {
    const view = await call(viewLeader, ViewLeaderApi.queryServers, {});
    if (view.servers.length !== count || view.rebalancing) return undefined;
    const statuses = await Promise.all(
      view.servers.map((s) => call(s.address, ServerApi.status, {})),
    );
    return statuses.every((s) => s.epoch === view.epoch && !s.rebalancing) ? view : undefined;
  });
}

interface Recorded extends Operation {
  readonly key: string;
  readonly error?: string;
}

/** Run one operation through the SDK and record its interval and outcome. */
async function record(
  client: DhtClient,
  who: string,
  key: string,
  type: 'write' | 'read',
  written: string,
): Promise<Recorded> {
  const start = performance.now();
  let value: string | null = type === 'write' ? written : null;
  let outcome: OperationOutcome = 'ok';
  let error: string | undefined;
  try {
    if (type === 'write') await client.setr(key, written);
    else value = (await client.getr(key)).value;
  } catch (err) {
    if (!(err instanceof DhtError)) throw err; // a programmer error: the test must fail
    if (type === 'read' && err.kind === 'not_found') {
      value = null; // the key is absent: a successful read of "nothing"
    } else {
      // The contract: only exit 3 (`unknown`) may have taken effect; every other error did not.
      outcome = err.kind === 'unknown' ? 'unknown' : 'fail';
      error = `${err.kind}${err.reason === undefined ? '' : `/${err.reason}`}`;
    }
  }
  const end = performance.now();
  return error === undefined
    ? { key, type, value, start, end, outcome, process: who }
    : { key, type, value, start, end, outcome, process: who, error };
}

class Cluster {
  readonly servers = new Map<string, Proc>();

  private constructor(
    /** Each test has its own ports: ten from PORTS.viewleader + 10 * slot. */
    private readonly slot: number,
    readonly viewLeader: Proc,
  ) {}

  static async start(slot: number, serverCount: number): Promise<Cluster> {
    const viewLeader = await startProcess('dht-viewleader', [
      '--port',
      String(PORTS.viewleader + 10 * slot),
      '--failure-timeout',
      '1',
    ]);
    const cluster = new Cluster(slot, viewLeader);
    await Promise.all(Array.from({ length: serverCount }, (_, i) => cluster.startServer(i)));
    await cluster.settled(serverCount);
    return cluster;
  }

  async startServer(index: number): Promise<Proc> {
    const server = await startProcess('dht-server', [
      '--port',
      String(PORTS.server(10 * this.slot + index)),
      '--viewleader',
      this.viewLeader.address,
      '--heartbeat-interval',
      '0.2',
      '--prepare-timeout',
      '1',
    ]);
    this.servers.set(server.address, server);
    return server;
  }

  /** SIGKILL the primary of `key` in the current view; returns its address. */
  async killPrimaryOf(key: string): Promise<string> {
    const view = await call(this.viewLeader.address, ViewLeaderApi.queryServers, {});
    const { address } = allocateReplicas(key, view)[0];
    const server = this.servers.get(address);
    if (server === undefined) throw new Error(`no server of this test at ${address}`);
    server.child.kill('SIGKILL');
    await server.exited;
    this.servers.delete(address);
    return address;
  }

  settled(count: number): Promise<View> {
    return settledView(this.viewLeader.address, count);
  }

  client(): DhtClient {
    return new DhtClient({ viewLeader: this.viewLeader.address, waitMs: CLIENT_WAIT_MS });
  }
}

/** Something done to the cluster once a share of the workload's operations has completed. */
interface Fault {
  readonly afterShare: number;
  readonly act: () => Promise<void>;
}

interface Run {
  readonly history: Recorded[];
  readonly startedMs: number;
  /** When each fault was done, in order. */
  readonly faultsAtMs: number[];
}

/** The workers' operations, with the faults injected as the work progresses. */
async function runWorkload(cluster: Cluster, faults: readonly Fault[]): Promise<Run> {
  const history: Recorded[] = [];
  const faultsAtMs: number[] = [];
  const startedMs = performance.now();
  const stopAtMs = startedMs + RUN_MS_MAX;
  const worker = async (index: number): Promise<void> => {
    const random = uniform(1000 + index);
    const client = cluster.client();
    for (let i = 0; i < OPS_PER_WORKER_MAX && performance.now() < stopAtMs; i++) {
      const key = KEYS[Math.floor(random() * KEYS.length)];
      const type = random() < 0.5 ? 'write' : 'read';
      history.push(await record(client, `worker${index}`, key, type, `w${index}-${i}`));
      await new Promise((resolve) => setTimeout(resolve, random() * THINK_MS_MAX));
    }
  };
  const injector = async (): Promise<void> => {
    for (const fault of faults) {
      await waitFor(
        `${fault.afterShare * 100}% of the workload`,
        () => (history.length >= fault.afterShare * OPS_TOTAL_MAX ? true : undefined),
        RUN_MS_MAX,
        10,
      );
      await fault.act();
      faultsAtMs.push(performance.now());
    }
  };
  await Promise.all([...Array.from({ length: WORKERS }, (_, i) => worker(i)), injector()]);
  return { history, startedMs, faultsAtMs };
}

/** Check every key; then check that the run proved something (it cannot pass vacuously). */
async function expectLinearizable(cluster: Cluster, run: Run, serversAtEnd: number): Promise<void> {
  const { history } = run;
  // A last read of every key, once everything settled, closes each history.
  await cluster.settled(serversAtEnd);
  const last = cluster.client();
  for (const key of KEYS) history.push(await record(last, 'final', key, 'read', ''));

  const okOps = history.filter((o) => o.outcome === 'ok');
  const lastFaultMs = Math.max(...run.faultsAtMs);
  const summary = {
    operations: history.length,
    ok: okOps.length,
    okWrites: okOps.filter((o) => o.type === 'write').length,
    okReadsOfValues: okOps.filter((o) => o.type === 'read' && o.value !== null).length,
    okAfterLastFault: okOps.filter((o) => o.start > lastFaultMs).length,
    unknown: history.filter((o) => o.outcome === 'unknown').length,
    failed: history.filter((o) => o.outcome === 'fail').length,
    runMs: Math.round(performance.now() - run.startedMs),
  };
  for (const key of KEYS) {
    const result = checkRegister(history.filter((o) => o.key === key));
    if (!result.ok) {
      throw new Error(
        `key ${key} is not linearizable:\n${result.explanation}\n${JSON.stringify(summary)}`,
      );
    }
  }
  const shortfalls = [
    summary.ok < 0.6 * OPS_TOTAL_MAX && 'under 60% of the operations succeeded',
    summary.okWrites < 40 && 'under 40 setr succeeded',
    summary.okReadsOfValues < 40 && 'under 40 getr returned a value',
    summary.okAfterLastFault < 30 && 'under 30 operations succeeded after the last fault',
  ].filter((s): s is string => s !== false);
  expect({ shortfalls, summary }).toEqual({ shortfalls: [], summary });
  expect(history.filter((o) => o.process === 'final' && o.outcome === 'ok')).toHaveLength(
    KEYS.length,
  );
}

test('setr/getr on three keys stay linearizable while a primary is SIGKILLed mid-run', async () => {
  const cluster = await Cluster.start(0, 4);
  const run = await runWorkload(cluster, [
    { afterShare: 0.35, act: async () => void (await cluster.killPrimaryOf(KEYS[0])) },
  ]);
  expect(run.faultsAtMs).toHaveLength(1);
  await expectLinearizable(cluster, run, 3);
}, 60_000);

test('setr/getr stay linearizable while a server joins and then a primary dies', async () => {
  const cluster = await Cluster.start(1, 4);
  const run = await runWorkload(cluster, [
    { afterShare: 0.25, act: async () => void (await cluster.startServer(4)) },
    { afterShare: 0.55, act: async () => void (await cluster.killPrimaryOf(KEYS[1])) },
  ]);
  expect(run.faultsAtMs).toHaveLength(2);
  await expectLinearizable(cluster, run, 4);
}, 60_000);
