// The HTTP API for any client (`GET/PUT /kv/KEY`, server/kv-routes.ts) next to the in-process
// SDK's getr/setr, in the same run against the same cluster and keys. A /kv request is one more
// hop: the client's HTTP request to a server, which then coordinates exactly as the SDK does
// (one read, or the 2PC's prepares, accepts and commits), so at c=1 its latency is the SDK's plus
// one loopback round trip and the server's parsing; under load the coordination work moves from
// the one client process into the servers, spread over all of them. The /kv client is a lean
// undici Pool per server (keep-alive), requests spread round-robin over the servers, as a load
// balancer in front of the cluster would.

import { Pool } from 'undici';
import { initHashing } from '../lib/hash';
import type { LogRecord } from '../demo/cluster';
import { assert } from '../lib/assert';
import {
  CountingClient,
  preloadWithSetr,
  runSdkCase,
  startSettledCluster,
  strideOver,
} from './sdk';
import {
  caseFigures,
  fmt,
  runLoad,
  withCluster,
  type CaseFigures,
  type LoadResult,
  type Table,
} from './stats';

export interface KvBenchOptions {
  readonly keys: number;
  readonly valueBytes: number;
  readonly servers: number;
  readonly concurrencies: readonly number[];
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly preloadConcurrency: number;
  readonly preloadBudgetMs: number;
  readonly settleTimeoutMs: number;
}

export const KV_FULL: KvBenchOptions = {
  keys: 10_000,
  valueBytes: 100,
  servers: 3,
  concurrencies: [1, 64],
  durationMs: 3_000,
  warmupMs: 500,
  preloadConcurrency: 64,
  preloadBudgetMs: 45_000,
  settleTimeoutMs: 60_000,
};
export const KV_QUICK: KvBenchOptions = {
  keys: 1_000,
  valueBytes: 100,
  servers: 3,
  concurrencies: [1, 64],
  durationMs: 700,
  warmupMs: 150,
  preloadConcurrency: 64,
  preloadBudgetMs: 8_000,
  settleTimeoutMs: 30_000,
};

/** The sdk section's timings, so its figures and these compare. */
const KV_TIMINGS = { failureTimeoutS: 2, heartbeatIntervalS: 0.2 };
/** No case runs more operations than this, whatever its duration. */
const KV_CASE_OPS_MAX = 1_000_000;

export type KvOp = 'get' | 'put';
export type KvVia = 'sdk' | 'kv';

export interface KvCase extends CaseFigures {
  readonly op: KvOp;
  /** `sdk`: DhtClient.getr/setr in this process; `kv`: GET/PUT /kv/KEY to the servers. */
  readonly via: KvVia;
}

export interface KvBenchResult {
  readonly keys: number;
  readonly keysLoaded: number;
  readonly valueBytes: number;
  readonly servers: number;
  readonly timings: typeof KV_TIMINGS;
  readonly durationMs: number;
  readonly cases: readonly KvCase[];
  /** /kv ops/s over the SDK's for the same op and concurrency. */
  readonly kvOverSdk: Readonly<Record<string, number>>;
}

