// The cost of authentication (lib/auth.ts): the SDK's getr and setr against two clusters in the
// same run, one started without a secret and one with `--secret-file`, where every request (the
// client's, and every RPC between the processes) is signed and checked: one SHA-256 of the body
// and one HMAC on each side, and a header check before the body is read.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Secret } from '../lib/auth';
import { assert } from '../lib/assert';
import { initHashing } from '../lib/hash';
import { useSecret } from '../lib/http-auth';
import type { LogRecord } from '../demo/cluster';
import {
  CountingClient,
  preloadWithSetr,
  runSdkCase,
  startSettledCluster,
  strideOver,
  type SdkOp,
} from './sdk';
import { fmt, withCluster, type Table } from './stats';

export interface AuthBenchOptions {
  readonly keys: number;
  readonly valueBytes: number;
  readonly servers: number;
  readonly concurrencies: readonly number[];
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly preloadBudgetMs: number;
  readonly settleTimeoutMs: number;
}

export const AUTH_FULL: AuthBenchOptions = {
  keys: 5_000,
  valueBytes: 100,
  servers: 3,
  concurrencies: [1, 64],
  durationMs: 3_000,
  warmupMs: 500,
  preloadBudgetMs: 30_000,
  settleTimeoutMs: 60_000,
};
export const AUTH_QUICK: AuthBenchOptions = {
  ...AUTH_FULL,
  keys: 1_000,
  durationMs: 700,
  warmupMs: 150,
  preloadBudgetMs: 8_000,
  settleTimeoutMs: 30_000,
};

/** The sdk section's timings, so that its figures and these compare. */
const AUTH_TIMINGS = { failureTimeoutS: 2, heartbeatIntervalS: 0.2 };

export interface AuthCase {
  readonly op: SdkOp;
  readonly secret: boolean;
  readonly concurrency: number;
  readonly ops: number;
  readonly errors: number;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

export interface AuthBenchResult {
  readonly valueBytes: number;
  readonly servers: number;
  readonly durationMs: number;
  readonly cases: readonly AuthCase[];
  /** ops/s with the secret over ops/s without, per op and concurrency. */
  readonly withOverWithout: Readonly<Record<string, number>>;
}

export async function measureAuth(options: AuthBenchOptions): Promise<AuthBenchResult> {
  assert(options.concurrencies.length > 0, 'at least one concurrency');
  await initHashing();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-bench-auth-'));
  const secretFile = path.join(dir, 'secret');
  fs.writeFileSync(secretFile, 'the secret of the benchmark cluster\n', { mode: 0o600 });
  try {
    const cases: AuthCase[] = [];
    for (const secret of [false, true]) {
      cases.push(...(await measureOne(options, secret ? secretFile : undefined)));
    }
    const withOverWithout: Record<string, number> = {};
    for (const c of cases.filter((k) => k.secret)) {
      const plain = cases.find(
        (k) => !k.secret && k.op === c.op && k.concurrency === c.concurrency,
      );
      if (plain !== undefined && plain.opsPerSec > 0) {
        withOverWithout[`${c.op}-c${c.concurrency}`] = c.opsPerSec / plain.opsPerSec;
      }
    }
    return {
      valueBytes: options.valueBytes,
      servers: options.servers,
      durationMs: options.durationMs,
      cases,
      withOverWithout,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function measureOne(
  options: AuthBenchOptions,
  secretFile: string | undefined,
): Promise<AuthCase[]> {
  const value = 'v'.repeat(options.valueBytes);
  const keyOf = (i: number): string => `auth-key-${i}`;
  const ignoreLogs = (_server: string, _record: LogRecord): void => {};
  const secret =
    secretFile === undefined ? undefined : Secret.fromFileContent(fs.readFileSync(secretFile));
  assert(typeof secret !== 'string', 'the benchmark secret is long enough');
  useSecret(secret);
  try {
    return await withCluster({ ...AUTH_TIMINGS, secretFile }, ignoreLogs, async (cluster) => {
      const leader = await startSettledCluster(cluster, options.servers, options.settleTimeoutMs);
      const client = new CountingClient({ viewLeader: leader.address, cacheView: true });
      const preload = await preloadWithSetr(client, {
        keys: options.keys,
        keyOf,
        value,
        concurrency: 64,
        budgetMs: options.preloadBudgetMs,
      });
      const pick = strideOver(preload.loadedKeys, keyOf);
      const cases: AuthCase[] = [];
      for (const op of ['getr', 'setr'] as const) {
        for (const concurrency of options.concurrencies) {
          const { result: r } = await runSdkCase(client, {
            op,
            concurrency,
            pick,
            value,
            warmupMs: options.warmupMs,
            durationMs: options.durationMs,
          });
          cases.push({
            op,
            secret: secretFile !== undefined,
            concurrency,
            ops: r.ops,
            errors: r.errors,
            opsPerSec: r.opsPerSec,
            p50Ms: r.latency.p50Ms,
            p99Ms: r.latency.p99Ms,
          });
        }
      }
      return cases;
    });
  } finally {
    useSecret(undefined);
  }
}

export function authTables(result: AuthBenchResult): Table[] {
  return [
    {
      title:
        `Authentication: SDK getr/setr, ${result.servers} in-memory servers, without and with ` +
        `--secret-file (every request signed and checked), ${result.valueBytes} B values, ` +
        `${fmt(result.durationMs)} ms per case`,
      header: ['op', 'secret', 'conc', 'ops/s', 'p50 ms', 'p99 ms', 'with / without', 'errors'],
      rows: result.cases.map((c) => [
        c.op,
        c.secret ? 'yes' : 'no',
        String(c.concurrency),
        fmt(c.opsPerSec),
        fmt(c.p50Ms, 2),
        fmt(c.p99Ms, 2),
        c.secret ? fmt(result.withOverWithout[`${c.op}-c${c.concurrency}`], 2) : '',
        String(c.errors),
      ]),
    },
  ];
}
