// getr and setr through the in-process SDK (client/sdk.ts, one DhtClient with a cached view)
// against a local cluster of real processes, read against the RPC limit of the same run:
//   getr is one RPC (a read at the key's first replica), so getr/RPC should approach 1;
//   setr with 3 replicas is 6 messages (3 prepares, 3 commits) in 3 sequential rounds (prepares
//   in parallel, commit at the primary, commits at the other two in parallel), so setr is read
//   against RPC/6 (messages: what bounds throughput) and RPC/3 (rounds: what bounds latency).
// The cluster starts with 3 servers, is preloaded, measured, then grows to 5 servers (the
// servers rebalance the same keys) and is measured again.

import { DhtClient } from '../client/sdk';
import type { LocalCluster, LogRecord, ProcessHandle } from '../demo/cluster';
import { assert } from '../lib/assert';
import { initHashing } from '../lib/hash';
import { REPLICATION_COUNT } from '../lib/limits';
import type { View } from '../lib/messages';
import type { RpcBaseline, RpcCase } from './rpc-baseline';
import {
  caseFigures,
  fmt,
  runLoad,
  runWarmedLoad,
  settled,
  waitForView,
  withCluster,
  type CaseFigures,
  type LoadResult,
  type Table,
} from './stats';

export interface SdkOptions {
  readonly keys: number;
  readonly valueBytes: number;
  /** View sizes measured in turn: the cluster grows from the first to the next. */
  readonly serverCounts: readonly number[];
  readonly concurrencies: readonly number[];
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly preloadConcurrency: number;
  /** The preload stops here even if not every key is written (the count says so). */
  readonly preloadBudgetMs: number;
  readonly settleTimeoutMs: number;
}

export const SDK_FULL: SdkOptions = {
  keys: 10_000,
  valueBytes: 100,
  serverCounts: [3, 5],
  concurrencies: [1, 64],
  durationMs: 3_000,
  warmupMs: 500,
  preloadConcurrency: 64,
  preloadBudgetMs: 45_000,
  settleTimeoutMs: 60_000,
};
export const SDK_QUICK: SdkOptions = {
  keys: 1_000,
  valueBytes: 100,
  serverCounts: [3, 5],
  concurrencies: [1, 64],
  durationMs: 700,
  warmupMs: 150,
  preloadConcurrency: 64,
  preloadBudgetMs: 8_000,
  settleTimeoutMs: 30_000,
};

/** The cluster's timings: short, so that a join settles in a second or two. */
const SDK_TIMINGS = { failureTimeoutS: 2, heartbeatIntervalS: 0.2 };
const SETTLE_POLL_MS = 50;
/** setr with R replicas: R prepares, R accepts and R commits, in 3 sequential rounds. */
const SETR_MESSAGES = 3 * REPLICATION_COUNT;
const SETR_ROUNDS = 3;

export type SdkOp = 'getr' | 'setr';

export interface SdkCase extends CaseFigures {
  readonly op: SdkOp;
  readonly servers: number;
  /** query_servers calls the SDK made during the measured run (0: the cached view served). */
  readonly viewLeaderRequests: number;
  /**
   * ops/s over the RPC rate of the same concurrency; for setr over (RPC rate / 6 messages) and
   * (RPC rate / 3 rounds). Null when the rpc section did not run.
   */
  readonly overOurs: number | null;
  readonly overLean: number | null;
  readonly overOursRounds: number | null;
  readonly overLeanRounds: number | null;
}

export interface SdkResult {
  readonly keys: number;
  readonly keysLoaded: number;
  readonly valueBytes: number;
  readonly timings: typeof SDK_TIMINGS;
  readonly preload: {
    readonly concurrency: number;
    readonly elapsedMs: number;
    readonly setrPerSec: number;
    readonly errors: number;
    readonly viewLeaderRequests: number;
  };
  /** Each growth of the cluster: from the first new start to a settled view of `servers`. */
  readonly grow: readonly { readonly servers: number; readonly ms: number }[];
  readonly durationMs: number;
  readonly setrMessages: number;
  readonly setrRounds: number;
  readonly cases: readonly SdkCase[];
}

/** A DhtClient that counts its requests to the view leader. */
export class CountingClient extends DhtClient {
  viewLeaderRequests = 0;

  override async queryServers(): Promise<View> {
    this.viewLeaderRequests++;
    return super.queryServers();
  }
}