export async function measureKv(options: KvBenchOptions): Promise<KvBenchResult> {
  assert(options.concurrencies.length > 0, 'at least one concurrency');
  await initHashing();
  const value = 'v'.repeat(options.valueBytes);
  const keyOf = (i: number): string => `kv-key-${i}`;
  const ignoreLogs = (_server: string, _record: LogRecord): void => {};

  return withCluster(KV_TIMINGS, ignoreLogs, async (cluster) => {
    const leader = await startSettledCluster(cluster, options.servers, options.settleTimeoutMs);
    const client = new CountingClient({ viewLeader: leader.address, cacheView: true, waitMs: 0 });
    const preload = await preloadWithSetr(client, {
      keys: options.keys,
      keyOf,
      value,
      concurrency: options.preloadConcurrency,
      budgetMs: options.preloadBudgetMs,
    });
    const pick = strideOver(preload.loadedKeys, keyOf);
    const pools = cluster.servers.map(
      (s) => new Pool(`http://${s.address}`, { pipelining: 1, keepAliveTimeout: 60_000 }),
    );
    try {
      const cases: KvCase[] = [];
      for (const op of ['get', 'put'] as const) {
        for (const concurrency of options.concurrencies) {
          const sdk = await runSdkCase(client, {
            op: op === 'get' ? 'getr' : 'setr',
            concurrency,
            pick,
            value,
            warmupMs: options.warmupMs,
            durationMs: options.durationMs,
          });
          cases.push(kvCase(op, 'sdk', sdk.result));
          const kv = await runKvCase(pools, op, concurrency, pick, value, options);
          cases.push(kvCase(op, 'kv', kv));
        }
      }
      const kvOverSdk: Record<string, number> = {};
      for (const c of cases.filter((k) => k.via === 'kv')) {
        const sdk = cases.find(
          (k) => k.via === 'sdk' && k.op === c.op && k.concurrency === c.concurrency,
        );
        if (sdk !== undefined && sdk.opsPerSec > 0) {
          kvOverSdk[`${c.op}-c${c.concurrency}`] = c.opsPerSec / sdk.opsPerSec;
        }
      }
      return {
        keys: options.keys,
        keysLoaded: preload.loadedKeys.length,
        valueBytes: options.valueBytes,
        servers: options.servers,
        timings: KV_TIMINGS,
        durationMs: options.durationMs,
        cases,
        kvOverSdk,
      };
    } finally {
      await Promise.all(pools.map((p) => p.close()));
    }
  });
}

/** One /kv case: a warm-up (the servers' view caches, connections, JIT), then the measured run. */
async function runKvCase(
  pools: readonly Pool[],
  op: KvOp,
  concurrency: number,
  pick: (i: number) => string,
  value: string,
  options: KvBenchOptions,
): Promise<LoadResult> {
  assert(pools.length > 0, 'a server to ask');
  const run = async (i: number): Promise<void> => {
    const pool = pools[i % pools.length];
    const path = `/kv/${encodeURIComponent(pick(i))}`;
    const { statusCode, body } =
      op === 'get'
        ? await pool.request({ path, method: 'GET' })
        : await pool.request({ path, method: 'PUT', body: value });
    const text = await body.text();
    const expected = op === 'get' ? 200 : 204;
    if (statusCode !== expected) throw new Error(`${op} answered ${statusCode}: ${text}`);
    if (op === 'get' && text !== value) throw new Error('get answered another value');
  };
  await runLoad({ concurrency, durationMs: options.warmupMs, maxOps: KV_CASE_OPS_MAX, op: run });
  return runLoad({ concurrency, durationMs: options.durationMs, maxOps: KV_CASE_OPS_MAX, op: run });
}

function kvCase(op: KvOp, via: KvVia, r: LoadResult): KvCase {
  return {
    op,
    via,
    ...caseFigures(r),
  };
}

export function kvTables(result: KvBenchResult): Table[] {
  return [
    {
      title:
        `/kv GET and PUT (undici, round-robin over ${result.servers} servers) next to the SDK's ` +
        `getr and setr (one DhtClient in this process, cached view), same cluster and keys: ` +
        `${fmt(result.keysLoaded)} keys of ${result.valueBytes} B, ${fmt(result.durationMs)} ms per case`,
      header: ['op', 'via', 'conc', 'ops/s', 'p50 ms', 'p99 ms', 'p99.9 ms', '/kv / SDK', 'errors'],
      rows: result.cases.map((c) => [
        c.op === 'get' ? (c.via === 'kv' ? 'GET' : 'getr') : c.via === 'kv' ? 'PUT' : 'setr',
        c.via === 'kv' ? '/kv' : 'SDK',
        String(c.concurrency),
        fmt(c.opsPerSec),
        fmt(c.p50Ms, 2),
        fmt(c.p99Ms, 2),
        fmt(c.p999Ms, 2),
        c.via === 'kv' ? fmt(result.kvOverSdk[`${c.op}-c${c.concurrency}`], 2) : '',
        String(c.errors),
      ]),
    },
  ];
}