export async function measureSdk(
  options: SdkOptions,
  rpc: RpcBaseline | undefined,
): Promise<SdkResult> {
  assert(options.serverCounts.length > 0, 'at least one cluster size');
  await initHashing();
  const value = 'v'.repeat(options.valueBytes);
  const keyOf = (i: number): string => `sdk-key-${i}`;
  const ignoreLogs = (_server: string, _record: LogRecord): void => {};

  return withCluster(SDK_TIMINGS, ignoreLogs, async (cluster) => {
    const leader = await startSettledCluster(
      cluster,
      options.serverCounts[0],
      options.settleTimeoutMs,
    );
    const client = new CountingClient({ viewLeader: leader.address, cacheView: true, waitMs: 0 });
    const preload = await preloadWithSetr(client, {
      keys: options.keys,
      keyOf,
      value,
      concurrency: options.preloadConcurrency,
      budgetMs: options.preloadBudgetMs,
    });
    const pick = strideOver(preload.loadedKeys, keyOf);

    const cases: SdkCase[] = [];
    const grow: { servers: number; ms: number }[] = [];
    for (let s = 0; s < options.serverCounts.length; s++) {
      const servers = options.serverCounts[s];
      if (s > 0) {
        const t0 = performance.now();
        const before = await waitForView(leader.address, () => true, 5_000, SETTLE_POLL_MS);
        while (cluster.servers.length < servers) await cluster.startServer();
        await waitForView(
          leader.address,
          settled(servers, before.view.epoch),
          options.settleTimeoutMs,
          SETTLE_POLL_MS,
        );
        grow.push({ servers, ms: performance.now() - t0 });
      }
      for (const op of ['getr', 'setr'] as const) {
        for (const concurrency of options.concurrencies) {
          const { result, viewLeaderRequests } = await runSdkCase(client, {
            op,
            concurrency,
            pick,
            value,
            warmupMs: options.warmupMs,
            durationMs: options.durationMs,
          });
          cases.push(sdkCase(op, servers, result, viewLeaderRequests, rpc, concurrency));
        }
      }
    }

    return {
      keys: options.keys,
      keysLoaded: preload.loadedKeys.length,
      valueBytes: options.valueBytes,
      timings: SDK_TIMINGS,
      preload: {
        concurrency: options.preloadConcurrency,
        elapsedMs: preload.run.elapsedMs,
        setrPerSec: preload.run.opsPerSec,
        errors: preload.run.errors,
        viewLeaderRequests: preload.viewLeaderRequests,
      },
      grow,
      durationMs: options.durationMs,
      setrMessages: SETR_MESSAGES,
      setrRounds: SETR_ROUNDS,
      cases,
    };
  });
}

// ---- pieces shared with the durability section ------------------------------------------------

/** Start the view leader and `servers` servers of `cluster`; resolves once the view settled. */
export async function startSettledCluster(
  cluster: LocalCluster,
  servers: number,
  settleTimeoutMs: number,
): Promise<ProcessHandle> {
  const leader = await cluster.startViewLeader();
  for (let i = 0; i < servers; i++) await cluster.startServer();
  await waitForView(leader.address, settled(servers), settleTimeoutMs, SETTLE_POLL_MS);
  return leader;
}

export interface PreloadOptions {
  readonly keys: number;
  readonly keyOf: (i: number) => string;
  readonly value: string;
  readonly concurrency: number;
  /** The preload stops here even if not every key is written. */
  readonly budgetMs: number;
}

export interface Preloaded {
  /** Indexes of the keys written; a key whose setr failed is left out. */
  readonly loadedKeys: readonly number[];
  readonly run: LoadResult;
  /** The client's view-leader requests during the preload. */
  readonly viewLeaderRequests: number;
}

/** Every key once with setr, at high concurrency; throws if not a single key was written. */
export async function preloadWithSetr(
  client: CountingClient,
  options: PreloadOptions,
): Promise<Preloaded> {
  const before = client.viewLeaderRequests;
  const { loadedKeys, run } = await preloadWith((key, value) => client.setr(key, value), options);
  return { loadedKeys, run, viewLeaderRequests: client.viewLeaderRequests - before };
}

/**
 * Every key once with `write` (any store's), at high concurrency, within the budget; throws if
 * not a single key was written.
 */
export async function preloadWith(
  write: (key: string, value: string) => Promise<unknown>,
  options: PreloadOptions,
): Promise<Omit<Preloaded, 'viewLeaderRequests'>> {
  const { keys, keyOf, value } = options;
  const loaded = new Uint8Array(keys);
  const run = await runLoad({
    concurrency: options.concurrency,
    durationMs: options.budgetMs,
    maxOps: keys,
    op: async (i) => {
      await write(keyOf(i), value);
      loaded[i] = 1;
    },
  });
  const loadedKeys: number[] = [];
  for (let i = 0; i < keys; i++) if (loaded[i] === 1) loadedKeys.push(i);
  if (loadedKeys.length === 0) {
    throw new Error(`preload wrote no key (${run.firstErrors.join('; ') || 'no time'})`);
  }
  return { loadedKeys, run };
}

/** A fixed stride over the loaded keys: every worker touches different keys in turn. */
export function strideOver(
  loadedKeys: readonly number[],
  keyOf: (i: number) => string,
): (i: number) => string {
  assert(loadedKeys.length > 0, 'a stride over at least one key');
  return (i) => keyOf(loadedKeys[(i * 7919) % loadedKeys.length] ?? loadedKeys[0]);
}

export interface SdkCaseOptions {
  readonly op: SdkOp;
  readonly concurrency: number;
  readonly pick: (i: number) => string;
  readonly value: string;
  readonly warmupMs: number;
  readonly durationMs: number;
  /**
   * Runs the measured load (not the warm-up), e.g. with a counter attached around it only.
   * Default: runs it as is.
   */
  readonly around?: (measure: () => Promise<LoadResult>) => Promise<LoadResult>;
}

/** One case through runWarmedLoad: a warm-up (and any refresh of the cached view), then the run. */
export async function runSdkCase(
  client: CountingClient,
  options: SdkCaseOptions,
): Promise<{ readonly result: LoadResult; readonly viewLeaderRequests: number }> {
  const { op, pick, value } = options;
  const run = (i: number): Promise<unknown> =>
    op === 'getr' ? client.getr(pick(i)) : client.setr(pick(i), value);
  let before = client.viewLeaderRequests;
  const result = await runWarmedLoad({
    concurrency: options.concurrency,
    warmupMs: options.warmupMs,
    durationMs: options.durationMs,
    op: run,
    around: async (measure) => {
      before = client.viewLeaderRequests;
      return options.around === undefined ? measure() : options.around(measure);
    },
  });
  return { result, viewLeaderRequests: client.viewLeaderRequests - before };
}

function sdkCase(
  op: SdkOp,
  servers: number,
  r: LoadResult,
  viewLeaderRequests: number,
  rpc: RpcBaseline | undefined,
  concurrency: number,
): SdkCase {
  const lean: RpcCase | undefined = rpc?.lean[`c${concurrency}`];
  const ours: RpcCase | undefined = rpc?.ours[`c${concurrency}`];
  // The RPC rate a getr (1 RPC) or a setr (k RPCs) could reach at most.
  const ratio = (base: RpcCase | undefined, rpcsPerOp: number): number | null =>
    base === undefined ? null : r.opsPerSec / (base.opsPerSec / rpcsPerOp);
  const messages = op === 'getr' ? 1 : SETR_MESSAGES;
  const rounds = op === 'getr' ? 1 : SETR_ROUNDS;
  return {
    op,
    servers,
    ...caseFigures(r),
    viewLeaderRequests,
    overOurs: ratio(ours, messages),
    overLean: ratio(lean, messages),
    overOursRounds: ratio(ours, rounds),
    overLeanRounds: ratio(lean, rounds),
  };
}

export function sdkTables(result: SdkResult): Table[] {
  return [
    {
      title:
        `SDK getr/setr: one DhtClient (cached view), ${fmt(result.keysLoaded)} keys of ` +
        `${result.valueBytes} B, ${fmt(result.durationMs)} ms per case; x RPC = ops/s over ` +
        `(RPC req/s at the same concurrency / RPCs per op): getr 1, setr ${result.setrMessages} ` +
        `messages (in brackets: ${result.setrRounds} rounds)`,
      header: [
        'op',
        'servers',
        'conc',
        'ops/s',
        'p50 ms',
        'p99 ms',
        'p99.9 ms',
        'x ours',
        'x lean',
        'VL reqs',
        'errors',
      ],
      rows: result.cases.map((c) => [
        c.op,
        String(c.servers),
        String(c.concurrency),
        fmt(c.opsPerSec),
        fmt(c.p50Ms, 2),
        fmt(c.p99Ms, 2),
        fmt(c.p999Ms, 2),
        c.op === 'getr'
          ? fmt(c.overOurs, 2)
          : `${fmt(c.overOurs, 2)} (${fmt(c.overOursRounds, 2)})`,
        c.op === 'getr'
          ? fmt(c.overLean, 3)
          : `${fmt(c.overLean, 3)} (${fmt(c.overLeanRounds, 3)})`,
        String(c.viewLeaderRequests),
        String(c.errors),
      ]),
    },
    {
      title: 'SDK set-up',
      header: ['measure', 'value'],
      rows: [
        [
          `preload: setr of ${fmt(result.keys)} keys at c=${result.preload.concurrency}`,
          `${fmt(result.preload.setrPerSec)} setr/s, ${fmt(result.preload.elapsedMs / 1000, 1)} s, ${result.preload.errors} errors`,
        ],
        ['keys loaded (getr/setr pick among these)', fmt(result.keysLoaded)],
        ['view-leader requests during the preload', String(result.preload.viewLeaderRequests)],
        ...result.grow.map((g) => [
          `grow to ${g.servers} servers: first start to settled view`,
          `${fmt(g.ms / 1000, 2)} s`,
        ]),
      ],
    },
  ];
}
